"""RigL, rigged lottery (Evci et al. 2020, Algorithm 1): drop smallest |w|, grow largest |dense gradient|, per layer.

Every ``delta_t`` optimizer steps (``step % delta_t == 0``, ``0 < step < end_fraction * total
steps``) each layer drops the fraction alpha(t) = alpha/2 * (1 + cos(pi t / T_end)) (Eq. 1, cosine
decay) of its active weights with the smallest |w| and grows the same number of inactive ones with
the largest |dense gradient| (just-dropped positions included). New weights start at 0 and their
momentum buffer is reset to 0. Gradients are masked, except that on update steps ``before_step``
first records the dense gradient of the step's mini-batch (the only steps that need it); the swap
itself happens in ``after_step``, on the weights after that step. Initial distribution: ERK by
default (the paper's), configurable. Defaults: delta_t = 100, alpha = 0.3, T_end = 75% of training.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from typing import Any

import torch

from snfs.algorithms import ALGORITHMS
from snfs.algorithms.base import COMMON_OPTIONS, DISTRIBUTION, SparseAlgorithm, TrainingContext
from snfs.masks import DropGrowChoice, drop_smallest, magnitude_keep
from snfs.options import Option


def drop_fraction(step: int, end_step: int, alpha: float) -> float:
    """alpha(t) = alpha/2 * (1 + cos(pi t / T_end)) (Evci et al. 2020, Eq. 1 with cosine decay); 0 from T_end on."""
    if step >= end_step:
        return 0.0
    return 0.5 * alpha * (1.0 + math.cos(math.pi * step / end_step))


@ALGORITHMS.register("rigl")
class RigL(SparseAlgorithm):
    """Periodically drop the smallest weights and grow where the dense gradient is largest."""

    name = "rigl"
    mask_gradients = True
    flops_accounting = "periodic_dense_weight_gradient"  # the dense gradient once every delta_t steps
    index_space = True
    grows = "gradient"
    options = (
        *COMMON_OPTIONS,
        dataclasses.replace(DISTRIBUTION, default="erk"),  # the RigL paper
        Option("delta_t", int, 100, low=1, doc="optimizer steps between mask updates"),
        Option("alpha", float, 0.3, low=0.0, high=1.0, doc="initial drop fraction"),
        Option("end_fraction", float, 0.75, low=0.0, high=1.0, doc="T_end as a fraction of all training steps"),
    )

    def __init__(self, ctx: TrainingContext, cfg: Mapping[str, Any]) -> None:
        super().__init__(ctx, cfg)
        self.delta_t = int(self.option("delta_t"))
        self.alpha = float(self.option("alpha"))
        self.end_fraction = float(self.option("end_fraction"))
        self.dense_grads: dict[str, torch.Tensor] = {}
        self.step = 0

    def flops_options(self) -> dict[str, Any]:
        return {"delta_t": self.delta_t}

    @property
    def end_step(self) -> int:
        return int(round(self.end_fraction * self.ctx.total_steps))

    def is_update_step(self, step: int) -> bool:
        return 0 < step < self.end_step and step % self.delta_t == 0

    def log_stats(self) -> dict[str, Any]:
        return {"drop_fraction": drop_fraction(self.step, self.end_step, self.alpha)}

    def needs_dense_grad(self, step: int) -> bool:
        return self.is_update_step(step)

    def before_step(self, step: int, masked_grads: Collection[str] = frozenset()) -> None:
        if self.is_update_step(step):  # the dense gradient, read before it is masked
            self.dense_grads = {k: p.grad.detach().abs().clone() for k, p in self.params.items() if p.grad is not None}
        super().before_step(step, masked_grads)

    @staticmethod
    def drop_count(fraction: float, active: int) -> int:
        return int(round(fraction * active))

    def drop_grow_choice(
        self,
        values: Mapping[str, torch.Tensor],
        numels: Mapping[str, int],
        step: int,
        positions: Mapping[str, torch.Tensor] | None = None,
    ) -> DropGrowChoice:
        """The round of ``update_masks`` on the active values (the layers given, those with a gradient)."""
        fraction = drop_fraction(step, self.end_step, self.alpha)
        counts = {k: self.drop_count(fraction, v.numel()) for k, v in values.items()}
        keep = {k: magnitude_keep(v, counts[k]) for k, v in values.items()}
        return DropGrowChoice(keep, counts, {"drop_fraction": fraction})

    def round_after_step(self, step: int) -> bool:
        return self.is_update_step(step)

    def advance(self, step: int) -> None:
        self.step = step + 1

    def update_masks(self, step: int) -> dict[str, Any]:
        """Drop alpha(t) of each layer's active weights by |w|, grow as many by |dense gradient|."""
        fraction = drop_fraction(step, self.end_step, self.alpha)
        # a layer without a gradient has nothing to grow towards: it keeps its mask
        counts = {
            k: self.drop_count(fraction, self.masks.active(k)) if k in self.dense_grads else 0 for k in self.params
        }
        scores = {k: self.dense_grads.get(k, torch.zeros_like(p)) for k, p in self.params.items()}
        kept = drop_smallest(self.masks, {k: p.detach().abs() for k, p in self.params.items()}, counts)
        result = self.drop_and_grow(kept, counts, grow_scores=scores, drop_fraction=fraction)
        self.dense_grads = {}
        return result.as_stats()

    def after_step(self, step: int) -> dict[str, Any] | None:
        self.advance(step)
        self.masks.apply(self.params)
        if self.round_after_step(step) and self.dense_grads:
            return self.update_masks(step)
        return None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "step": self.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.step = int(state["step"])
