"""How sparse layers compute: ``masked`` dense weights, or ``sparse`` kernels over the active weights only.

The execution never changes what an algorithm decides. The dense ``weight`` parameter stays the
one source of truth: the optimizer, the masks, checkpoints and the results store see only it.
With ``execution=sparse`` every sparse ``nn.Linear`` reads its active values into a CSR matrix at
each forward (a gather of the active entries) and computes

- the output, ``x W^T = (W_csr x^T)^T``, and the input gradient, ``g W = (W^T_csr g^T)^T``, with
  PyTorch's CSR x dense kernels;
- the weight gradient at the active positions only (``torch.sparse.sampled_addmm``), scattered
  into a dense gradient that is zero elsewhere, on the steps where the algorithm asks for no more;
- the full dense weight gradient (one dense GEMM) on the steps where the algorithm needs it
  (``SparseAlgorithm.needs_dense_grad``: sparse momentum every step, RigL on update steps).

The CSR structure of a layer is rebuilt only when its mask changes (``MaskState.versions``).
Whether the CSR route beats the dense one depends on the CPU (its vector extensions and BLAS), the
layer's shape, the batch and the density, and crossovers tuned on one machine were wrong on another
(docs/performance.md, docs/findings/sparse_execution.md). So every layer takes the route that is
faster here: the first time a layer shape sees an input shape at a given density (and gradient
need), both routes are timed, interleaved, on that input (forward and backward when training), and
the faster one is kept for the rest of the process (``TIMED_ROUTES``; ``RouteSettings`` holds the knobs).
Convolutions (``nn.Conv2d``, groups 1) have one sparse route in PyTorch, unfold + CSR product,
timed the same way (where it wins: results/bench/conv.md).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from snfs.errors import ConfigError

#: truly_sparse: layers that hold only their active entries (snfs.truly_sparse, docs/findings/truly_sparse.md)
EXECUTIONS = ("masked", "sparse", "truly_sparse")
# PyTorch marks its CSR tensors "beta" on every construction; we pin the version these kernels were tested on.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
ROUTE_CHOICES = ("timed", "csr", "dense")


@dataclass
class RouteSettings:
    """Which sparse layers take the CSR route under ``execution=sparse``."""

    #: linear layers and convolutions: "timed" (the faster route here), "csr" (always), "dense" (never)
    linear: str = "timed"
    conv: str = "timed"
    #: layers denser than this are not even timed: far above where CSR stops winning (docs/findings/sparse_execution.md)
    max_density: float = 0.5
    #: ... nor layers with fewer weights (none: timing decides; tests raise it)
    min_weights: int = 0
    #: interleaved rounds per timing; each route's best round counts
    rounds: int = 10
    #: densities within this factor of each other share one timing: sparse momentum and DSR move a layer's
    #: density at every mask update, and timing every new density anew costs a share of each epoch
    #: (docs/findings/sparse_execution.md); the crossover moves smoothly with density
    density_ratio: float = 1.25

    def check(self) -> None:
        for key in ("linear", "conv"):
            if getattr(self, key) not in ROUTE_CHOICES:
                raise ConfigError(
                    f"execution route {key}={getattr(self, key)!r} is not a valid choice; "
                    f"valid choices: {', '.join(ROUTE_CHOICES)}"
                )


#: (kind, weight shape, input shape, dtype, device, density bucket, training, dense weight grad) -> CSR is faster.
#: One process runs on one machine, so a timing holds for every layer of that shape for the process's life.
TIMED_ROUTES: dict[tuple, bool] = {}


@dataclass
class CsrPattern:
    """The CSR structure of one (out x in) mask and of its transpose, and where their values sit in the flat weight."""

    crow: torch.Tensor
    col: torch.Tensor
    gather: torch.Tensor  # flat positions of W's active entries, in CSR (row-major) order
    crow_t: torch.Tensor
    col_t: torch.Tensor
    gather_t: torch.Tensor  # flat positions of W's active entries, in the CSR order of W^T
    shape: tuple[int, int]

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> CsrPattern:
        out_f, in_f = mask.shape
        # int32 indices: PyTorch's CPU CSR kernels convert int64 ones on every call (docs/findings/sparse_execution.md)
        index = torch.int32 if mask.numel() < 2**31 else torch.int64
        gather = mask.flatten().nonzero().squeeze(1)
        rows, cols = gather // in_f, gather % in_f
        positions_t = mask.t().flatten().nonzero().squeeze(1)  # row-major positions in W^T
        rows_t, cols_t = positions_t // out_f, positions_t % out_f
        return cls(
            crow=_crow(rows, out_f).to(index),
            col=cols.to(index),
            gather=gather,
            crow_t=_crow(rows_t, in_f).to(index),
            col_t=cols_t.to(index),
            gather_t=cols_t * in_f + rows_t,
            shape=(out_f, in_f),
        )

    @property
    def nnz(self) -> int:
        return int(self.gather.numel())

    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        values = torch.index_select(weight.reshape(-1), 0, self.gather)
        return torch.sparse_csr_tensor(self.crow, self.col, values, size=self.shape, check_invariants=False)

    def matrix_t(self, weight: torch.Tensor) -> torch.Tensor:
        values = torch.index_select(weight.reshape(-1), 0, self.gather_t)
        return torch.sparse_csr_tensor(
            self.crow_t, self.col_t, values, size=(self.shape[1], self.shape[0]), check_invariants=False
        )


def csr_linear(matrix: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``x W^T + b`` as ``(W_csr x^T + b)^T`` with PyTorch's CSR product; returns it (a transposed view, so
    a following sparse layer gets its ``x^T`` contiguous without a copy) and the contiguous ``x^T``."""
    xt = x.t().contiguous()
    out_t = torch.mm(matrix, xt) if bias is None else torch.addmm(bias.detach()[:, None], matrix, xt)
    return out_t.t(), xt


