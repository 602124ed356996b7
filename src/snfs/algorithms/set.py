"""SET, Sparse Evolutionary Training (Mocanu et al. 2018, Sec. 2 / Algorithm 1): per-layer prune and random regrow.

Each update removes, in every layer, the fraction zeta of its active weights closest to zero (half
the smallest w >= 0, half the negative w closest to 0: ``prune_set``) and regrows as many at random
in the same layer. New weights: ``random`` draws from N(0, sigma_l^2), sigma_l the layer's initial
std (``init_std``, recorded before the first masking); ``zero`` starts them at 0. Specification,
schedule and how the reference code's "SET" differs: docs/algorithms.md (SET; Deviations).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from snfs.algorithms import ALGORITHMS
from snfs.algorithms.base import COMMON_OPTIONS, DISTRIBUTION, SparseAlgorithm, TrainingContext
from snfs.masks import DropGrowChoice, MaskState, prune_by_score, smallest
from snfs.options import Option


def sign_counts(n_pos_avail: int, n_neg_avail: int, n_half: int) -> tuple[int, int]:
    """How many positive and negative weights a SET round drops: ``n_half`` of each, a sign short of
    ``n_half`` passing its shortfall to the other, so ``min(2 * n_half, active)`` in all."""
    n_pos, n_neg = min(n_half, n_pos_avail), min(n_half, n_neg_avail)
    short = 2 * n_half - n_pos - n_neg
    extra = min(short, n_pos_avail - n_pos)
    return n_pos + extra, n_neg + min(short - extra, n_neg_avail - n_neg)


def prune_set(weight: torch.Tensor, mask: torch.Tensor, n_half: int) -> torch.Tensor:
    """SET pruning (Mocanu et al. 2018, Sec. 2): drop the ``n_half`` smallest w >= 0 and the ``n_half`` largest w < 0.

    If one sign has fewer than ``n_half`` active weights, the shortfall is taken from the other
    sign, so exactly ``min(2 * n_half, active)`` weights are removed.
    """
    w = weight.detach()
    pos, neg = mask & (w >= 0), mask & (w < 0)
    n_pos, n_neg = sign_counts(int(pos.sum()), int(neg.sum()), n_half)
    # pruning by |w| within one sign's mask removes that sign's weights closest to zero
    return prune_by_score(w.abs(), pos, n_pos) | prune_by_score(w.abs(), neg, n_neg)


def set_keep(values: torch.Tensor, n_half: int) -> torch.Tensor:
    """``prune_set`` on a layer's active values: False for the ``n_half`` smallest w >= 0 and ``n_half`` largest w < 0.

    The same shortfall rule: a sign with fewer than ``n_half`` weights passes the rest to the other.
    """
    w = values.detach()
    pos, neg = w >= 0, w < 0
    n_pos, n_neg = sign_counts(int(pos.sum()), int(neg.sum()), n_half)
    keep = torch.ones(w.numel(), dtype=torch.bool, device=w.device)
    for candidates, n in ((pos, n_pos), (neg, n_neg)):
        if n > 0:
            keep[smallest(w.abs(), candidates, n)] = False
    return keep


@ALGORITHMS.register("set")
class SET(SparseAlgorithm):
    """Prune zeta of each layer's weights nearest zero (half positive, half negative), regrow at random."""

    name = "set"
    mask_gradients = True
    flops_accounting = "sparse"
    index_space = True
    options = (
        *COMMON_OPTIONS,
        dataclasses.replace(DISTRIBUTION, default="erdos_renyi"),  # Mocanu et al.
        Option(
            "zeta", float, 0.3, low=0.0, high=1.0, doc="fraction of each layer's active weights replaced per update"
        ),
        Option("schedule", str, "epoch", choices=("epoch", "step"), doc="update every `period` epochs or steps"),
        Option("period", int, 1, low=1, doc="epochs or optimizer steps between updates"),
        Option("new_weights", str, "random", choices=("random", "zero"), doc="value of a regrown weight"),
    )

    def __init__(self, ctx: TrainingContext, cfg: Mapping[str, Any]) -> None:
        super().__init__(ctx, cfg)
        self.zeta = float(self.option("zeta"))
        self.period = int(self.option("period"))
        self.schedule = self.option("schedule")
        self.new_weights = self.option("new_weights")
        self.init_std: dict[str, float] = {}

    def init_masks(self) -> MaskState:
        # the scale of the layer's initialisation, recorded before masking, for random new weights
        self.init_std = {k: float(p.detach().float().std()) if p.numel() > 1 else 0.0 for k, p in self.params.items()}
        return super().init_masks()

    def built_from_scratch(self, shapes: Mapping[str, torch.Size]) -> None:
        # nn.Linear draws U(-1/sqrt(fan_in), 1/sqrt(fan_in)), whose std is 1/sqrt(3 fan_in)
        self.init_std = {k: 1.0 / math.sqrt(3.0 * shape[1]) for k, shape in shapes.items()}

    def log_stats(self) -> dict[str, Any]:
        return {"zeta": self.zeta}

    def drop_count_per_sign(self, active: int) -> int:
        """Weights dropped per sign in a layer of ``active`` weights: zeta/2 of them (Mocanu et al. 2018, Sec. 2)."""
        return int(round(self.zeta * active / 2.0))

    def update_masks(self) -> dict[str, Any]:
        """One SET round: prune (prune_set) and regrow at random in every layer, counts unchanged."""
        self.masks.apply(self.params)  # inactive weights exactly 0 before comparing magnitudes
        active = self.masks.active_counts()
        kept = {
            k: prune_set(p, self.masks.masks[k], self.drop_count_per_sign(active[k])) for k, p in self.params.items()
        }
        # as many regrown at random as dropped, just-dropped positions included (they restart as new weights)
        regrow = {k: active[k] - int(m.sum()) for k, m in kept.items()}
        return self.drop_and_grow(kept, regrow, new_values=self.new_weight_values()).as_stats()

    def new_weight_values(self) -> Callable[[str, int], torch.Tensor] | None:
        """``new_weights: random``: n draws from N(0, sigma_l^2), sigma_l the layer's initial std;
        ``zero``: None (0)."""
        if self.new_weights != "random":
            return None
        return lambda name, n: torch.randn(n, generator=self.generator) * self.init_std[name]

    def drop_grow_choice(
        self,
        values: Mapping[str, torch.Tensor],
        numels: Mapping[str, int],
        step: int,
        positions: Mapping[str, torch.Tensor] | None = None,
    ) -> DropGrowChoice:
        """The round of ``update_masks`` on the active values: SET's drop per sign, as many regrown at random."""
        keep = {k: set_keep(v, self.drop_count_per_sign(v.numel())) for k, v in values.items()}
        return DropGrowChoice(keep, {k: int(m.numel() - m.sum()) for k, m in keep.items()})

    def round_after_step(self, step: int) -> bool:
        return self.schedule == "step" and (step + 1) % self.period == 0 and step + 1 < self.ctx.total_steps

    def round_at_epoch_end(self, epoch: int) -> bool:
        return self.schedule == "epoch" and (epoch + 1) % self.period == 0 and epoch < self.ctx.epochs - 1

    def after_step(self, step: int) -> dict[str, Any] | None:
        self.masks.apply(self.params)
        return self.update_masks() if self.round_after_step(step) else None

    def on_epoch_end(self, epoch: int) -> dict[str, Any] | None:
        return self.update_masks() if self.round_at_epoch_end(epoch) else None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "init_std": dict(self.init_std)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.init_std = {k: float(v) for k, v in state.get("init_std", self.init_std).items()}
