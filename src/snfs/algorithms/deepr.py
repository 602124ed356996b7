"""DeepR, deep rewiring (Bellec et al. 2018, Algorithm 1): fixed-sign connections, L1 + noise, dormant below zero.

A connection k has a fixed sign s_k (that of its dense initial weight, recorded before the first
masking) and theta_k >= 0, with w_k = s_k theta_k while active. The gradient step is the optimizer's
own step on w; ``after_step`` adds -lr*alpha + sqrt(2 lr T) N(0, 1) to the active connections
(noise from ``self.generator``), puts those whose theta fell below 0 to sleep and wakes as many
dormant ones at random (``scope``: in the same layer, or anywhere), with theta = 0 and a zeroed
optimizer state. ``cancel_weight_decay`` subtracts weight_decay * w from the sparse weights'
gradients so the optimizer's L2 term cancels. ``new_sign: first_update`` and ``noise_and_l1:
gradient`` reproduce the DSR authors' DeepR (``sparse=deepr_dsr_code``). The equations, the
temperature schedule and why weight decay stays on by default: docs/algorithms.md (DeepR).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

import torch
from torch import nn

from snfs.algorithms import ALGORITHMS, VARIANTS
from snfs.algorithms.base import SparseAlgorithm, TrainingContext
from snfs.errors import ConfigError
from snfs.masks import DropGrowChoice, MaskState, round_stats
from snfs.options import Option, pairs_check
from snfs.schedules import piecewise_constant


def sample_indices(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` distinct integers from range(n), uniformly at random (CPU, from ``generator``)."""
    if k > n:
        raise ValueError(f"cannot draw {k} distinct indices from {n}")
    if 4 * k >= n:  # dense draw: one permutation
        return torch.randperm(n, generator=generator)[:k]
    while True:  # sparse draw: oversample, then a random k of the distinct values (uniform by symmetry)
        distinct: torch.Tensor = torch.unique(torch.randint(n, (2 * k + 16,), generator=generator))
        if distinct.numel() >= k:
            return distinct[torch.randperm(distinct.numel(), generator=generator)[:k]]


def sample_dormant(
    flat_mask: torch.Tensor, n_active: int, crossed: torch.Tensor, n: int, generator: torch.Generator
) -> torch.Tensor:
    """``n`` distinct positions, uniformly at random among those inactive in ``flat_mask``.

    Connections that were active (``flat_mask``) cannot be picked, so the ones that have just
    crossed zero are not revived; only if too few are dormant do those join the candidates.
    """
    numel = flat_mask.numel()
    n_dormant = numel - n_active
    if n_dormant < n:
        free = (~flat_mask).clone()
        free[crossed] = True
        free = free.nonzero().squeeze(1)
        return free[sample_indices(free.numel(), n, generator).to(free.device)]
    if 2 * n_dormant < numel or 4 * n >= n_dormant:  # few dormant or many wanted: list them
        free = (~flat_mask).nonzero().squeeze(1)
        return free[sample_indices(free.numel(), n, generator).to(free.device)]
    while True:  # mostly dormant: draw positions, keep dormant ones, a random n of the distinct (uniform by symmetry)
        draw = torch.randint(numel, (4 * n + 16,), generator=generator).to(flat_mask.device)
        distinct: torch.Tensor = torch.unique(draw[~flat_mask[draw]])
        if distinct.numel() >= n:
            return distinct[torch.randperm(distinct.numel(), generator=generator)[:n].to(distinct.device)]


#: the multipliers of the splitmix64 finaliser (Steele, Lea and Flood 2014), as signed int64
_MIX = (-7046029254386353131, -4658895280553007687, -7723592293110705685)


def dormant_sign(positions: torch.Tensor, salt: int) -> torch.Tensor:
    """A fixed random sign (+1.0 or -1.0) per flat position: a counter-based hash of (``salt``, position).

    ``execution=truly_sparse`` stores no sign for a dormant connection; the one it wakes with is
    this function of its position (a fair coin per position, fixed for the run), where the masked
    mode reads the sign of the dense initial weight there (also a fair coin, for nn.Linear's
    symmetric init). Integer products wrap modulo 2^64, as the hash intends.
    """
    z = positions.to(torch.int64) * _MIX[0] + salt
    z = (z ^ (z >> 30)) * _MIX[1]
    z = (z ^ (z >> 27)) * _MIX[2]
    z = z ^ (z >> 31)
    return torch.where((z & 1) == 1, 1.0, -1.0)