def _weight_grad(ctx, g: torch.Tensor, inputs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``g @ inputs`` shaped like ``w``: dense, or only at the pattern's active positions (zero elsewhere)."""
    if ctx.dense_weight_grad:
        return torch.mm(g, inputs).view_as(w)
    active = torch.sparse.sampled_addmm(ctx.matrix, g, inputs, beta=0.0)
    grad = torch.zeros(w.numel(), dtype=w.dtype, device=w.device)
    grad.index_copy_(0, ctx.pattern.gather, active.values())
    return grad.view_as(w)


def _crow(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    return crow


class SparseLinearFunction(torch.autograd.Function):
    """y = x W^T + b through CSR kernels; the weight gradient is dense or restricted to the active positions.

    The products are taken transposed, ``y^T = W x^T``, because PyTorch's CSR kernels multiply a
    sparse matrix from the left; the result is returned as a transposed view, so a following
    sparse layer receives its ``x^T`` contiguous without a copy.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, pattern: CsrPattern, dense_weight_grad: bool):
        w = weight.detach()
        matrix = pattern.matrix(w)
        out, _ = csr_linear(matrix, x, bias)
        ctx.save_for_backward(x, w)
        ctx.matrix, ctx.pattern, ctx.dense_weight_grad = matrix, pattern, dense_weight_grad
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        grad_out_t = grad_out.t().contiguous()
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(ctx.pattern.matrix_t(w), grad_out_t).t()
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(ctx, grad_out_t, x, w)
        if ctx.needs_input_grad[2]:
            grad_b = grad_out_t.sum(1)
        return grad_x, grad_w, grad_b, None, None


class SparseConv2dFunction(torch.autograd.Function):
    """conv2d as ``W_csr @ unfold(x)``: output channels x (C k k) times (C k k) x (batch * positions)."""

    @staticmethod
    def forward(ctx, x, weight, bias, pattern: CsrPattern, dense_weight_grad: bool, geometry: tuple):
        stride, padding, dilation = geometry
        w = weight.detach()
        batch, out_ch = x.shape[0], w.shape[0]
        kernel = tuple(w.shape[2:])
        cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)  # B x Ckk x L
        positions = cols.shape[-1]
        cols = cols.transpose(0, 1).reshape(cols.shape[1], batch * positions)
        matrix = pattern.matrix(w)
        out = torch.mm(matrix, cols) if bias is None else torch.addmm(bias.detach()[:, None], matrix, cols)
        out_h = (x.shape[2] + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        out_w = positions // out_h
        ctx.save_for_backward(cols, w)
        ctx.matrix, ctx.pattern, ctx.dense_weight_grad = matrix, pattern, dense_weight_grad
        ctx.geometry, ctx.in_shape, ctx.kernel, ctx.positions = geometry, tuple(x.shape), kernel, positions
        return out.view(out_ch, batch, positions).transpose(0, 1).reshape(batch, out_ch, out_h, out_w)

    @staticmethod
    def backward(ctx, grad_out):
        cols, w = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        batch, out_ch = ctx.in_shape[0], w.shape[0]
        g = grad_out.reshape(batch, out_ch, ctx.positions).transpose(0, 1).reshape(out_ch, -1)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_cols = torch.mm(ctx.pattern.matrix_t(w), g)  # Ckk x (B L)
            grad_cols = grad_cols.view(-1, batch, ctx.positions).transpose(0, 1)
            grad_x = F.fold(grad_cols, ctx.in_shape[2:], ctx.kernel, dilation=dilation, padding=padding, stride=stride)
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(ctx, g, cols.t(), w)
        if ctx.needs_input_grad[2]:
            grad_b = g.sum(1)
        return grad_x, grad_w, grad_b, None, None, None


def _conv_geometry(module: nn.Conv2d) -> tuple | None:
    """(stride, padding, dilation) when the unfold route computes this convolution, else None."""
    if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
        return None
    return tuple(module.stride), tuple(module.padding), tuple(module.dilation)


def _time_routes(dense, sparse, device: torch.device, rounds: int) -> tuple[float, float]:
    """Best-of-``rounds`` seconds of two callables, interleaved so that a busy spell hits both alike."""
    import time

    def once(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    dense(), sparse()  # warm-up: first calls allocate and pick kernels
    best_dense = best_sparse = float("inf")
    for _ in range(max(1, rounds)):
        best_dense = min(best_dense, once(dense))
        best_sparse = min(best_sparse, once(sparse))
    return best_dense, best_sparse


def _csr_call(function, x, weight, bias, pattern: CsrPattern, dense_weight_grad: bool, *extra):
    """``function.apply``, in fp32 under CUDA autocast, where PyTorch's CSR kernels need it."""
    if x.is_cuda and torch.is_autocast_enabled("cuda"):
        with torch.autocast("cuda", enabled=False):
            return function.apply(x.float(), weight, bias, pattern, dense_weight_grad, *extra)
    return function.apply(x, weight, bias, pattern, dense_weight_grad, *extra)


def _layer_step(run, x: torch.Tensor, module: nn.Linear | nn.Conv2d, train: bool):
    """One forward (and, when training, backward) of ``run(x, weight, bias)`` on detached copies."""
    weight, bias = module.weight.detach(), None if module.bias is None else module.bias.detach()

    def step() -> None:
        with torch.enable_grad() if train else torch.no_grad():
            xi = x.detach().requires_grad_(train and x.requires_grad)
            out = run(xi, weight.detach().requires_grad_(train), bias)
            if train:
                out.backward(torch.ones_like(out))

    return step


class MaskedExecution:
    """Today's route: every layer computes with its dense weight, in which inactive entries are zero."""

    name = "masked"

    def begin_step(self, step: int) -> None:
        pass

    def masked_grads(self) -> frozenset[str]:
        """Layers whose weight gradient of this step came out zero outside the mask: none, on this route."""
        return frozenset()

    def routes(self) -> dict[str, str]:
        return {}


class SparseExecution:
    """Sparse kernels for the sparse layers where they are faster on this machine; see the module docstring."""

    name = "sparse"

    def __init__(self, model: nn.Module, algorithm, settings: RouteSettings | None = None):
        self.algorithm = algorithm
        self.settings = settings or RouteSettings()
        self.settings.check()
        self.dense_weight_grad = True  # until the loop says which step this is
        self.modules: dict[str, nn.Linear | nn.Conv2d] = {}
        self._patterns: dict[str, tuple] = {}  # name -> (MaskState, mask, pattern, version)
        # name -> (pattern, (input shape, dtype, grad enabled, dense weight grad, mode), route): the last
        # decision, so that a step like the one before builds no timing key (tens of microseconds per layer)
        self._last_route: dict[str, tuple] = {}
        self._sampled: set[str] = set()  # layers whose gradient of this step is restricted to the mask
        for module_name, module in model.named_modules():
            name = f"{module_name}.weight" if module_name else "weight"
            if name not in algorithm.params:
                continue
            # the instance's forward, not the class's: the model keeps its modules, only their route changes
            geometry = _conv_geometry(module) if isinstance(module, nn.Conv2d) else None
            if isinstance(module, nn.Linear):
                self.modules[name] = module
                module.forward = self._forward_of(name, module)  # type: ignore[method-assign]
            elif isinstance(module, nn.Conv2d) and geometry is not None:
                self.modules[name] = module
                module.forward = self._conv_forward_of(name, module, geometry)  # type: ignore[method-assign]

    def _forward_of(self, name: str, module: nn.Linear):
        def dense(x, w, b):
            return F.linear(x, w, b)

        def forward(x: torch.Tensor) -> torch.Tensor:
            pattern = self.pattern(name)
            x2 = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
            if pattern is None or not self._csr_wins(name, module, x2, pattern, SparseLinearFunction, dense):
                return F.linear(x, module.weight, module.bias)
            out = self._apply(SparseLinearFunction, name, x2, module, pattern)
            return out if x.dim() == 2 else out.reshape(*x.shape[:-1], out.shape[-1])

        return forward

    def _conv_forward_of(self, name: str, module: nn.Conv2d, geometry: tuple):
        def forward(x: torch.Tensor) -> torch.Tensor:
            pattern = self.pattern(name)
            if (
                pattern is None
                or x.dim() != 4
                or not self._csr_wins(name, module, x, pattern, SparseConv2dFunction, module._conv_forward, geometry)
            ):
                return module._conv_forward(x, module.weight, module.bias)
            return self._apply(SparseConv2dFunction, name, x, module, pattern, geometry)

        return forward

    def _apply(self, function, name: str, x: torch.Tensor, module: nn.Module, pattern: CsrPattern, *extra):
        """Run a CSR function on ``module``'s weights; in fp32 under CUDA autocast, where CSR kernels need it."""
        if not self.dense_weight_grad:
            self._sampled.add(name)
        return _csr_call(function, x, module.weight, module.bias, pattern, self.dense_weight_grad, *extra)

    def _csr_wins(
        self, name: str, module: nn.Linear | nn.Conv2d, x: torch.Tensor, pattern: CsrPattern, function, dense, *extra
    ) -> bool:
        """Whether the CSR route is the faster one for this layer shape, input shape, density and gradient need."""
        train = torch.is_grad_enabled()
        mode = self.settings.conv if isinstance(module, nn.Conv2d) else self.settings.linear
        situation = (x.shape, x.dtype, train, self.dense_weight_grad, mode)
        last = self._last_route.get(name)
        if last is not None and last[0] is pattern and last[1] == situation:
            return last[2]
        if mode != "timed":
            wins = mode == "csr"
        else:
            dense_grad = train and self.dense_weight_grad
            density = pattern.nnz / max(1, module.weight.numel())
            bucket = round(math.log(max(density, 1e-12)) / math.log(self.settings.density_ratio))
            key = (
                type(module).__name__,
                tuple(module.weight.shape),
                tuple(x.shape),
                x.dtype,
                str(x.device),
                bucket,
                train,
                dense_grad,
            )
            if key not in TIMED_ROUTES:
                dense_s, sparse_s = _time_routes(
                    _layer_step(dense, x, module, train),
                    _layer_step(
                        lambda xi, w, b: _csr_call(function, xi, w, b, pattern, dense_grad, *extra), x, module, train
                    ),
                    x.device,
                    self.settings.rounds,
                )
                TIMED_ROUTES[key] = sparse_s < dense_s
            wins = TIMED_ROUTES[key]
        self._last_route[name] = (pattern, situation, wins)
        return wins

    def pattern(self, name: str) -> CsrPattern | None:
        """The layer's CSR pattern (None: too dense or too small to try), rebuilt only when its mask has changed."""
        masks = self.algorithm.masks
        mask = masks.masks[name]
        cached = self._patterns.get(name)
        if cached is not None and cached[0] is masks and cached[1] is mask and cached[3] == masks.versions[name]:
            return cached[2]
        density = float(mask.sum()) / max(1, mask.numel())
        small = mask.numel() < self.settings.min_weights
        sparse = density <= self.settings.max_density and not small
        pattern = CsrPattern.from_mask(mask.reshape(mask.shape[0], -1)) if sparse else None
        self._patterns[name] = (masks, mask, pattern, masks.versions[name])
        return pattern

    def begin_step(self, step: int) -> None:
        self.dense_weight_grad = bool(self.algorithm.needs_dense_grad(step))
        # filled by this step's forward: the layers whose weight gradient comes out already masked
        self._sampled = set()

    def masked_grads(self) -> frozenset[str]:
        """Layers whose weight gradient of this step the CSR route computed at the active weights only."""
        return frozenset(self._sampled)

    def routes(self) -> dict[str, str]:
        """Which route each sparse layer takes: ``csr`` or ``masked`` (the route of its last forward; before
        its first, ``csr`` only where the route is forced)."""
        out = {}
        for name in self.algorithm.params:
            module = self.modules.get(name)
            csr = module is not None and self.pattern(name) is not None
            if csr:
                mode = self.settings.conv if isinstance(module, nn.Conv2d) else self.settings.linear
                last = self._last_route.get(name)  # the route of its last forward
                csr = last[2] if last is not None else mode == "csr"
            out[name] = "csr" if csr else "masked"
        return out


def build_execution(
    name: str,
    model: nn.Module,
    algorithm,
    device: torch.device,
    routes: RouteSettings | None = None,
    optimizer: torch.optim.Optimizer | None = None,
):
    """The execution ``name`` for ``model``; ``truly_sparse`` converts the model (and ``optimizer``) in place."""
    if name == "masked":
        return MaskedExecution()
    if name == "truly_sparse":
        from snfs.truly_sparse import TrulySparseTraining

        if device.type != "cpu":
            raise ConfigError(
                f"execution=truly_sparse runs on cpu (it is tested there only), not on {device.type}; "
                f"use execution=masked or sparse"
            )
        return TrulySparseTraining(algorithm, model, optimizer=optimizer)
    if name != "sparse":
        raise ConfigError(f"execution={name!r} is not a valid choice; valid choices: {', '.join(EXECUTIONS)}")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"execution=sparse runs on cpu and cuda (PyTorch's CSR kernels), not on {device.type}; use execution=masked"
        )
    return SparseExecution(model, algorithm, routes)
