"""DSR, dynamic sparse reparameterization (Mostafa & Wang 2019, Algorithm 1).

A global adaptive threshold prunes; the layers regrow in proportion to their survivors.

Every K optimizer steps (after the step, when ``step % K == 0`` and ``step > 0``, as the authors'
code counts), every active weight with |w| < H is pruned, H one threshold over all sparse layers.
H then moves towards a target prune count N_p: halved if more than (1 + tol) N_p were pruned,
doubled if fewer than (1 - tol) N_p (tol = 0.1, H0 = 1e-3). The same total is regrown at random
inactive positions, shared between layers in proportion to each layer's surviving active weights
(``redistribute``, capped by free slots, exact total); new weights and their momentum start at 0.
Gradients are masked.

K follows ``rewire_periods``, a list of [epoch, period] pairs (the period of the last pair whose
epoch has started). N_p is ``target_prune``: an absolute count if >= 1, else a fraction of the
total number of active weights. Defaults are the authors' MNIST LeNet-300-100 settings (their
code's defaults and mnist_schedule.yaml): N_p = 600, K = 100/200/400/800 from epochs 0/25/50/75.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from snfs.algorithms import ALGORITHMS
from snfs.algorithms.base import SparseAlgorithm, TrainingContext
from snfs.masks import DropGrowChoice, MaskState, redistribute
from snfs.options import Option, pairs_check
from snfs.schedules import piecewise_constant


def threshold_update(threshold: float, n_pruned: int, target: float, tolerance: float) -> float:
    """H /= 2 if pruned > (1 + tol) N_p, H *= 2 if pruned < (1 - tol) N_p (Mostafa & Wang 2019, Algorithm 1)."""
    if n_pruned > (1.0 + tolerance) * target:
        return threshold / 2.0
    if n_pruned < (1.0 - tolerance) * target:
        return threshold * 2.0
    return threshold


@ALGORITHMS.register("dsr")
class DSR(SparseAlgorithm):
    """Prune below one global adaptive threshold; regrow at random, shared by surviving weights per layer."""

    name = "dsr"
    mask_gradients = True
    flops_accounting = "sparse"
    index_space = True
    options = (
        *SparseAlgorithm.options,
        Option(
            "target_prune",
            float,
            600,
            low=0.0,
            low_open=True,
            doc="N_p: weights pruned per rewiring; >= 1 a count, < 1 a fraction of the active weights",
        ),
        Option("initial_threshold", float, 1.0e-3, low=0.0, low_open=True, doc="H0"),
        Option("tolerance", float, 0.1, low=0.0, high=1.0, high_open=True, doc="H moves when outside (1 -+ tol) N_p"),
        Option(
            "rewire_periods",
            list,
            [[0, 100], [25, 200], [50, 400], [75, 800]],
            items=pairs_check(Option("epoch", int, low=0), Option("period", int, low=1), "[epoch, period]"),
            doc="[epoch, K] pairs: rewire every K optimizer steps from that epoch on",
        ),
        Option("stop_epoch", int, None, low=0, nullable=True, doc="no rewiring from this epoch on (null: never stop)"),
    )

    def __init__(self, ctx: TrainingContext, cfg: Mapping[str, Any]) -> None:
        super().__init__(ctx, cfg)
        self.threshold = float(self.option("initial_threshold"))
        self.tolerance = float(self.option("tolerance"))
        self.schedule = sorted(
            ((int(epoch), int(period)) for epoch, period in self.option("rewire_periods")), key=lambda pair: pair[0]
        )
        self.target_cfg = float(self.option("target_prune"))
        self.target = self.target_cfg
        stop = self.option("stop_epoch")
        self.stop_epoch = None if stop is None else int(stop)

    def init_masks(self) -> MaskState:
        masks = super().init_masks()
        self.masks_ready()
        return masks

    def masks_ready(self) -> None:
        if self.target_cfg < 1.0:  # a fraction of the active weights
            self.target = self.target_cfg * self.masks.total_active()

    def period(self, step: int) -> int:
        return piecewise_constant(self.schedule, step // max(1, self.ctx.steps_per_epoch))

    def log_stats(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "target_prune": self.target}

    def drop_grow_choice(
        self,
        values: Mapping[str, torch.Tensor],
        numels: Mapping[str, int],
        step: int,
        positions: Mapping[str, torch.Tensor] | None = None,
    ) -> DropGrowChoice:
        """Prune |w| < H in every layer, adapt H, share the same total between layers by surviving weights."""
        keep = {k: v.detach().abs() >= self.threshold for k, v in values.items()}
        total = sum(int(v.numel()) - int(keep[k].sum()) for k, v in values.items())
        self.threshold = threshold_update(self.threshold, total, self.target, self.tolerance)
        survivors = {k: float(m.sum()) for k, m in keep.items()}
        capacity = {k: numels[k] - int(m.sum()) for k, m in keep.items()}
        return DropGrowChoice(keep, redistribute(total, survivors, capacity), {"threshold": self.threshold})

    def rewire(self, step: int = 0) -> dict[str, Any]:
        """One round (``drop_grow_choice``) on the dense weights and masks; regrowth at random."""
        self.masks.apply(self.params)
        masks = {k: self.masks.masks[k] for k in self.params}
        values = {k: p.detach().reshape(-1)[masks[k].reshape(-1)] for k, p in self.params.items()}
        choice = self.drop_grow_choice(values, {k: m.numel() for k, m in masks.items()}, step)
        return self.drop_and_grow(choice.kept_masks(masks), choice.grow, **choice.extras).as_stats()

    def round_after_step(self, step: int) -> bool:
        epoch = step // max(1, self.ctx.steps_per_epoch)
        if self.stop_epoch is not None and epoch >= self.stop_epoch:
            return False
        return step > 0 and step % self.period(step) == 0

    def after_step(self, step: int) -> dict[str, Any] | None:
        self.masks.apply(self.params)
        return self.rewire(step) if self.round_after_step(step) else None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "threshold": self.threshold, "target": self.target}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.threshold = float(state["threshold"])
        self.target = float(state["target"])
