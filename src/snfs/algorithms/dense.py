"""Dense training: every weight active; the baseline the sparse methods are measured against."""

from typing import Any

import torch

from snfs.algorithms import ALGORITHMS
from snfs.algorithms.base import COMMON_OPTIONS, SparseAlgorithm
from snfs.masks import MaskState


@ALGORITHMS.register("dense")
class Dense(SparseAlgorithm):
    name = "dense"
    mask_gradients = False
    flops_accounting = "dense"
    index_space_refusal = "sparse=dense (or density 1) trains every weight"
    options = COMMON_OPTIONS  # every weight active: no initial distribution

    def init_masks(self) -> MaskState:
        self.masks = MaskState({k: torch.ones_like(p, dtype=torch.bool) for k, p in self.params.items()})
        return self.masks

    def after_step(self, step: int) -> dict[str, Any] | None:
        return None  # nothing to re-mask
