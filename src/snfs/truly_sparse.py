"""``truly_sparse``: every sparse linear layer holds only its active entries (docs/findings/truly_sparse.md).

A ``TrulySparseLinear`` has one parameter for its weights, ``values``, the vector of its active
weights in row-major order, and one buffer, ``indices``, their sorted flat positions (int64) in
the ``out x in`` weight. Its gradient and every optimizer state of it (SGD's momentum buffer,
Adam's moments) therefore have the length of ``values``; no dense weight, dense mask, dense
gradient or dense score exists at any step:

- forward ``y^T = W x^T`` and input gradient ``g W = (W^T g^T)^T`` are PyTorch's CSR x dense
  products (the transposed pattern is built once per pattern change);
- the values' gradient is ``torch.sparse.sampled_addmm``: ``g^T x`` at the active positions only;
- prune works on the values (their scores are a vector of the same length), grow samples inactive
  flat positions by rejection (a sorted ``searchsorted`` membership test), or, for RigL, takes the
  largest ``|g^T x|`` over inactive positions row block by row block, so at most one block of the
  dense gradient exists at a time.

After a prune/grow round the surviving weights keep their values and optimizer state (moved to
their new slots); new weights start as the masked mode starts them (RigL: 0; SET: random or 0),
with optimizer state 0. ``to_truly_sparse``/``to_masked`` convert a model (dense weights + masks)
in place both ways, and ``checkpoint_to_truly_sparse``/``checkpoint_to_masked`` convert a
training checkpoint, so a run written in one mode resumes in the other.

Algorithms: every one that declares ``index_space`` (static, SNIP after its dense scoring pass,
SET, RigL, DSR, DeepR and deepr_dsr_code); this module names none of them: a round is the
algorithm's ``drop_grow_choice`` on the active values, applied here (``TrulySparseTraining.round``).
Sparse momentum is refused: it redistributes and regrows by the momentum of *every* weight, active
or not, so it needs the dense momentum by definition. Sparse weights of other layers (convolutions)
keep the masked route in the same run (``MaskedLayer``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from snfs.errors import ConfigError
from snfs.execution import csr_linear
from snfs.masks import DropGrowResult, LayerChange

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

#: RigL's dense gradient is computed this many elements at a time (row blocks of about 4 MB in fp32)
GROW_BLOCK_ELEMENTS = 1 << 20


# --- the pattern ---------------------------------------------------------------------------------------


@dataclass
class CsrStructure:
    """The CSR structure of a layer's pattern and of its transpose (derived from ``indices``, rebuilt on change)."""

    crow: torch.Tensor
    col: torch.Tensor
    crow_t: torch.Tensor
    col_t: torch.Tensor
    order_t: torch.Tensor  # position in ``values`` of each entry of W^T, in W^T's row-major order
    shape: tuple[int, int]

    @classmethod
    def from_indices(cls, indices: torch.Tensor, shape: tuple[int, int]) -> CsrStructure:
        out_f, in_f = shape
        nnz = indices.numel()
        # int32 indices: PyTorch's CPU CSR kernels convert int64 ones on every call
        index = torch.int32 if nnz < 2**31 and max(shape) < 2**31 else torch.int64
        rows, cols = indices // in_f, indices % in_f
        order_t = torch.argsort(cols * out_f + rows)
        return cls(
            crow=_crow(rows, out_f).to(index),
            col=cols.to(index),
            crow_t=_crow(cols[order_t], in_f).to(index),
            col_t=rows[order_t].to(index),
            order_t=order_t.to(index),
            shape=(out_f, in_f),
        )

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sparse_csr_tensor(self.crow, self.col, values, size=self.shape, check_invariants=False)

    def matrix_t(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sparse_csr_tensor(
            self.crow_t,
            self.col_t,
            values.index_select(0, self.order_t),
            size=(self.shape[1], self.shape[0]),
            check_invariants=False,
        )


def _crow(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    return crow


def is_member(sorted_positions: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Whether each query is in ``sorted_positions`` (ascending): a binary search per query."""
    if sorted_positions.numel() == 0:
        return torch.zeros(queries.shape, dtype=torch.bool, device=queries.device)
    at = torch.searchsorted(sorted_positions, queries).clamp_(max=sorted_positions.numel() - 1)
    return sorted_positions[at] == queries


# --- the layer -------------------------------------------------------------------------------------------


class TrulySparseLinearFunction(torch.autograd.Function):
    """y = x W^T + b with W given by (pattern, values); the values' gradient only at the active positions."""

    @staticmethod
    def forward(ctx, x, values, bias, layer: TrulySparseLinear):
        structure = layer.structure()
        matrix = structure.matrix(values.detach())
        out, xt = csr_linear(matrix, x, bias)
        # x^T, not x: the sampled product reads its second factor transposed, so it then needs no copy of x
        ctx.save_for_backward(xt, values)
        ctx.matrix, ctx.structure, ctx.layer = matrix, structure, layer
        return out

    @staticmethod
    def backward(ctx, grad_out):
        xt, values = ctx.saved_tensors
        grad_x = grad_values = grad_b = None
        grad_out_t = grad_out.t().contiguous()
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(ctx.structure.matrix_t(values.detach()), grad_out_t).t()
        if ctx.needs_input_grad[1]:
            grad_values = torch.sparse.sampled_addmm(ctx.matrix, grad_out_t, xt.t(), beta=0.0).values()
        if ctx.needs_input_grad[2]:
            grad_b = grad_out_t.sum(1)
        if ctx.layer.keep_gradient_factors:  # RigL's update step: g^T x is formed later, row block by row block
            ctx.layer.gradient_factors = (grad_out_t, xt.t())
        return grad_x, grad_values, grad_b, None


class TrulySparseLinear(nn.Module):
    """A linear layer whose weight exists only as its active ``values`` at the sorted flat ``indices``."""

    #: FLOP counting (snfs.costs.layer_macs) counts it as the nn.Linear it computes
    counted_as = nn.Linear

    def __init__(
        self,
        in_features: int,
        out_features: int,
        indices: torch.Tensor,
        values: torch.Tensor,
        bias: torch.Tensor | None = None,
    ):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        order = torch.argsort(indices)
        # registered first, as nn.Linear registers its weight: a model's parameter order (and so its optimizer
        # state's numbering) is the same in both modes
        self.values = nn.Parameter(values.detach()[order].clone())
        # an existing bias parameter is kept as it is, so an optimizer that holds it keeps its state
        self.bias = bias if bias is None or isinstance(bias, nn.Parameter) else nn.Parameter(bias.detach().clone())
        self.indices: torch.Tensor
        self.register_buffer("indices", indices.detach()[order].to(torch.int64).clone())
        self._structure: CsrStructure | None = None
        self.keep_gradient_factors = False
        self.gradient_factors: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, mask: torch.Tensor) -> TrulySparseLinear:
        indices = mask.reshape(-1).nonzero().squeeze(1)
        values = linear.weight.detach().reshape(-1).index_select(0, indices)
        return cls(linear.in_features, linear.out_features, indices, values, linear.bias)

    @classmethod
    def random(
        cls, in_features: int, out_features: int, n_active: int, generator: torch.Generator, bias: bool = True
    ) -> TrulySparseLinear:
        """``n_active`` weights at uniformly random positions, drawn as nn.Linear draws its weights, never dense.

        nn.Linear's default init is U(-1/sqrt(in), 1/sqrt(in)) for the weight and the bias alike.
        """
        bound = 1.0 / math.sqrt(in_features)
        empty = torch.empty(0, dtype=torch.int64)
        indices = sample_inactive(empty, in_features * out_features, n_active, generator)
        values = (torch.rand(n_active, generator=generator) * 2 - 1) * bound
        b = (torch.rand(out_features, generator=generator) * 2 - 1) * bound if bias else None
        return cls(in_features, out_features, indices, values, b)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    @property
    def numel(self) -> int:
        return self.out_features * self.in_features

    @property
    def nnz(self) -> int:
        return int(self.indices.numel())

    def structure(self) -> CsrStructure:
        if self._structure is None:
            self._structure = CsrStructure.from_indices(self.indices, self.shape)
        return self._structure

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        out = TrulySparseLinearFunction.apply(x.reshape(-1, x.shape[-1]), self.values, self.bias, self)
        return out.reshape(*lead, self.out_features)

    def csr_weight(self) -> torch.Tensor:
        """The weight as a CPU CSR matrix (int32 indices) of its active entries: the export's form."""
        structure = CsrStructure.from_indices(self.indices.cpu(), self.shape)
        return torch.sparse_csr_tensor(
            structure.crow.to(torch.int32),
            structure.col.to(torch.int32),
            self.values.detach().cpu().clone(),
            size=self.shape,
            check_invariants=False,
        )

    def dense_weight(self) -> torch.Tensor:
        """The dense weight (conversion back to the masked mode and tests only)."""
        weight = torch.zeros(self.numel, dtype=self.values.dtype, device=self.values.device)
        weight[self.indices] = self.values.detach()
        return weight.view(self.shape)

    def dense_mask(self) -> torch.Tensor:
        """The dense boolean mask (conversion back to the masked mode and tests only)."""
        mask = torch.zeros(self.numel, dtype=torch.bool, device=self.indices.device)
        mask[self.indices] = True
        return mask.view(self.shape)

    # --- what a round reads and writes (the same on a MaskedLayer) ---
    def active_values(self) -> torch.Tensor:
        return self.values.detach()

    def set_active_values(self, values: torch.Tensor) -> None:
        with torch.no_grad():
            self.values.copy_(values)

    def grow_by_gradient(self, kept_positions: torch.Tensor, n: int) -> torch.Tensor:
        """The ``n`` free positions of largest |dense gradient| of the kept step (row blocks; RigL)."""
        assert self.gradient_factors is not None, "grow_by_gradient outside an update step"
        grad_out_t, x = self.gradient_factors
        return top_gradient_inactive(grad_out_t, x, kept_positions, n)

    def rewire(
        self,
        keep: torch.Tensor,
        grown: torch.Tensor,
        grown_values: torch.Tensor | None,
        optimizer: torch.optim.Optimizer | None,
    ) -> dict[str, int]:
        """Keep the active weights where ``keep`` (a bool per value) and add ``grown`` (inactive flat positions).

        Kept weights keep their value and every optimizer state of theirs; grown weights start at
        ``grown_values`` (0 if None) with optimizer state 0. Returns ``{"pruned", "regrown"}``.
        """
        kept_src = keep.nonzero().squeeze(1)
        positions = torch.cat([self.indices.index_select(0, kept_src), grown.to(self.indices)])
        order = torch.argsort(positions)
        source = torch.cat([kept_src, torch.full((grown.numel(),), -1, dtype=torch.int64, device=kept_src.device)])[
            order
        ]
        from_old = source >= 0
        safe = source.clamp(min=0)

        def moved(old: torch.Tensor, fresh: torch.Tensor | None) -> torch.Tensor:
            zeros = torch.zeros(grown.numel(), dtype=old.dtype, device=old.device)
            start = zeros if fresh is None else fresh.to(dtype=old.dtype, device=old.device)
            start = torch.cat([torch.zeros(kept_src.numel(), dtype=old.dtype, device=old.device), start])[order]
            return torch.where(from_old, old.index_select(0, safe), start)

        param = self.values
        with torch.no_grad():
            state = optimizer.state.get(param, {}) if optimizer is not None else {}
            for key, tensor in list(state.items()):
                if torch.is_tensor(tensor) and tensor.shape == param.shape:
                    state[key] = moved(tensor, None)
            param.data = moved(param.detach(), grown_values)
        param.grad = None
        self.indices = positions[order]
        self._structure = None
        return {"pruned": int(keep.numel() - kept_src.numel()), "regrown": int(grown.numel())}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint's layer may hold another number of active weights than this one (e.g. after a
        # redistribution): take its size before the copy
        values, indices = state_dict.get(prefix + "values"), state_dict.get(prefix + "indices")
        if values is not None and indices is not None and values.shape != self.values.shape:
            self.values.data = torch.empty_like(values, device=self.values.device)
            self.indices = torch.empty_like(indices, device=self.indices.device)
        self._structure = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, active={self.nnz} "
            f"({self.nnz / max(1, self.numel):.2%}), bias={self.bias is not None}"
        )


class MaskedLayer:
    """A sparse weight that keeps the masked route in a truly sparse run (a convolution): its dense weight and mask.

    It answers what a round and an ``IndexMaskState`` ask of a ``TrulySparseLinear`` (active
    positions and values, counts, ``rewire``), so the algorithms' rounds span both kinds of layer;
    the execution masks its gradient before and its weight after each optimizer step, as the
    masked mode does.
    """

    def __init__(self, weight: nn.Parameter, mask: torch.Tensor):
        self.values = weight  # the parameter the optimizer and the algorithm hold: here the dense weight
        self.mask = mask.to(device=weight.device, dtype=torch.bool)
        self._indices: torch.Tensor | None = None
        self.keep_gradient_factors = False
        self.gradient_factors: torch.Tensor | None = None  # |dense gradient| of an update step (RigL)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    @property
    def numel(self) -> int:
        return self.values.numel()

    @property
    def indices(self) -> torch.Tensor:
        if self._indices is None:
            self._indices = self.mask.reshape(-1).nonzero().squeeze(1)
        return self._indices

    @property
    def nnz(self) -> int:
        return int(self.indices.numel())

    def dense_mask(self) -> torch.Tensor:
        return self.mask

    def active_values(self) -> torch.Tensor:
        return self.values.detach().reshape(-1).index_select(0, self.indices)

    def set_active_values(self, values: torch.Tensor) -> None:
        with torch.no_grad():
            flat = self.values.detach().reshape(-1).clone()  # row-major, whatever the weight's memory format
            flat[self.indices] = values
            self.values.copy_(flat.view(self.shape))

    def mask_gradient(self) -> None:
        if self.values.grad is not None:
            if self.keep_gradient_factors:  # read before it is masked, as RigL's masked path reads it
                self.gradient_factors = self.values.grad.detach().abs().clone()
            self.values.grad.mul_(self.mask)

    def apply_mask(self) -> None:
        with torch.no_grad():
            self.values.mul_(self.mask)

    def grow_by_gradient(self, kept_positions: torch.Tensor, n: int) -> torch.Tensor:
        assert self.gradient_factors is not None, "grow_by_gradient outside an update step"
        score = self.gradient_factors.reshape(-1).float().clone()
        score[kept_positions] = -float("inf")
        return torch.topk(score, n).indices if n > 0 else kept_positions[:0]

    def rewire(
        self,
        keep: torch.Tensor,
        grown: torch.Tensor,
        grown_values: torch.Tensor | None,
        optimizer: torch.optim.Optimizer | None,
    ) -> dict[str, int]:
        """``TrulySparseLinear.rewire`` on the dense weight: the masked mode's ``reset_new_weights``."""
        from snfs.masks import reset_new_weights

        old = self.mask
        kept = torch.zeros(self.numel, dtype=torch.bool, device=old.device)
        kept[self.indices[keep]] = True
        new = kept.clone()
        new[grown.to(old.device)] = True
        kept, new = kept.view(self.shape), new.view(self.shape)
        start = None if grown_values is None else (lambda n: grown_values)
        change = reset_new_weights(self.values, old, kept, new, optimizer, start)
        self.mask, self._indices = new, None
        return change


# --- prune and grow in index space -------------------------------------------------------------------------


def _first_occurrences(draws: torch.Tensor) -> torch.Tensor:
    """``draws`` without repeats, each value at its first occurrence, in draw order."""
    unique, inverse = torch.unique(draws, return_inverse=True)
    first = torch.full((unique.numel(),), draws.numel(), dtype=torch.int64)
    first.scatter_reduce_(0, inverse, torch.arange(draws.numel()), reduce="amin")
    return draws.index_select(0, first.sort().values)


def sample_inactive(occupied: torch.Tensor, numel: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` distinct flat positions in ``[0, numel)`` outside ``occupied`` (sorted), uniformly (CPU generator).

    Rejection sampling: positions are drawn uniformly with replacement; occupied ones and repeats
    are rejected, and the first ``n`` accepted ones in draw order are a uniform sample without
    replacement of the free positions. Nothing of size ``numel`` is formed, except when fewer than
    1/32 of the positions are free (a nearly dense layer), where the free positions are listed.
    """
    occupied = occupied.cpu()
    free = numel - occupied.numel()
    if n > free:
        raise ValueError(f"cannot grow {n} weights into {free} inactive positions")
    if n <= 0:
        return torch.empty(0, dtype=torch.int64)
    if free * 32 < numel:
        everything = torch.arange(numel)
        candidates = everything[~is_member(occupied, everything)]
        return candidates[torch.randperm(free, generator=generator)[:n]]
    chosen = torch.empty(0, dtype=torch.int64)
    while chosen.numel() < n:
        need = n - chosen.numel()
        accept = (free - chosen.numel()) / numel
        draws = torch.randint(numel, (int(need / accept * 1.1) + 16,), generator=generator)
        draws = _first_occurrences(draws[~is_member(occupied, draws)])
        if chosen.numel():
            draws = draws[~is_member(chosen.sort().values, draws)]
        chosen = torch.cat([chosen, draws[:need]])
    return chosen


def top_gradient_inactive(
    grad_out_t: torch.Tensor, x: torch.Tensor, occupied: torch.Tensor, n: int, block_elements: int = GROW_BLOCK_ELEMENTS
) -> torch.Tensor:
    """Flat positions outside ``occupied`` (sorted) of the ``n`` largest |(g^T x)| (RigL's grow, Evci et al. 2020).

    ``g^T x`` is the dense weight gradient; it is formed one block of rows at a time and only each
    block's best ``n`` candidates are kept, so at most one block and ``2 n`` candidates exist at once.
    """
    out_f, in_f = grad_out_t.shape[0], x.shape[1]
    if n <= 0:
        return torch.empty(0, dtype=torch.int64, device=occupied.device)
    rows = max(1, block_elements // max(1, in_f))
    best_score = torch.empty(0, dtype=torch.float32, device=x.device)
    best_pos = torch.empty(0, dtype=torch.int64, device=x.device)
    for r0 in range(0, out_f, rows):
        r1 = min(out_f, r0 + rows)
        score = torch.mm(grad_out_t[r0:r1], x).abs_().reshape(-1).float()
        base = r0 * in_f
        lo, hi = torch.searchsorted(occupied, torch.tensor([base, r1 * in_f], device=occupied.device)).tolist()
        score[occupied[lo:hi] - base] = -float("inf")
        k = min(n, score.numel())
        top = torch.topk(score, k)
        usable = top.values > -float("inf")
        best_score = torch.cat([best_score, top.values[usable]])
        best_pos = torch.cat([best_pos, top.indices[usable] + base])
        if best_score.numel() > n:
            keep = torch.topk(best_score, n).indices
            best_score, best_pos = best_score[keep], best_pos[keep]
    if best_pos.numel() < n:
        raise ValueError(f"cannot grow {n} weights into {best_pos.numel()} inactive positions")
    return best_pos


# --- conversion between the masked and the truly sparse mode ------------------------------------------------


def _parent(model: nn.Module, module_name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = module_name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def to_truly_sparse(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    keep_masked: bool = False,
) -> dict[str, TrulySparseLinear | MaskedLayer]:
    """Replace, in place, every ``nn.Linear`` whose ``<name>.weight`` has a mask by a ``TrulySparseLinear``.

    Returns the new layers by weight name. A masked weight of any other layer (a convolution) stays
    as it is, a ``MaskedLayer``, with ``keep_masked``; without, it is a ConfigError. With
    ``optimizer``, each dense weight in its parameter groups is replaced by the layer's ``values``
    and its state (momentum, Adam's moments) by the active entries' (the bias parameters are kept
    as they are); without, build the optimizer after this,
    over ``model.parameters()``.
    """
    layers: dict[str, TrulySparseLinear | MaskedLayer] = {}
    params = dict(model.named_parameters())
    for weight_name, mask in masks.items():
        module_name = weight_name.removesuffix(".weight")
        module = model.get_submodule(module_name) if weight_name.endswith(".weight") else None
        if keep_masked and not isinstance(module, nn.Linear):
            layers[weight_name] = MaskedLayer(params[weight_name], mask)
            continue
        if not isinstance(module, nn.Linear):
            raise ConfigError(
                f"execution=truly_sparse runs sparse nn.Linear layers only; {weight_name} is a "
                f"{type(module).__name__}: use execution=masked or execution=sparse for this model"
            )
        layer = TrulySparseLinear.from_linear(module, mask).to(module.weight.device)
        if optimizer is not None:
            _hand_over(optimizer, module.weight, layer.values, layer.indices)
        parent, child = _parent(model, module_name)
        setattr(parent, child, layer)  # the same slot in the parent: the parameter order is kept
        layers[weight_name] = layer
    return layers


def _hand_over(
    optimizer: torch.optim.Optimizer, weight: torch.Tensor, values: nn.Parameter, indices: torch.Tensor
) -> None:
    """In ``optimizer``, ``values`` takes the place of the dense ``weight``, with its state at the active entries."""
    for group in optimizer.param_groups:
        group["params"] = [values if p is weight else p for p in group["params"]]
    state = optimizer.state.pop(weight, None)
    if state:
        optimizer.state[values] = {
            k: (
                v.detach().reshape(-1).index_select(0, indices).clone()
                if torch.is_tensor(v) and v.shape == weight.shape
                else v
            )
            for k, v in state.items()
        }


def to_masked(model: nn.Module) -> dict[str, torch.Tensor]:
    """Replace, in place, every ``TrulySparseLinear`` by an ``nn.Linear``; returns the masks by weight name."""
    masks = {}
    for module_name, module in list(model.named_modules()):
        if isinstance(module, TrulySparseLinear):
            linear = nn.Linear(
                module.in_features,
                module.out_features,
                bias=module.bias is not None,
                device=module.values.device,
                dtype=module.values.dtype,
            )
            with torch.no_grad():
                linear.weight.copy_(module.dense_weight())
                if module.bias is not None:
                    linear.bias.copy_(module.bias)
            parent, child = _parent(model, module_name)
            setattr(parent, child, linear)
            masks[f"{module_name}.weight"] = module.dense_mask()
    return masks


def checkpoint_to_truly_sparse(
    state: Mapping[str, Any], param_names: list[str], names: Collection[str] | None = None
) -> dict:
    """A masked-mode checkpoint (``model``, ``optimizer``, ``algorithm`` with ``masks``) as this mode's.

    ``param_names``: the masked model's ``[name for name, _ in model.named_parameters()]``, the
    numbering of the optimizer's state. Weights, momentum buffers and masks become active entries.
    """
    masks = state["algorithm"]["masks"]
    model = dict(state["model"])
    optimizer = {**state["optimizer"], "state": dict(state["optimizer"]["state"])}
    converted = {k: m for k, m in masks.items() if names is None or k in names}  # the rest stay masked layers
    for name, mask in converted.items():
        indices = mask.reshape(-1).nonzero().squeeze(1)
        prefix = name.removesuffix("weight")
        model[prefix + "values"] = model.pop(name).reshape(-1)[indices].clone()
        model[prefix + "indices"] = indices
        number = param_names.index(name)
        if number in optimizer["state"]:
            optimizer["state"][number] = {
                k: (v.reshape(-1)[indices].clone() if torch.is_tensor(v) and v.shape == mask.shape else v)
                for k, v in optimizer["state"][number].items()
            }
    algorithm = {k: v for k, v in state["algorithm"].items() if k != "masks"}
    if len(converted) < len(masks):
        algorithm["masks"] = {k: m for k, m in masks.items() if k not in converted}
    return {**state, "model": _ordered_like(model, state["model"]), "optimizer": optimizer, "algorithm": algorithm}


def checkpoint_to_masked(state: Mapping[str, Any], param_names: list[str], shapes: Mapping[str, tuple]) -> dict:
    """This mode's checkpoint as a masked-mode one; ``shapes``: each sparse weight's dense shape by name."""
    model = dict(state["model"])
    optimizer = {**state["optimizer"], "state": dict(state["optimizer"]["state"])}
    masks = dict(state["algorithm"].get("masks") or {})  # those of layers that stayed masked
    for name, shape in shapes.items():
        prefix = name.removesuffix("weight")
        indices, values = model.pop(prefix + "indices"), model.pop(prefix + "values")
        model[name] = _scattered(values, indices, shape)
        masks[name] = _scattered(torch.ones_like(values), indices, shape).bool()
        number = param_names.index(name)
        if number in optimizer["state"]:
            optimizer["state"][number] = {
                k: (_scattered(v, indices, shape) if torch.is_tensor(v) and v.shape == values.shape else v)
                for k, v in optimizer["state"][number].items()
            }
    return {**state, "model": model, "optimizer": optimizer, "algorithm": {**state["algorithm"], "masks": masks}}


def _scattered(values: torch.Tensor, indices: torch.Tensor, shape: tuple) -> torch.Tensor:
    """A dense tensor of ``shape``: ``values`` at the flat ``indices``, 0 elsewhere."""
    out = torch.zeros(math.prod(shape), dtype=values.dtype)
    out[indices] = values
    return out.view(shape)


def _ordered_like(model: dict, original: Mapping[str, Any]) -> dict:
    out = {}
    for key in original:
        if key in model:
            out[key] = model[key]
        else:  # a converted weight: values, then indices, where the weight was
            prefix = key.removesuffix("weight")
            out[prefix + "values"], out[prefix + "indices"] = model[prefix + "values"], model[prefix + "indices"]
    return out


# --- the algorithms in index space ------------------------------------------------------------------------


class IndexMaskState:
    """``MaskState``'s queries answered from the layers' indices: no dense mask is kept.

    The algorithm's ``masks`` in this mode, so that whatever reads densities, counts or the
    checksum reads them alike in every mode. ``masks`` forms the dense boolean masks on demand
    (export to dense tools, tests); nothing in training asks for it.
    """

    def __init__(self, layers: Mapping[str, TrulySparseLinear | MaskedLayer]):
        self.layers = dict(layers)

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        return {name: layer.dense_mask() for name, layer in self.layers.items()}

    def names(self) -> list[str]:
        return list(self.layers)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: layer.shape for name, layer in self.layers.items()}

    def active(self, name: str) -> int:
        return self.layers[name].nnz

    def active_counts(self) -> dict[str, int]:
        return {name: layer.nnz for name, layer in self.layers.items()}

    def total_active(self) -> int:
        return sum(self.active_counts().values())

    def total_numel(self) -> int:
        return sum(layer.numel for layer in self.layers.values())

    def density(self) -> float:
        return self.total_active() / max(1, self.total_numel())

    def layer_densities(self) -> dict[str, float]:
        return {name: layer.nnz / layer.numel for name, layer in self.layers.items()}

    def checksum(self) -> int:
        """``MaskState.checksum`` of the same masks, from the indices (ranks compare it under DDP)."""
        total = 0
        for i, layer in enumerate(self.layers.values()):
            positions = layer.indices.double()
            total = (
                total * 1_000_003 + int(((positions + 1) * (i + 1)).remainder(2_147_483_647).sum().item()) + layer.nnz
            ) % (2**52)
        return total

    # a truly sparse layer's pattern lives in the model's state (its ``indices``); a masked layer's mask here
    def state_dict(self) -> dict:
        return {
            k: layer.mask.detach().cpu().clone() for k, layer in self.layers.items() if isinstance(layer, MaskedLayer)
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k, mask in state.items():
            layer = self.layers[k]
            assert isinstance(layer, MaskedLayer), f"{k} is a truly sparse layer: its pattern is in the model's state"
            layer.mask, layer._indices = mask.to(device=layer.mask.device, dtype=torch.bool), None

    def apply(self, params: Mapping[str, torch.Tensor]) -> None:
        pass  # a layer holds no inactive weight to zero


class TrulySparseTraining:
    """An algorithm's training on ``TrulySparseLinear`` layers: the hooks of ``SparseAlgorithm`` plus ``begin_step``.

    ``algorithm`` is the algorithm object after ``init_masks`` (its options, schedule and random
    generator carry over); ``model`` is converted in place and the algorithm's dense masks are
    replaced by an ``IndexMaskState``. Nothing here names an algorithm: the schedule, the drop and
    the counts come from the algorithm's ``round_after_step``/``round_at_epoch_end`` and
    ``drop_grow_choice`` (what its masked path asks too), the refill from its ``grows`` (at random,
    or by the dense gradient in row blocks) and ``new_weight_values``. The training loop calls, per
    step: ``begin_step`` (before the forward), backward, ``before_step``, ``optimizer.step()``,
    ``after_step``; and ``on_epoch_end``.
    """

    name = "truly_sparse"
    #: the Sparsifier calls this object's hooks instead of the algorithm's
    runs_algorithm = True

    def __init__(
        self,
        algorithm,
        model: nn.Module,
        layers: Mapping[str, TrulySparseLinear | MaskedLayer] | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ):
        check_supported(algorithm)
        self.algorithm = algorithm
        self.model = model
        self.optimizer: torch.optim.Optimizer | None = None
        # from a masked model (dense weights + the algorithm's masks; an optimizer given here is converted
        # in place), or the layers of ``build_from_scratch``
        self.layers: dict[str, TrulySparseLinear | MaskedLayer] = (
            dict(layers)
            if layers is not None
            else to_truly_sparse(model, algorithm.masks.masks, optimizer, keep_masked=algorithm.mixes_masked_layers)
        )
        self.masked_layers = [layer for layer in self.layers.values() if isinstance(layer, MaskedLayer)]
        # the algorithm's sparse parameters are now the layers' values; the dense weights are let go
        algorithm.to_index_space(
            IndexMaskState(self.layers), {name: layer.values for name, layer in self.layers.items()}
        )
        if optimizer is not None:
            self.attach_optimizer(optimizer)
        self._update_step = False

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.algorithm.ctx.optimizer = optimizer

    # --- execution hooks ---
    def begin_step(self, step: int) -> None:
        algo = self.algorithm
        self._update_step = algo.grows == "gradient" and algo.round_after_step(step)
        for layer in self.layers.values():
            layer.keep_gradient_factors = self._update_step
            layer.gradient_factors = None

    def routes(self) -> dict[str, str]:
        return {
            name: "masked" if isinstance(layer, MaskedLayer) else "truly_sparse" for name, layer in self.layers.items()
        }

    # --- algorithm hooks ---
    def masked_grads(self) -> frozenset[str]:
        """Layers whose gradient needs no masking: every truly sparse one (its gradient has no inactive entry)."""
        return frozenset(name for name, layer in self.layers.items() if not isinstance(layer, MaskedLayer))

    def before_step(self, step: int, masked_grads: Collection[str] = frozenset()) -> None:
        # the values' gradient has no inactive entries to mask; what an algorithm adds to it (DeepR) it adds here
        for layer in self.masked_layers:
            layer.mask_gradient()
        self.algorithm.index_space_before_step(step, {k: layer.indices for k, layer in self.layers.items()})

    def after_step(self, step: int) -> dict | None:
        for layer in self.masked_layers:  # the optimizer's weight decay and momentum moved inactive weights
            layer.apply_mask()
        self.algorithm.advance(step)
        return self.round(step) if self.algorithm.round_after_step(step) else None

    def on_epoch_end(self, epoch: int) -> dict | None:
        if not self.algorithm.round_at_epoch_end(epoch):
            return None
        return self.round((epoch + 1) * self.algorithm.ctx.steps_per_epoch - 1)

    def round(self, step: int) -> dict | None:
        """One drop-and-grow round: the algorithm's choice on the values, the refill in index space, ``rewire``."""
        algo = self.algorithm
        if algo.grows == "gradient":  # only layers that kept this step's gradient factors can grow towards it
            names = [k for k, layer in self.layers.items() if layer.gradient_factors is not None]
            if not names:
                return None
        elif algo.grows == "random":
            names = list(self.layers)
        else:
            raise ValueError(f"sparse={algo.name} grows {algo.grows!r}; this mode grows 'random' or 'gradient'")
        choice = algo.drop_grow_choice(
            {k: self.layers[k].active_values() for k in names},
            {k: self.layers[k].numel for k in names},
            step,
            positions={k: self.layers[k].indices for k in names},
        )
        start_values = algo.new_weight_values()
        changes = {}
        for k in names:
            layer, keep, n = self.layers[k], choice.keep[k], int(choice.grow[k])
            if choice.values is not None:
                layer.set_active_values(choice.values[k])
            if n == 0 and bool(keep.all()):
                changes[k] = LayerChange(pruned=0, regrown=0)
                continue
            kept_positions = layer.indices[keep]
            if algo.grows == "gradient":
                grown = layer.grow_by_gradient(kept_positions, n)
            else:  # free = inactive after the drop; a just-dropped position may come back unless the algorithm says no
                free_of = kept_positions
                if not choice.regrow_dropped and n <= layer.numel - layer.nnz:
                    free_of = layer.indices
                grown = sample_inactive(free_of, layer.numel, n, algo.generator)
            start = None if start_values is None or n == 0 else start_values(k, n)
            changes[k] = LayerChange(**layer.rewire(keep, grown, start, self.optimizer))
        for layer in self.layers.values():
            layer.keep_gradient_factors, layer.gradient_factors = False, None
        if not choice.report_empty and not any(c.pruned or c.regrown for c in changes.values()):
            return None
        return DropGrowResult(changes, dict(choice.extras)).as_stats()

    # --- what the run reports: the algorithm's own queries, on an IndexMaskState ---
    def active_counts(self) -> dict[str, int]:
        return self.algorithm.masks.active_counts()

    def density(self) -> float:
        return self.algorithm.masks.density()

    def layer_densities(self) -> dict[str, float]:
        return self.algorithm.masks.layer_densities()

    def checksum(self) -> int:
        return self.algorithm.masks.checksum()

    def log_stats(self) -> dict:
        return self.algorithm.log_stats()

    @property
    def flops_accounting(self) -> str:
        return self.algorithm.flops_accounting

    def flops_options(self) -> dict:
        return self.algorithm.flops_options()

    # --- persistence: the algorithm's state without masks (the pattern is the model's ``indices``) ---
    def state_dict(self) -> dict:
        return self.algorithm.index_space_state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.algorithm.load_index_space_state_dict(state)
        for layer in self.layers.values():
            if isinstance(layer, TrulySparseLinear):
                layer._structure = None

    # --- checkpoints of the other mode, and export ---
    def masked_parameter_names(self) -> list[str]:
        """The names the model's parameters have in the masked mode (the numbering of the optimizer's state)."""
        converted = {
            name.removesuffix("weight") + "values": name
            for name, layer in self.layers.items()
            if isinstance(layer, TrulySparseLinear)
        }
        return [converted.get(name, name) for name, _ in self.model.named_parameters()]

    def adapt_checkpoint(self, state: Mapping[str, Any]) -> dict:
        """A training checkpoint (``model``, ``optimizer``, ``algorithm``) in this mode's layout, from either mode's."""
        linear = [name for name, layer in self.layers.items() if isinstance(layer, TrulySparseLinear)]
        if not any(name in state["model"] for name in linear):
            return dict(state)
        return checkpoint_to_truly_sparse(state, self.masked_parameter_names(), linear)

    def export(self, path: str, config: Mapping[str, Any] | None = None) -> int:
        """``snfs.save_sparse``'s file (loads into the dense model class), built from the active entries only."""
        from snfs.export import _csr, write_sparse

        state = self.model.state_dict()
        tensors: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            prefix, _, last = key.rpartition(".")
            layer_name = f"{prefix}.weight" if prefix else "weight"
            sparse_layer, masked_layer = self.layers.get(layer_name), self.layers.get(key)
            if isinstance(sparse_layer, TrulySparseLinear) and last in ("values", "indices"):
                if last == "values":
                    tensors[layer_name] = sparse_layer.csr_weight()
                continue
            if isinstance(masked_layer, MaskedLayer):
                tensors[key] = _csr(value, masked_layer.mask)
                continue
            tensors[key] = value.detach().cpu()
        shapes = {name: list(layer.shape) for name, layer in self.layers.items()}
        return write_sparse(path, tensors, shapes, config)


def adapt_masked_checkpoint(state: Mapping[str, Any], model: nn.Module, shapes: Mapping[str, tuple]) -> dict:
    """A training checkpoint in the masked layout for ``model`` (dense), from either mode's."""
    shapes = {name: shape for name, shape in shapes.items() if name.removesuffix("weight") + "values" in state["model"]}
    if not shapes:
        return dict(state)
    return checkpoint_to_masked(state, [name for name, _ in model.named_parameters()], shapes)


def build_from_scratch(model: nn.Module, algorithm, device: torch.device | str = "cpu") -> TrulySparseTraining:
    """A truly sparse model whose sparse layers never exist densely: ``model`` built on the meta device.

    Each sparse ``nn.Linear`` becomes a ``TrulySparseLinear`` with the algorithm's initial count
    (its ``distribution``, from the shapes alone) at uniformly random positions, its values and
    bias drawn as nn.Linear draws them, U(-1/sqrt(in), 1/sqrt(in)), from the algorithm's generator.
    Every other parameter is allocated on ``device`` and initialised by its module's
    ``reset_parameters``. SET's new weights take the std of that distribution, 1/sqrt(3 in).
    Not for SNIP, whose mask comes from the dense model's gradient.
    """
    from snfs.masks import DISTRIBUTIONS

    check_supported(algorithm)
    if algorithm.needs_sample_batch:
        raise ConfigError(
            f"sparse={algorithm.name} scores the dense model once: build it densely, then convert (TrulySparseTraining)"
        )
    shapes = {name: p.shape for name, p in algorithm.params.items()}
    counts = DISTRIBUTIONS[algorithm.option("distribution")](shapes, algorithm.ctx.density)
    layers = {}
    for name, count in counts.items():
        module_name = name.removesuffix(".weight")
        module = model.get_submodule(module_name)
        if not isinstance(module, nn.Linear):
            raise ConfigError(
                f"execution=truly_sparse runs sparse nn.Linear layers only; {name} is a "
                f"{type(module).__name__}: use execution=masked or execution=sparse for this model"
            )
        layer = TrulySparseLinear.random(
            module.in_features, module.out_features, count, algorithm.generator, bias=module.bias is not None
        ).to(device)
        parent, child = _parent(model, module_name)
        setattr(parent, child, layer)
        layers[name] = layer
    for module in model.modules():
        if not isinstance(module, TrulySparseLinear) and any(
            p.is_meta for p in [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        ):
            module.to_empty(device=device, recurse=False)
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    algorithm.built_from_scratch(shapes)
    run = TrulySparseTraining(algorithm, model, layers)
    algorithm.masks_ready()
    return run


def check_supported(algorithm: Any) -> None:
    """A one-line ConfigError for an algorithm (an object, class or name) this mode does not run."""
    from snfs.algorithms import ALGORITHMS, VARIANTS

    cls: Any = algorithm if isinstance(algorithm, type) else type(algorithm)
    if isinstance(algorithm, str):
        cls = ALGORITHMS.get(VARIANTS.get(algorithm, (algorithm,))[0])
    name = algorithm if isinstance(algorithm, str) else cls.name
    if cls.index_space:
        return
    supported = [n for n in ALGORITHMS.names() if ALGORITHMS.get(n).index_space]
    supported += [v for v, (base, _) in VARIANTS.items() if ALGORITHMS.get(base).index_space]
    raise ConfigError(
        f"execution=truly_sparse does not run sparse={name}: {cls.index_space_refusal}; valid choices: "
        f"{', '.join(sorted(supported))} (sparse={name} runs with execution=masked or sparse)"
    )
