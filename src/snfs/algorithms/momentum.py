"""Sparse momentum (Dettmers & Zettlemoyer 2019, Algorithm 1): prune, redistribute, grow.

Gradients are not masked, so every momentum buffer, active or not, follows the dense gradient;
weights are re-masked after every optimizer step. At the end of every epoch but the last the
masks are updated with the prune rate p(t) of the current step.
"""

from __future__ import annotations


import math
from typing import Mapping

import torch

from snfs.algorithms import ALGORITHMS
from snfs.algorithms.base import SparseAlgorithm
from snfs.errors import ConfigError
from snfs.options import Option
from snfs.schedules import PRUNE_RATE_DECAYS, prune_rate


def prune_smallest(weight: torch.Tensor, mask: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Deactivate the ``n_prune`` active weights of smallest magnitude."""
    if n_prune <= 0:
        return mask.clone()
    score = weight.detach().abs().flatten().clone()
    score[~mask.flatten()] = float("inf")
    drop = torch.topk(score, n_prune, largest=False).indices
    new = mask.clone().flatten()
    new[drop] = False
    return new.view_as(mask)


def grow_largest(score: torch.Tensor, mask: torch.Tensor, n_grow: int) -> torch.Tensor:
    """Activate the ``n_grow`` inactive weights of largest ``score``; never an active one."""
    if n_grow <= 0:
        return mask.clone()
    s = score.detach().abs().flatten().to(torch.float32).clone()
    s[mask.flatten()] = -float("inf")
    pick = torch.topk(s, n_grow, largest=True).indices
    new = mask.clone().flatten()
    new[pick] = True
    return new.view_as(mask)


def grow_random(mask: torch.Tensor, n_grow: int, generator: torch.Generator) -> torch.Tensor:
    """Activate ``n_grow`` inactive weights chosen uniformly at random."""
    if n_grow <= 0:
        return mask.clone()
    free = torch.nonzero(~mask.flatten().cpu()).flatten()
    pick = free[torch.randperm(free.numel(), generator=generator)[:n_grow]].to(mask.device)
    new = mask.clone().flatten()
    new[pick] = True
    return new.view_as(mask)


def redistribute(total: int, scores: Mapping[str, float], capacity: Mapping[str, int]) -> dict[str, int]:
    """Split ``total`` regrowth between layers proportionally to ``scores``, capped by ``capacity``.

    A layer whose share exceeds its free slots takes only those; the excess is split among the
    remaining layers by their scores (repeated until nothing overflows). Integer shares come from
    the largest remainders, so they sum to ``total`` exactly.
    """
    if total > sum(capacity.values()):
        raise ValueError(f"cannot regrow {total} weights into {sum(capacity.values())} free slots")
    shares: dict[str, float] = {k: 0.0 for k in scores}
    open_layers = {k for k in scores if capacity[k] > 0}
    remaining = float(total)
    while remaining > 1e-9 and open_layers:
        weight = sum(max(scores[k], 0.0) for k in open_layers)
        if weight <= 0:  # no layer has a positive score: fall back to free slots
            weights = {k: float(capacity[k] - shares[k]) for k in open_layers}
        else:
            weights = {k: max(scores[k], 0.0) for k in open_layers}
        norm = sum(weights.values())
        overflow = False
        for k in list(open_layers):
            want = shares[k] + remaining * weights[k] / norm
            if want >= capacity[k]:
                overflow = True
        if not overflow:
            for k in open_layers:
                shares[k] += remaining * weights[k] / norm
            remaining = 0.0
            break
        for k in list(open_layers):
            if shares[k] + remaining * weights[k] / norm >= capacity[k]:
                remaining -= capacity[k] - shares[k]
                shares[k] = float(capacity[k])
                open_layers.discard(k)
    counts = {k: min(capacity[k], int(math.floor(v + 1e-9))) for k, v in shares.items()}
    left = total - sum(counts.values())
    order = sorted(shares, key=lambda k: shares[k] - math.floor(shares[k] + 1e-9), reverse=True)
    while left > 0:
        for k in order:
            if left and counts[k] < capacity[k]:
                counts[k] += 1
                left -= 1
    return counts


@ALGORITHMS.register("momentum")
class SparseMomentum(SparseAlgorithm):
    """Prune smallest weights, redistribute by mean |momentum|, grow by largest |momentum|."""

    name = "momentum"
    mask_gradients = False
    flops_accounting = "momentum"  # the dense weight gradient feeds the momentum of every weight

    options = (
        *SparseAlgorithm.options,
        Option("prune_rate", float, 0.5, low=0.0, high=1.0, doc="p0: fraction of each layer's active weights pruned"),
        Option("prune_rate_min", float, 0.005, low=0.0, high=1.0, doc="p at the last step"),
        Option("decay", str, "cosine", choices=tuple(PRUNE_RATE_DECAYS), doc="prune-rate decay p(t)"),
        Option("redistribution", str, "momentum", choices=("momentum", "magnitude", "nonzero", "none"),
               doc="how regrowth is split between layers"),
        Option("growth", str, "momentum", choices=("momentum", "random"), doc="where a layer regrows"),
    )

    @classmethod
    def check_optimizer(cls, cfg, optim) -> None:
        uses = [k for k in ("redistribution", "growth") if cfg.get(k, "momentum") == "momentum"]
        if uses and not optim.get("momentum"):
            raise ConfigError(f"optim.momentum={optim.get('momentum')!r} is not valid for sparse={cls.name} with "
                              f"sparse.{uses[0]}=momentum; it needs optim.momentum > 0")

    def __init__(self, ctx, cfg):
        super().__init__(ctx, cfg)
        self.step = 0

    def after_step(self, step: int) -> dict | None:
        self.step = step + 1
        self.masks.apply(self.params)
        return None

    def current_prune_rate(self) -> float:
        return prune_rate(self.option("decay"), self.step, self.ctx.total_steps, self.option("prune_rate"),
                          self.option("prune_rate_min"))

    def log_stats(self) -> dict:
        return {"prune_rate": self.current_prune_rate()}

    def _momentum(self, name: str) -> torch.Tensor:
        buf = self.momentum_buffer(name)
        if buf is None:
            raise RuntimeError(
                "sparse momentum needs the optimizer's momentum buffers; use SGD with optim.momentum > 0"
            )
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

    def update_masks(self) -> dict:
        """One prune -> redistribute -> grow round (Algorithm 1 of the paper)."""
        rate = self.current_prune_rate()
        scores = self.layer_scores()
        pruned_masks, removed = {}, {}
        for k, p in self.params.items():
            m = self.masks.masks[k]
            n_prune = int(math.ceil(rate * int(m.sum())))
            pruned_masks[k] = prune_smallest(p, m, n_prune)
            removed[k] = n_prune
        total_removed = sum(removed.values())
        for k, pm in pruned_masks.items():  # pruned weights become exactly 0, even if regrown below
            self.masks.set(k, pm)
        self.masks.apply(self.params)
        capacity = {k: pm.numel() - int(pm.sum()) for k, pm in pruned_masks.items()}
        if self.option("redistribution") == "none":
            regrow = dict(removed)
        else:
            regrow = redistribute(total_removed, scores, capacity)
        for k, p in self.params.items():
            if self.option("growth") == "momentum":
                new = grow_largest(self._momentum(k), pruned_masks[k], regrow[k])
            else:
                new = grow_random(pruned_masks[k], regrow[k], self.generator)
            self.masks.set(k, new)
        self.masks.apply(self.params)
        return {
            "prune_rate": rate,
            "pruned": total_removed,
            "regrown": sum(regrow.values()),
            "pruned_per_layer": removed,
            "regrown_per_layer": regrow,
        }

    def on_epoch_end(self, epoch: int) -> dict | None:
        if epoch >= self.ctx.epochs - 1:  # no update after the last epoch
            return None
        return self.update_masks()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "step": self.step}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.step = int(state["step"])
