"""Sparse momentum (Dettmers & Zettlemoyer 2019, Algorithm 1): prune, redistribute, grow.

Gradients are not masked, so every momentum buffer, active or not, follows the dense gradient;
weights are re-masked after every optimizer step. At the end of every epoch but the last the
masks are updated with the prune rate p(t) of the current step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from snfs.algorithms import ALGORITHMS
from snfs.algorithms.base import SparseAlgorithm, TrainingContext
from snfs.errors import ConfigError
from snfs.masks import drop_smallest, redistribute
from snfs.options import Option
from snfs.schedules import PRUNE_RATE_DECAYS, prune_rate

#: optimizers whose momentum sparse momentum can read (SGD's buffer, Adam's first moment over its second)
MOMENTUM_OPTIMIZERS = ("sgd", "adam", "adamw")


@ALGORITHMS.register("momentum")
class SparseMomentum(SparseAlgorithm):
    """Prune smallest weights, redistribute by mean |momentum|, grow by largest |momentum|."""

    name = "momentum"
    mask_gradients = False
    flops_accounting = "dense_weight_gradient"  # it feeds the momentum of every weight, every step
    index_space_refusal = (
        "sparse momentum grows and redistributes by the momentum of every weight, active or not, so it needs the "
        "dense momentum by definition"
    )

    options = (
        *SparseAlgorithm.options,
        Option("prune_rate", float, 0.5, low=0.0, high=1.0, doc="p0: fraction of each layer's active weights pruned"),
        Option("prune_rate_min", float, 0.005, low=0.0, high=1.0, doc="p at the last step"),
        Option("decay", str, "cosine", choices=tuple(PRUNE_RATE_DECAYS), doc="prune-rate decay p(t)"),
        Option(
            "redistribution",
            str,
            "momentum",
            choices=("momentum", "magnitude", "nonzero", "none"),
            doc="how regrowth is split between layers",
        ),
        Option("growth", str, "momentum", choices=("momentum", "random"), doc="where a layer regrows"),
    )

    @classmethod
    def check_optimizer(cls, cfg: Mapping[str, Any], optim: Mapping[str, Any]) -> None:
        uses = [k for k in ("redistribution", "growth") if cfg.get(k, "momentum") == "momentum"]
        if not uses:
            return
        name = optim.get("name", "sgd")
        if name not in MOMENTUM_OPTIMIZERS:
            raise ConfigError(
                f"optim.name={name!r} is not valid for sparse={cls.name} with sparse.{uses[0]}=momentum: "
                f"it scores by the optimizer's momentum; valid choices: {', '.join(MOMENTUM_OPTIMIZERS)}"
            )
        if name == "sgd" and not optim.get("momentum"):
            raise ConfigError(
                f"optim.momentum={optim.get('momentum')!r} is not valid for sparse={cls.name} with "
                f"sparse.{uses[0]}=momentum; it needs optim.momentum > 0"
            )

    def __init__(self, ctx: TrainingContext, cfg: Mapping[str, Any]) -> None:
        super().__init__(ctx, cfg)
        self.step = 0

    def after_step(self, step: int) -> dict[str, Any] | None:
        self.step = step + 1
        self.masks.apply(self.params)
        return None

    def current_prune_rate(self) -> float:
        return prune_rate(
            self.option("decay"),
            self.step,
            self.ctx.total_steps,
            self.option("prune_rate"),
            self.option("prune_rate_min"),
        )

    def log_stats(self) -> dict[str, Any]:
        return {"prune_rate": self.current_prune_rate()}

    def _momentum(self, name: str) -> torch.Tensor:
        buf = self.momentum(name)
        if buf is None:  # check_optimizer refuses optimizers without momentum; this is a mask update before any step
            raise RuntimeError(f"sparse momentum found no momentum for {name}: the optimizer has not stepped yet")
        return buf

    def layer_scores(self) -> dict[str, float]:
        """Per-layer redistribution score over the currently active weights."""
        mode = self.option("redistribution")
        scores = {}
        for k, p in self.params.items():
            m = self.masks.masks[k]
            n = int(m.sum())
            if mode == "momentum":
                scores[k] = float(self._momentum(k).abs()[m].mean()) if n else 0.0
            elif mode == "magnitude":
                scores[k] = float(p.detach().abs()[m].mean()) if n else 0.0
            elif mode == "nonzero":
                scores[k] = float(n)
            else:
                scores[k] = 0.0
        total = sum(scores.values())
        return {k: v / total for k, v in scores.items()} if total > 0 else scores

    def update_masks(self) -> dict[str, Any]:
        """One prune -> redistribute -> grow round (Algorithm 1 of the paper).

        Grown weights start at 0 and keep their momentum (docs/algorithms.md, grow step): it is
        what they were grown by.
        """
        rate = self.current_prune_rate()
        scores = self.layer_scores()
        removed = {k: int(math.ceil(rate * n)) for k, n in self.masks.active_counts().items()}
        kept = drop_smallest(self.masks, {k: p.detach().abs() for k, p in self.params.items()}, removed)
        if self.option("redistribution") == "none":
            regrow = dict(removed)
        else:
            capacity = {k: m.numel() - int(m.sum()) for k, m in kept.items()}
            regrow = redistribute(sum(removed.values()), scores, capacity)
        growth = None
        if self.option("growth") == "momentum":
            growth = {k: self._momentum(k).abs() for k in self.params}
        return self.drop_and_grow(
            kept, regrow, grow_scores=growth, reset_optimizer_state=False, prune_rate=rate
        ).as_stats()

    def on_epoch_end(self, epoch: int) -> dict[str, Any] | None:
        if epoch >= self.ctx.epochs - 1:  # no update after the last epoch
            return None
        return self.update_masks()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "step": self.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.step = int(state["step"])
