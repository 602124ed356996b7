"""The mask state and every operation on masks: one boolean mask per sparse weight, keyed by parameter name.

Sparse layers are the weights of conv and linear modules (docs/algorithms.md); biases and
normalisation parameters always stay dense. Layers are selected by exact parameter name, never by
prefix, which is how the reference code left some VGG16 convolutions dense by accident.

The algorithms' mask update lives here too: ``drop_and_grow``, one round over all layers (grow by
score or at random, reset the new weights and their optimizer state, report each layer's change),
and the parts it is made of, so that an algorithm only chooses its scores, counts and schedule.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from snfs.errors import CheckpointError, ConfigError

SPARSE_MODULE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def sparse_parameters(model: nn.Module, dense_layers: Iterable[str] = ()) -> dict[str, nn.Parameter]:
    """The weights that get masks: conv/linear weights whose name is not listed in ``dense_layers``."""
    dense = set(dense_layers)
    named: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, SPARSE_MODULE_TYPES):
            name = f"{module_name}.weight" if module_name else "weight"
            if name not in dense:
                named[name] = cast(nn.Parameter, module.weight)
    unknown = dense - {f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, SPARSE_MODULE_TYPES)}
    if unknown:
        valid = ", ".join(f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, SPARSE_MODULE_TYPES))
        raise ConfigError(f"sparse.dense_layers names unknown layers {sorted(unknown)}; valid: {valid}")
    return named


#: a predicate over (parameter name, parameter) that says whether a weight is sparse
ParamPredicate = Callable[[str, nn.Parameter], bool]


def select_parameters(
    model: nn.Module, include: Iterable[str] | ParamPredicate | None = None, exclude: Iterable[str] = ()
) -> dict[str, nn.Parameter]:
    """The sparse weights of any model: Linear/ConvNd weights, plus ``include``, minus ``exclude``.

    ``include`` is a list of parameter-name patterns (``fnmatch``: ``*.in_proj_weight``,
    ``lstm.weight_*``) added to the default set, or a predicate ``(name, param) -> bool`` that
    replaces it; ``exclude`` patterns (exact names included) remove weights from the result. A
    pattern that matches no parameter is an error, so a typo never leaves a model silently dense.
    """
    named = dict(model.named_parameters())
    if callable(include):
        chosen = {k: p for k, p in named.items() if include(k, p)}
    else:
        chosen = dict(sparse_parameters(model))
        for pattern in include or ():
            hits = {k: p for k, p in named.items() if fnmatch.fnmatchcase(k, pattern)}
            if not hits:
                raise ConfigError(
                    f"include={pattern!r} matches no parameter of the model; its parameters: "
                    f"{', '.join(_abridged(named))}"
                )
            chosen.update(hits)
    for pattern in exclude:
        excluded = [k for k in chosen if fnmatch.fnmatchcase(k, pattern)]
        if not excluded and not any(fnmatch.fnmatchcase(k, pattern) for k in named):
            raise ConfigError(
                f"exclude={pattern!r} matches no parameter of the model; its sparse weights: "
                f"{', '.join(_abridged(chosen))}"
            )
        for k in excluded:
            del chosen[k]
    scalars = [k for k, p in chosen.items() if p.dim() < 2]
    if scalars and not callable(include):
        raise ConfigError(
            f"{scalars[0]} has {chosen[scalars[0]].dim()} dimension(s); only weights of 2 or more "
            f"dimensions can be sparse (biases and norms stay dense)"
        )
    return {k: named[k] for k in named if k in chosen}  # the model's own order


def _abridged(names: Iterable[str], limit: int = 12) -> list[str]:
    names = list(names)
    return names if len(names) <= limit else [*names[:limit], f"... ({len(names) - limit} more)"]


def dense_parameter_report(model: nn.Module, sparse: Mapping[str, nn.Parameter]) -> str:
    """One line naming the parameters left dense: weight matrices by name, biases and norms by count."""
    left = [(k, p) for k, p in model.named_parameters() if k not in sparse]
    small = [k for k, p in left if p.dim() < 2]
    matrices = [f"{k} {tuple(p.shape)}" for k, p in left if p.dim() >= 2]
    parts = []
    if matrices:
        parts.append(f"weights {', '.join(_abridged(matrices))}")
    if small:
        parts.append(f"{len(small)} biases and norm parameters")
    return "dense: " + ("; ".join(parts) if parts else "nothing")


class MaskState:
    """Per-layer boolean masks; ``True`` marks an active (trainable, possibly non-zero) weight."""

    def __init__(self, masks: Mapping[str, torch.Tensor]):
        self.masks: dict[str, torch.Tensor] = {k: v.bool() for k, v in masks.items()}
        self._float: dict[str, torch.Tensor] | None = None
        # per layer, bumped whenever its mask changes, so derived structures (CSR patterns) know to rebuild
        self.versions: dict[str, int] = {k: 0 for k in self.masks}

    # --- queries -------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self.masks)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(m.shape) for k, m in self.masks.items()}

    def active(self, name: str) -> int:
        return int(self.masks[name].sum())

    def active_counts(self) -> dict[str, int]:
        return {k: int(m.sum()) for k, m in self.masks.items()}

    def total_active(self) -> int:
        return sum(self.active_counts().values())

    def total_numel(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    def density(self) -> float:
        return self.total_active() / max(1, self.total_numel())

    def layer_densities(self) -> dict[str, float]:
        return {k: int(m.sum()) / m.numel() for k, m in self.masks.items()}

    # --- mutation ------------------------------------------------------------------------
    def set(self, name: str, mask: torch.Tensor) -> None:
        self.masks[name] = mask.bool()
        self._float = None
        self.versions[name] = self.versions.get(name, 0) + 1

    def as_float(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The masks as 0/1 tensors of ``dtype``, cached until a mask changes (multiplying by them is fast)."""
        if self._float is None or next(iter(self._float.values())).dtype != dtype:
            self._float = {k: m.to(dtype=dtype) for k, m in self.masks.items()}
        return self._float

    def apply(self, params: Mapping[str, torch.Tensor]) -> None:
        """Zero every inactive weight in place (one fused multiply over all layers)."""
        names = list(self.masks)
        masks = self.as_float(params[names[0]].dtype) if names else {}
        with torch.no_grad():
            torch._foreach_mul_([params[k].data for k in names], [masks[k] for k in names])

    def to(self, device: torch.device | str) -> MaskState:
        self.masks = {k: m.to(device) for k, m in self.masks.items()}
        self._float = None
        self.versions = {k: v + 1 for k, v in self.versions.items()}
        return self

    # --- persistence ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: m.detach().cpu().clone() for k, m in self.masks.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        if set(state) != set(self.masks):
            raise CheckpointError(f"mask layers differ: checkpoint has {sorted(state)}, model has {sorted(self.masks)}")
        for k, m in state.items():
            if m.shape != self.masks[k].shape:
                raise CheckpointError(
                    f"mask {k} has shape {tuple(m.shape)} in the checkpoint, {tuple(self.masks[k].shape)} here"
                )
            self.masks[k] = m.to(self.masks[k].device).bool()
        self._float = None
        self.versions = {k: v + 1 for k, v in self.versions.items()}

    def checksum(self) -> int:
        """A fingerprint of which weights are active, used to confirm that ranks agree on the masks."""
        total = 0
        for i, m in enumerate(self.masks.values()):
            positions = torch.nonzero(m.flatten()).flatten().double()
            # kept below 2**52 so that a float64 all-reduce compares it exactly
            total = (
                total * 1_000_003
                + int(((positions + 1) * (i + 1)).remainder(2_147_483_647).sum().item())
                + int(m.sum())
            ) % (2**52)
        return total