def flat_memory(t: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """A 1-D view of ``t``'s memory, and the map from row-major flat indices to positions in it.

    Masks and the active-index lists are row-major; a conv weight in channels_last (and its
    gradient and momentum buffer) is not, so it has no ``view(-1)`` in that order. For a
    contiguous tensor the map is the identity.
    """
    if t.is_contiguous():
        return t.view(-1), lambda index: index
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda pair: pair[1]):
        if size != 1 and stride != expected:
            raise ValueError(
                f"DeepR needs weights without gaps in memory; got shape {tuple(t.shape)}, strides {t.stride()}"
            )
        expected *= size

    def positions(index: torch.Tensor) -> torch.Tensor:
        pos, rest = torch.zeros_like(index), index
        for size, stride in zip(reversed(t.shape), reversed(t.stride())):
            pos += (rest % size) * stride
            rest = rest // size
        return pos

    return t.as_strided((t.numel(),), (1,)), positions


@ALGORITHMS.register("deepr")
class DeepR(SparseAlgorithm):
    """Fixed-sign connections trained with L1 and Langevin noise; those crossing zero are swapped for random
    dormant ones."""

    name = "deepr"
    mask_gradients = True
    flops_accounting = "sparse"
    index_space = True
    mixes_masked_layers = False  # its index-space step reads every sparse layer as a vector of active values
    # Bellec et al.'s definition with the published temperature schedule (conf/sparse/deepr.yaml states the same)
    options = (
        *SparseAlgorithm.options,
        Option("alpha", float, 1.0e-5, low=0.0, doc="L1 coefficient"),
        Option(
            "temperatures",
            list,
            [[0.0, 1.0e-5], [0.25, 1.0e-8], [0.5, 1.0e-12], [0.75, 1.0e-15]],
            items=pairs_check(
                Option("fraction", float, low=0.0, high=1.0),
                Option("T", float, low=0.0),
                "[fraction of training steps, T]",
            ),
            doc="[fraction of training steps, T] pairs: the temperature schedule",
        ),
        Option("cancel_weight_decay", bool, False, doc="true: no net L2 on the sparse weights (the published setting)"),
        Option(
            "scope",
            str,
            "layer",
            choices=("layer", "global"),
            doc="where a dormant connection wakes: in the layer that lost one, or anywhere",
        ),
        Option(
            "new_sign",
            str,
            "fixed",
            choices=("fixed", "first_update"),
            doc="a woken connection's sign: its fixed one, or that of its first update",
        ),
        Option(
            "noise_and_l1",
            str,
            "step",
            choices=("step", "gradient"),
            doc="L1 and noise on theta after the step, or added to the gradient",
        ),
        Option("noise_eta", float, 1.0e-3, low=0.0, doc="noise std sqrt(2 eta T) (gradient mode)"),
    )

    @classmethod
    def check_optimizer(cls, cfg: Mapping[str, Any], optim: Mapping[str, Any]) -> None:
        # AdamW decays the weights outside the gradient, so subtracting the decay from it cancels nothing
        if cfg.get("cancel_weight_decay") and optim.get("name") == "adamw" and optim.get("weight_decay"):
            raise ConfigError(
                f"sparse.cancel_weight_decay=true is not valid for sparse={cls.name} with AdamW, whose "
                f"decoupled weight decay bypasses the gradient; use Adam or SGD, or weight_decay=0"
            )

    def __init__(self, ctx: TrainingContext, cfg: Mapping[str, Any]) -> None:
        super().__init__(ctx, cfg)
        self.alpha = float(self.option("alpha"))
        self.schedule = sorted(((float(f), float(t)) for f, t in self.option("temperatures")), key=lambda pair: pair[0])
        self.cancel_weight_decay = bool(self.option("cancel_weight_decay"))
        self.scope = str(self.option("scope"))
        self.new_sign = str(self.option("new_sign"))
        self.noise_and_l1 = str(self.option("noise_and_l1"))
        self.noise_eta = float(self.option("noise_eta"))
        self.signs: dict[str, torch.Tensor] = {}
        self._sparse_ids = {id(p) for p in self.params.values()}
        # flat indices of each layer's active connections, with the mask tensor they were read from
        self._active: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.step = 0

    def init_masks(self) -> MaskState:
        # every connection's fixed sign: that of its dense initial weight (+1 where it is exactly 0)
        self._active = {}
        self.signs = {
            k: torch.where(p.detach() < 0, -1.0, 1.0).to(p.dtype).contiguous() for k, p in self.params.items()
        }
        return super().init_masks()

    def temperature(self, step: int) -> float:
        total = self.ctx.total_steps
        return piecewise_constant(((fraction * total, t) for fraction, t in self.schedule), step)

    def log_stats(self) -> dict[str, Any]:
        return {"temperature": self.temperature(self.step)}

    def before_step(self, step: int, masked_grads: Collection[str] = frozenset()) -> None:
        super().before_step(step, masked_grads)
        if self.noise_and_l1 == "gradient":
            self.add_noise_and_l1_to_gradients(step)
        if not self.cancel_weight_decay:
            return
        for group in self.ctx.optimizer.param_groups:
            wd = float(group.get("weight_decay", 0.0))
            ps = [p for p in group["params"] if p.grad is not None and id(p) in self._sparse_ids]
            if wd != 0.0 and ps:  # the optimizer adds wd * w back: no net L2 on the sparse weights
                torch._foreach_add_([p.grad for p in ps], [p.detach() for p in ps], alpha=-wd)

    def add_noise_and_l1_to_gradients(self, step: int) -> None:
        """``noise_and_l1: gradient`` (the DSR authors' DeepR): alpha*sign(w) + N(0, 2*noise_eta*T) on the
        active connections' gradients, so both go through the optimizer (lr schedule, momentum)."""
        std = math.sqrt(2.0 * self.noise_eta * self.temperature(step))
        for k, p in self.params.items():
            if p.grad is None:
                continue
            with torch.no_grad():
                active = self.active_indices(k)
                (g, g_at), (w, w_at) = flat_memory(p.grad), flat_memory(p)
                extra = self.alpha * torch.sign(w[w_at(active)])
                if std > 0:
                    extra += std * torch.randn(active.numel(), generator=self.generator, dtype=p.dtype).to(p.device)
                g[g_at(active)] += extra

    def active_indices(self, name: str) -> torch.Tensor:
        """Flat indices of the layer's active connections (recomputed if the mask was replaced from outside)."""
        mask = self.masks.masks[name]
        cached = self._active.get(name)
        if cached is None or cached[0] is not mask:
            cached = self._active[name] = (mask, mask.view(-1).nonzero().squeeze(1))
        return cached[1]

    def after_step(self, step: int) -> dict[str, Any] | None:
        self.step = step
        self.masks.apply(self.params)
        lr = self.ctx.lr()
        if self.noise_and_l1 == "step":
            lr_alpha, std = lr * self.alpha, math.sqrt(2.0 * lr * self.temperature(step))
        else:  # already in this step's gradient (before_step)
            lr_alpha, std = 0.0, 0.0
        crossed: dict[
            str, tuple[torch.Tensor, torch.Tensor]
        ] = {}  # layer -> (crossed positions, mask over its active list)
        for k, p in self.params.items():
            sign = self.signs[k].view(-1)
            with torch.no_grad():
                w, w_at = flat_memory(p)
                active = self.active_indices(k)
                at = w_at(active)
                s_active = sign[active]
                theta = w[at] * s_active - lr_alpha
                if std > 0:
                    theta += std * torch.randn(active.numel(), generator=self.generator, dtype=p.dtype).to(p.device)
                if self.new_sign == "first_update":
                    theta = self.take_first_signs(sign, active, s_active, w[at], theta, lr_alpha)
                crossed_here = theta < 0
                w[at] = s_active * theta.clamp_(min=0.0)  # crossed below 0: dormant, w = 0
                crossed[k] = (active[crossed_here], crossed_here)
            if self.scope == "layer" and crossed[k][0].numel():  # swap now: the draw order sets the random streams
                self.swap(k, p, *crossed[k], crossed[k][0].numel())
        removed = {k: int(c.numel()) for k, (c, _) in crossed.items()}
        added = self.regrowth_counts(removed)
        if self.scope == "global":
            for k, p in self.params.items():
                if removed[k] or added[k]:
                    self.swap(k, p, *crossed[k], added[k])
        if sum(removed.values()) == 0:
            return None
        return round_stats({k: {"pruned": removed[k], "regrown": added[k]} for k in self.params})

    @staticmethod
    def take_first_signs(
        sign: torch.Tensor,
        active: torch.Tensor,
        s_active: torch.Tensor,
        w_active: torch.Tensor,
        theta: torch.Tensor,
        lr_alpha: float,
    ) -> torch.Tensor:
        """``new_sign: first_update``: a connection without a sign yet (0) takes that of its first update.

        Where s = 0, ``theta`` holds -lr*alpha + noise; the connection's update is u = w + noise,
        its sign becomes sign(u) and theta = max(|u| - lr*alpha, 0). It cannot go dormant in this
        step: in the DSR authors' DeepR a sign of 0 never counts as a sign change.
        """
        unset = s_active == 0
        if not bool(unset.any()):
            return theta
        update = w_active[unset] + theta[unset] + lr_alpha
        first = torch.sign(update)
        sign[active[unset]] = first
        s_active[unset] = first
        theta = theta.clone()
        theta[unset] = (update.abs() - lr_alpha).clamp(min=0.0)
        return theta

    def regrowth_counts(self, removed: dict[str, int]) -> dict[str, int]:
        """How many dormant connections each layer activates: its own losses (layer scope), or a
        uniform draw over the dormant connections of all layers together (global scope)."""
        dormant = {k: self.masks.masks[k].numel() - self.active_indices(k).numel() for k in self.params}
        return self.regrowth_from(removed, dormant)

    def regrowth_from(self, removed: dict[str, int], dormant_counts: dict[str, int]) -> dict[str, int]:
        """``regrowth_counts`` given each layer's dormant connections before this step's crossings."""
        if self.scope == "layer":
            return dict(removed)
        total = sum(removed.values())
        names = list(removed)
        dormant = [dormant_counts[k] for k in names]
        if sum(dormant) < total:  # too few dormant: the just-crossed ones become candidates too
            dormant = [d + removed[k] for d, k in zip(dormant, names)]
        counts = dict.fromkeys(names, 0)
        if total == 0:
            return counts
        # n distinct positions, uniform over the union of every layer's dormant connections
        pick = sample_indices(sum(dormant), total, self.generator)
        bounds = torch.tensor(dormant).cumsum(0)
        layer_of = torch.bucketize(pick, bounds, right=True)
        for i, n in zip(*torch.unique(layer_of, return_counts=True)):
            counts[names[int(i)]] = int(n)
        return counts

    def swap(self, k: str, p: torch.Tensor, crossed: torch.Tensor, crossed_here: torch.Tensor, n_new: int) -> None:
        """Deactivate ``crossed`` and activate ``n_new`` random dormant connections at theta = 0 in layer ``k``."""
        mask = self.masks.masks[k]
        flat_mask = mask.view(-1)
        active = self.active_indices(k)
        with torch.no_grad():
            pick = sample_dormant(flat_mask, active.numel(), crossed, n_new, self.generator)
            new = flat_mask.clone()
            new[crossed] = False
            new[pick] = True
            self.masks.set(k, new.view_as(mask))
            if n_new == crossed.numel():
                active = active.clone()
                active[crossed_here] = pick  # the new connections take the crossed ones' slots
            else:
                active = torch.cat([active[~crossed_here], pick])
            self._active[k] = (self.masks.masks[k], active)
            w, w_at = flat_memory(p)
            w[w_at(pick)] = 0.0  # activated at theta = 0
            if self.new_sign == "first_update":
                self.signs[k].view(-1)[pick] = 0.0  # unset until the connection's first update
            for buf in self.optimizer_state(k):  # new connections start without momentum; dormant ones keep none
                b, b_at = flat_memory(buf)
                b[b_at(crossed)] = 0.0
                b[b_at(pick)] = 0.0

    # --- execution=truly_sparse: the same step on each layer's active values (snfs.truly_sparse) ---
    def to_index_space(self, masks: Any, params: dict[str, nn.Parameter]) -> None:
        super().to_index_space(masks, params)
        # no dense sign tensor: a dormant connection's sign is ``dormant_sign`` of its position, an active one's
        # is read from its value before each step (``index_space_before_step``), as a vector of the active length
        self.signs, self._active = {}, {}
        self._sparse_ids = {id(p) for p in self.params.values()}

    def salt(self, name: str) -> int:
        """The ``dormant_sign`` salt of a layer: the run's seed and the layer's place."""
        return int(self.ctx.seed) * 1_000_003 + list(self.params).index(name)

    def active_signs(self, name: str, values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """s_k of the active connections: the sign of w_k; where w_k = 0 (just woken, theta = 0), the position's
        fixed sign, or 0 (not set until its first update) under ``new_sign: first_update``."""
        signs = torch.sign(values)
        zero = signs == 0
        if self.new_sign == "fixed" and bool(zero.any()):
            signs[zero] = dormant_sign(positions[zero], self.salt(name)).to(signs)
        return signs

    def index_space_before_step(self, step: int, positions: Mapping[str, torch.Tensor]) -> None:
        # s_k before the optimizer moves w: a step that flips w's sign is a crossing, which the sign after it hides
        self.signs = {k: self.active_signs(k, p.detach(), positions[k]).to(torch.int8) for k, p in self.params.items()}
        if self.noise_and_l1 == "gradient":
            std = math.sqrt(2.0 * self.noise_eta * self.temperature(step))
            for p in self.params.values():
                if p.grad is None:
                    continue
                with torch.no_grad():
                    extra = self.alpha * torch.sign(p.detach())
                    if std > 0:
                        extra += std * torch.randn(p.numel(), generator=self.generator, dtype=p.dtype).to(p.device)
                    p.grad += extra
        if self.cancel_weight_decay:
            for group in self.ctx.optimizer.param_groups:
                wd = float(group.get("weight_decay", 0.0))
                ps = [p for p in group["params"] if p.grad is not None and id(p) in self._sparse_ids]
                if wd != 0.0 and ps:
                    torch._foreach_add_([p.grad for p in ps], [p.detach() for p in ps], alpha=-wd)

    def round_after_step(self, step: int) -> bool:
        return True  # every step moves theta and may put connections to sleep

    def advance(self, step: int) -> None:
        self.step = step

    def drop_grow_choice(
        self,
        values: Mapping[str, torch.Tensor],
        numels: Mapping[str, int],
        step: int,
        positions: Mapping[str, torch.Tensor] | None = None,
    ) -> DropGrowChoice:
        """``after_step`` on the active values: L1 and noise on theta, crossed ones dormant, as many woken."""
        lr = self.ctx.lr()
        if self.noise_and_l1 == "step":
            lr_alpha, std = lr * self.alpha, math.sqrt(2.0 * lr * self.temperature(step))
        else:
            lr_alpha, std = 0.0, 0.0
        keep, moved, removed = {}, {}, {}
        for k, w in values.items():
            # read before the optimizer step (index_space_before_step); a loop without that hook: the signs now
            before = self.signs.get(k)
            if before is not None:
                signs = before.to(w.dtype)
            elif positions is not None:
                signs = self.active_signs(k, w, positions[k])
            else:  # no signs recorded before the step (index_space_before_step) and no positions to derive them
                raise TypeError("sparse=deepr: drop_grow_choice needs positions when no signs were recorded")
            theta = w * signs - lr_alpha
            if std > 0:
                theta += std * torch.randn(w.numel(), generator=self.generator, dtype=w.dtype).to(w.device)
            if self.new_sign == "first_update":
                theta = self.take_first_signs(signs, torch.arange(w.numel()), signs, w, theta, lr_alpha)
            crossed = theta < 0
            moved[k] = signs * theta.clamp(min=0.0)
            keep[k], removed[k] = ~crossed, int(crossed.sum())
        self.signs = {}
        grow = self.regrowth_from(removed, {k: numels[k] - v.numel() for k, v in values.items()})
        return DropGrowChoice(keep, grow, values=moved, regrow_dropped=False, report_empty=False)

    def index_space_state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "step": self.step}

    def load_index_space_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "signs": {k: s.detach().cpu().to(torch.int8) for k, s in self.signs.items()},
            "active": {k: self.active_indices(k).cpu().clone() for k in self.params},  # order sets the noise
            "step": self.step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._active = {
            k: (self.masks.masks[k], idx.to(self.masks.masks[k].device)) for k, idx in state.get("active", {}).items()
        }
        if "signs" in state:
            self.signs = {
                k: state["signs"][k].to(device=p.device, dtype=p.dtype).contiguous() for k, p in self.params.items()
            }
        else:  # a truly sparse run's checkpoint: the signs its connections have there
            self.signs = {k: self.signs_from_weights(k) for k in self.params}
        self.step = int(state["step"])

    def signs_from_weights(self, name: str) -> torch.Tensor:
        """The signs ``execution=truly_sparse`` gives layer ``name``: ``active_signs`` where active, else
        ``dormant_sign`` (loaded weights and masks)."""
        p, mask = self.params[name], self.masks.masks[name]
        flat = torch.arange(p.numel(), device=p.device)
        signs = dormant_sign(flat, self.salt(name)).to(p.dtype)
        active = mask.reshape(-1).nonzero().squeeze(1)
        signs[active] = self.active_signs(name, p.detach().reshape(-1)[active], active)
        return signs.view_as(p).contiguous()


# The DeepR of the DSR authors' code (Mostafa & Wang 2019), which produced the published DeepR numbers
VARIANTS["deepr_dsr_code"] = (
    "deepr",
    {"label": "deepr_dsr_code", "new_sign": "first_update", "noise_and_l1": "gradient"},
)
