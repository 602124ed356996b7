"""The mask state: one boolean mask per sparse weight, keyed by parameter name.

Sparse layers are the weights of conv and linear modules (ALGORITHMS.md); biases and
normalisation parameters always stay dense. Layers are selected by exact parameter name, never by
prefix, which is how the reference code left some VGG16 convolutions dense by accident.
"""

from __future__ import annotations

from snfs.errors import CheckpointError, ConfigError

import math
from typing import Iterable, Mapping

import torch
from torch import nn

SPARSE_MODULE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def sparse_parameters(model: nn.Module, dense_layers: Iterable[str] = ()) -> dict[str, nn.Parameter]:
    """The weights that get masks: conv/linear weights whose name is not listed in ``dense_layers``."""
    dense = set(dense_layers)
    named = {}
    for module_name, module in model.named_modules():
        if isinstance(module, SPARSE_MODULE_TYPES):
            name = f"{module_name}.weight" if module_name else "weight"
            if name not in dense:
                named[name] = module.weight
    unknown = dense - {f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, SPARSE_MODULE_TYPES)}
    if unknown:
        valid = ", ".join(f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, SPARSE_MODULE_TYPES))
        raise ConfigError(f"sparse.dense_layers names unknown layers {sorted(unknown)}; valid: {valid}")
    return named


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

    def to(self, device: torch.device | str) -> "MaskState":
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
                raise CheckpointError(f"mask {k} has shape {tuple(m.shape)} in the checkpoint, {tuple(self.masks[k].shape)} here")
            self.masks[k] = m.to(self.masks[k].device).bool()
        self._float = None
        self.versions = {k: v + 1 for k, v in self.versions.items()}

    def checksum(self) -> int:
        """A fingerprint of which weights are active, used to confirm that ranks agree on the masks."""
        total = 0
        for i, m in enumerate(self.masks.values()):
            positions = torch.nonzero(m.flatten()).flatten().double()
            # kept below 2**52 so that a float64 all-reduce compares it exactly
            total = (total * 1_000_003 + int(((positions + 1) * (i + 1)).remainder(2_147_483_647).sum().item()) + int(m.sum())) % (2**52)
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


def _largest_remainder(target: int, quotas: Mapping[str, float], caps: Mapping[str, int]) -> dict[str, int]:
    """Integer counts that sum to ``target``, each within its cap, closest to the real quotas."""
    counts = {k: min(caps[k], int(math.floor(q))) for k, q in quotas.items()}
    left = target - sum(counts.values())
    order = sorted(quotas, key=lambda k: (quotas[k] - math.floor(quotas[k])), reverse=True)
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
    return _largest_remainder(target, quotas, numel)


DISTRIBUTIONS = {
    "uniform": uniform_counts,
    "erk": lambda shapes, d: erdos_renyi_counts(shapes, d, kernel=True),
    "erdos_renyi": lambda shapes, d: erdos_renyi_counts(shapes, d, kernel=False),
}


def init_masks(params: Mapping[str, torch.Tensor], density: float, distribution: str, generator: torch.Generator) -> MaskState:
    """Random masks with the per-layer counts of ``distribution`` (ALGORITHMS.md, mask initialisation)."""
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(f"sparse.distribution={distribution!r} is not valid; valid choices: {', '.join(DISTRIBUTIONS)}")
    shapes = {k: p.shape for k, p in params.items()}
    counts = DISTRIBUTIONS[distribution](shapes, density)
    masks = {k: random_mask(shapes[k], counts[k], generator).to(params[k].device) for k in shapes}
    return MaskState(masks)