# --- initial distributions -----------------------------------------------------------------


def random_mask(shape: torch.Size, n_active: int, generator: torch.Generator) -> torch.Tensor:
    """A boolean mask with exactly ``n_active`` ones at uniformly random positions."""
    numel = math.prod(shape)
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel, generator=generator)[:n_active]] = True
    return mask.view(shape)


def uniform_counts(shapes: Mapping[str, torch.Size], density: float) -> dict[str, int]:
    """Every layer at density d: round(d * numel) active weights each."""
    return {k: int(round(density * math.prod(s))) for k, s in shapes.items()}


def erdos_renyi_counts(shapes: Mapping[str, torch.Size], density: float, kernel: bool = True) -> dict[str, int]:
    """(ER)K: layer density proportional to sum(shape)/prod(shape) (Evci et al. 2020, RigL Sec. 3).

    Layers that would exceed density 1 are made dense and epsilon is solved again; the total
    number of active weights is exactly round(density * total).
    """
    numel = {k: math.prod(s) for k, s in shapes.items()}
    target = int(round(density * sum(numel.values())))

    def raw(shape: torch.Size) -> float:
        dims = list(shape) if kernel or len(shape) <= 2 else list(shape[:2])
        return sum(dims) / math.prod(dims)

    dense: set[str] = set()
    while True:
        budget = target - sum(numel[k] for k in dense)
        sparse = [k for k in shapes if k not in dense]
        weight = sum(raw(shapes[k]) * numel[k] for k in sparse)
        eps = budget / weight if weight > 0 else 0.0
        over = [k for k in sparse if eps * raw(shapes[k]) > 1.0]
        if not over:
            break
        dense.update(over)
    quotas = {k: (float(numel[k]) if k in dense else eps * raw(shapes[k]) * numel[k]) for k in shapes}
    return largest_remainder(target, quotas, numel)


DISTRIBUTIONS: dict[str, Callable[[Mapping[str, torch.Size], float], dict[str, int]]] = {
    "uniform": uniform_counts,
    "erk": lambda shapes, d: erdos_renyi_counts(shapes, d, kernel=True),
    "erdos_renyi": lambda shapes, d: erdos_renyi_counts(shapes, d, kernel=False),
}


def check_every_layer_has_weights(
    shapes: Mapping[str, torch.Size], counts: Mapping[str, int], density: float, distribution: str
) -> None:
    """Refuse a density at which a sparse layer gets no weight: such a network cannot learn through that layer."""
    empty = [k for k in shapes if counts[k] < 1]
    if not empty:
        return
    name = empty[0]
    smallest = min(math.prod(s) for s in shapes.values())
    hint = (
        f"density > {0.5 / smallest:.3g} gives every layer at least one"
        if distribution == "uniform"
        else "raise density"
    )
    raise ConfigError(
        f"density={density:g} leaves sparse layer {name} ({math.prod(shapes[name])} weights) without "
        f"any weight under sparse.distribution={distribution}; {hint}"
    )


def init_masks(
    params: Mapping[str, torch.Tensor], density: float, distribution: str, generator: torch.Generator
) -> MaskState:
    """Random masks with the per-layer counts of ``distribution`` (docs/algorithms.md, "Common ground")."""
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(
            f"sparse.distribution={distribution!r} is not valid; valid choices: {', '.join(DISTRIBUTIONS)}"
        )
    shapes = {k: p.shape for k, p in params.items()}
    counts = DISTRIBUTIONS[distribution](shapes, density)
    check_every_layer_has_weights(shapes, counts, density, distribution)
    masks = {k: random_mask(shapes[k], counts[k], generator).to(params[k].device) for k in shapes}
    return MaskState(masks)


# --- drop and grow: the operations every algorithm's mask update is made of ------------------------


def _pick(score: torch.Tensor, candidates: torch.Tensor, n: int, largest: bool) -> torch.Tensor:
    """Flat indices of the ``n`` candidates with the smallest (or largest) score.

    Non-candidates get the score that always loses (+-inf), so one top-k over the whole layer
    suffices; only if that still picked a non-candidate (candidate scores of +-inf or NaN tie with
    them) is the top-k taken again over the candidates alone.
    """
    flat = candidates.flatten()
    available = int(flat.sum())
    if n > available:
        raise ValueError(f"cannot pick {n} of {available} {'inactive' if largest else 'active'} weights")
    s = score.detach().flatten().to(torch.float32).clone()
    s[~flat] = -float("inf") if largest else float("inf")
    pick = torch.topk(s, n, largest=largest).indices
    if not bool(flat[pick].all()):
        where = torch.nonzero(flat).flatten()
        pick = where[torch.topk(s[where], n, largest=largest).indices]
    return pick


def prune_by_score(score: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """A copy of ``mask`` without the ``n`` active weights of smallest ``score`` (ValueError if fewer are active)."""
    if n <= 0:
        return mask.clone()
    new = mask.clone().flatten()
    new[_pick(score, mask, n, largest=False)] = False
    return new.view_as(mask)


def grow_by_score(score: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """A copy of ``mask`` with the ``n`` inactive weights of largest ``score`` activated (never an active one)."""
    if n <= 0:
        return mask.clone()
    new = mask.clone().flatten()
    new[_pick(score, ~mask, n, largest=True)] = True
    return new.view_as(mask)


def grow_random(mask: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """A copy of ``mask`` with ``n`` inactive weights activated, uniformly at random (CPU ``generator``)."""
    if n <= 0:
        return mask.clone()
    free = torch.nonzero(~mask.flatten().cpu()).flatten()
    if n > free.numel():
        raise ValueError(f"cannot grow {n} weights into {free.numel()} inactive positions")
    pick = free[torch.randperm(free.numel(), generator=generator)[:n]].to(mask.device)
    new = mask.clone().flatten()
    new[pick] = True
    return new.view_as(mask)


def largest_remainder(total: int, quotas: Mapping[str, float], caps: Mapping[str, int]) -> dict[str, int]:
    """Integer counts that sum to ``total``, each within its cap, closest to the real ``quotas``.

    Each layer gets the integer part of its quota, then the units left go one at a time to the
    largest fractional parts (ties: the order of ``quotas``), skipping full layers. A quota within
    1e-9 below an integer counts as that integer: shares computed in floating point land a hair
    below whole numbers, and the hair must not decide who gets a unit.
    """
    counts = {k: min(caps[k], int(math.floor(q + 1e-9))) for k, q in quotas.items()}
    left = total - sum(counts.values())
    order = sorted(quotas, key=lambda k: quotas[k] - math.floor(quotas[k] + 1e-9), reverse=True)
    while left > 0:
        progressed = False
        for k in order:
            if left == 0:
                break
            if counts[k] < caps[k]:
                counts[k] += 1
                left -= 1
                progressed = True
        if not progressed:
            raise ValueError(f"cannot place {left} more weights: every layer is full")
    return counts


def redistribute(total: int, scores: Mapping[str, float], capacity: Mapping[str, int]) -> dict[str, int]:
    """Split ``total`` between layers in proportion to ``scores``, each capped by its ``capacity``.

    A layer whose share reaches its capacity takes only that; the excess is split among the other
    layers by their scores, repeated until nothing overflows (negative scores count as 0; if no
    open layer has a positive score, the rest is split by free capacity). The integer counts come
    from ``largest_remainder``, so they sum to ``total`` exactly.
    """
    if total > sum(capacity.values()):
        raise ValueError(f"cannot regrow {total} weights into {sum(capacity.values())} free slots")
    shares: dict[str, float] = {k: 0.0 for k in scores}
    # a list, not a set: the float sums below then run in one order in every process
    open_layers = [k for k in scores if capacity[k] > 0]
    remaining = float(total)
    while remaining > 1e-9 and open_layers:
        weight = sum(max(scores[k], 0.0) for k in open_layers)
        if weight <= 0:
            weights = {k: float(capacity[k] - shares[k]) for k in open_layers}
        else:
            weights = {k: max(scores[k], 0.0) for k in open_layers}
        norm = sum(weights.values())
        if not any(shares[k] + remaining * weights[k] / norm >= capacity[k] for k in open_layers):
            for k in open_layers:
                shares[k] += remaining * weights[k] / norm
            break
        # fill the layers that overflow; each one filled lowers what the next one is offered
        for k in list(open_layers):
            if shares[k] + remaining * weights[k] / norm >= capacity[k]:
                remaining -= capacity[k] - shares[k]
                shares[k] = float(capacity[k])
                open_layers.remove(k)
    return largest_remainder(total, shares, capacity)


def optimizer_state_tensors(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> list[torch.Tensor]:
    """The optimizer's per-weight state of ``param`` (SGD's momentum buffer, Adam's two moments, ...)."""
    state = optimizer.state.get(param, {})
    return [v for v in state.values() if isinstance(v, torch.Tensor) and v.shape == param.shape]


def reset_new_weights(
    param: torch.Tensor,
    old: torch.Tensor,
    kept: torch.Tensor,
    new: torch.Tensor,
    optimizer: torch.optim.Optimizer | None,
    new_values: Callable[[int], torch.Tensor] | None = None,
) -> dict[str, int]:
    """Finish one layer's drop/grow round on its weights and optimizer state; returns ``{"pruned", "regrown"}``.

    ``old`` is the mask before the round, ``kept`` the one after dropping, ``new`` the one after
    growing. Weights outside ``new`` become 0. Grown weights (in ``new``, not in ``kept``: a
    position dropped and grown again in the same round counts as new) start at 0, or at
    ``new_values(n)`` if given, and their optimizer state (momentum buffer, Adam moments) is reset
    to 0 unless ``optimizer`` is None.
    """
    grown = new & ~kept
    n_grown = int(grown.sum())
    with torch.no_grad():
        param[~new] = 0.0
        if new_values is not None and n_grown:
            param[grown] = new_values(n_grown).to(device=param.device, dtype=param.dtype)
        else:
            param[grown] = 0.0
        if optimizer is not None:
            for buf in optimizer_state_tensors(optimizer, param):
                buf[grown] = 0.0
    return {"pruned": int(old.sum()) - int(kept.sum()), "regrown": n_grown}


def smallest(score: torch.Tensor, candidates: torch.Tensor, n: int) -> torch.Tensor:
    """Positions (into the vector ``score``) of the ``n`` entries where ``candidates`` of smallest score."""
    where = candidates.nonzero().squeeze(1)
    if n > where.numel():
        raise ValueError(f"cannot pick {n} of {where.numel()} active weights")
    return where[torch.topk(score.index_select(0, where), n, largest=False).indices]


def magnitude_keep(values: torch.Tensor, n: int) -> torch.Tensor:
    """A bool per active value: False for the ``n`` of smallest |w| (``prune_by_score`` by |w|, in index space)."""
    keep = torch.ones(values.numel(), dtype=torch.bool, device=values.device)
    if n > 0:
        keep[smallest(values.detach().abs(), keep, n)] = False
    return keep


def drop_smallest(
    masks: MaskState, scores: Mapping[str, torch.Tensor], counts: Mapping[str, int]
) -> dict[str, torch.Tensor]:
    """Per layer, the mask left after dropping the ``counts[k]`` active weights of smallest ``scores[k]``."""
    return {k: prune_by_score(scores[k], masks.masks[k], counts[k]) for k in scores}


@dataclass
class DropGrowChoice:
    """What an algorithm chose for one round, over each layer's active values (``SparseAlgorithm.drop_grow_choice``).

    ``keep[k]``: a bool per active weight of layer ``k`` (row-major position order), False where it
    is dropped; ``grow[k]``: how many inactive positions it activates; ``extras``: the algorithm's
    scalars for the round's statistics (e.g. DSR's threshold). ``values[k]``, when given, are the
    active weights' new values (DeepR moves them in its round); ``regrow_dropped``: whether a
    just-dropped position may be grown again in the same round (DeepR: only when too few others are
    free); ``report_empty``: whether a round that changed no mask still counts as a mask update.
    """

    keep: dict[str, torch.Tensor]
    grow: dict[str, int]
    extras: dict[str, Any] = field(default_factory=dict)
    values: dict[str, torch.Tensor] | None = None
    regrow_dropped: bool = True
    report_empty: bool = True

    def kept_masks(self, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The choice as dense masks after the drop, given the masks it was made on."""
        kept = {}
        for k, keep in self.keep.items():
            flat = masks[k].reshape(-1)
            new = torch.zeros_like(flat)
            new[flat.nonzero().squeeze(1)[keep]] = True
            kept[k] = new.view_as(masks[k])
        return kept


@dataclass
class LayerChange:
    """What one layer lost and gained in a drop-and-grow round."""

    pruned: int
    regrown: int


@dataclass
class DropGrowResult:
    """One drop-and-grow round: each layer's change, plus the algorithm's own scalars (``extras``)."""

    layers: dict[str, LayerChange]
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def pruned(self) -> int:
        return sum(c.pruned for c in self.layers.values())

    @property
    def regrown(self) -> int:
        return sum(c.regrown for c in self.layers.values())

    def as_stats(self) -> dict[str, Any]:
        """The dict the training loop logs (``round_stats``: totals, per layer, extras)."""
        return round_stats(
            {k: {"pruned": c.pruned, "regrown": c.regrown} for k, c in self.layers.items()}, **self.extras
        )


def drop_and_grow(
    masks: MaskState,
    params: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    kept: Mapping[str, torch.Tensor],
    grow_counts: Mapping[str, int],
    grow_scores: Mapping[str, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    new_values: Callable[[str, int], torch.Tensor] | None = None,
    reset_optimizer_state: bool = True,
    **extras: Any,
) -> DropGrowResult:
    """The one mask update every drop-and-grow algorithm makes, given what it chose.

    Per layer of ``params``, in order: grow ``grow_counts[k]`` weights into ``kept[k]`` (the mask
    left by the algorithm's drop), at the inactive positions of largest ``grow_scores[k]``, or at
    random from ``generator`` when ``grow_scores`` is None; store the new mask; zero dropped
    weights and start grown ones at 0 (or ``new_values(k, n)``) with their optimizer state reset
    (kept with ``reset_optimizer_state=False``). ``extras`` are carried into the result.
    """
    layers = {}
    for k, p in params.items():
        old = masks.masks[k]
        if grow_scores is not None:
            new = grow_by_score(grow_scores[k], kept[k], grow_counts[k])
        elif generator is not None:
            new = grow_random(kept[k], grow_counts[k], generator)
        else:  # before the first layer changes
            raise ValueError("drop_and_grow grows at random only with a generator; pass grow_scores or generator")
        masks.set(k, new)
        values = None if new_values is None else (lambda n, k=k: new_values(k, n))
        change = reset_new_weights(p, old, kept[k], new, optimizer if reset_optimizer_state else None, values)
        layers[k] = LayerChange(**change)
    return DropGrowResult(layers, dict(extras))


def round_stats(per_layer: Mapping[str, Mapping[str, int]], **extra: Any) -> dict[str, Any]:
    """The stats dict of one mask update from each layer's ``{"pruned", "regrown"}`` (the training log reads it)."""
    pruned = {k: int(s["pruned"]) for k, s in per_layer.items()}
    regrown = {k: int(s["regrown"]) for k, s in per_layer.items()}
    return {
        **extra,
        "pruned": sum(pruned.values()),
        "regrown": sum(regrown.values()),
        "pruned_per_layer": pruned,
        "regrown_per_layer": regrown,
    }
