"""Cost accounting: training FLOPs per accounting row (RigL appendix, Evci et al. 2020), the paper's speedup estimate.

Units: a "FLOP" here is one multiply-add of a conv or linear layer's forward pass (biases, BatchNorm,
activations and pooling are not counted). Multiply by 2 to count the multiply and the add separately;
ratios between algorithms do not change.

Per sample and training step, with f_D the dense forward cost and f_S the forward cost at the layers'
densities (backward = 2x forward), the accounting rows of docs/algorithms.md ("Cost accounting"):

    dense                            3 f_D                         every weight active
    sparse                           3 f_S                         masked gradients: static, SET, DSR, DeepR, SNIP
    dense_weight_gradient            2 f_S + f_D                   sparse momentum: the dense weight gradient every step
    periodic_dense_weight_gradient   (3 f_S dT + 2 f_S + f_D) / (dT + 1)
                                     RigL: the dense weight gradient every dT steps

Formulas are keyed by row, never by algorithm name: an algorithm class names its row
(``SparseAlgorithm.flops_accounting``) and the parameters of its formula (``flops_options``, RigL's dT).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import torch
from torch import nn

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _counted_as(module: nn.Module) -> type | None:
    """The layer type a module computes as, when it is not one (snfs.truly_sparse's layer: nn.Linear)."""
    return getattr(type(module), "counted_as", None)


#: accounting row -> training multiply-adds per sample per step, as f(f_sparse, f_dense, delta_t)
ROWS: dict[str, Callable[[float, float, int], float]] = {
    "dense": lambda f_sparse, f_dense, delta_t: 3.0 * f_dense,
    "sparse": lambda f_sparse, f_dense, delta_t: 3.0 * f_sparse,
    # forward and the input gradient stay sparse; the weight gradient is dense
    "dense_weight_gradient": lambda f_sparse, f_dense, delta_t: 2.0 * f_sparse + f_dense,
    # dT sparse steps, then one with the dense weight gradient
    "periodic_dense_weight_gradient": lambda f_sparse, f_dense, delta_t: (
        (3.0 * f_sparse * float(delta_t) + 2.0 * f_sparse + f_dense) / (float(delta_t) + 1.0)
    ),
}

#: the row names FlopCounter checkpoints used before rows had their own names (they were algorithm names)
_OLD_ROW_NAMES = {
    "dense": "dense",
    "static": "sparse",
    "momentum": "dense_weight_gradient",
    "rigl": "periodic_dense_weight_gradient",
}


def check_row(row: str) -> str:
    if row not in ROWS:
        raise ValueError(f"unknown FLOP accounting row {row!r}; valid: {', '.join(ROWS)}")
    return row


def _weight_name(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"


def _per_sample_shape(input_shape) -> tuple[int, ...]:
    return tuple(int(s) for s in input_shape)


class _EvalMode:
    """Puts a model in eval mode (no BatchNorm statistics updates, dropout off) and restores it afterwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def layer_macs(model: nn.Module, input_shape) -> dict[str, int]:
    """Dense multiply-adds per sample of every conv (Conv1d/2d/3d) and linear layer's forward pass.

    Only conv and linear layers count; biases, normalisation, activations and pooling are ignored.
    Measured with forward hooks on one all-zero input of batch 1, so any architecture works.
    ``input_shape`` is the shape of one sample without the batch dimension, e.g. (3, 32, 32).
    Keys are the weights' parameter names (e.g. "fc1.weight"); a layer called several times
    accumulates its calls.
    """
    macs: dict[str, int] = {}
    handles = []

    def hook_for(name: str):
        def hook(module: nn.Linear | nn.modules.conv._ConvNd, inputs, output):
            per_output = (
                module.in_features
                if isinstance(module, nn.Linear) or _counted_as(module) is nn.Linear
                else (module.in_channels // module.groups * math.prod(module.kernel_size))
            )
            outputs_per_sample = output.numel() // output.shape[0]
            macs[name] = macs.get(name, 0) + outputs_per_sample * per_output

        return hook

    for mname, module in model.named_modules():
        if isinstance(module, _COUNTED) or _counted_as(module) in _COUNTED:
            handles.append(module.register_forward_hook(hook_for(_weight_name(mname))))
    device, dtype = _model_device_dtype(model)
    x = torch.zeros((1, *_per_sample_shape(input_shape)), device=device, dtype=dtype)
    try:
        with _EvalMode(model), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return macs


def densities_from_masks(masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of non-zero entries of every mask, keyed like the masks."""
    return {name: float((m != 0).float().mean()) for name, m in masks.items()}


def forward_flops(macs: Mapping[str, int], densities: Mapping[str, float] | None = None) -> float:
    """Forward multiply-adds per sample at the given densities: f_S, or f_D with ``densities=None``.

    Layers missing from ``densities`` count as dense (density 1); names not in ``macs`` are ignored.
    """
    densities = densities or {}
    return float(sum(n * float(densities.get(name, 1.0)) for name, n in macs.items()))


def training_flops_per_sample(row: str, f_sparse: float, f_dense: float, delta_t: int = 100) -> float:
    """Training multiply-adds per sample per step (forward + backward) of one accounting row (module doc)."""
    return ROWS[check_row(row)](f_sparse, f_dense, delta_t)


class FlopCounter:
    """Accumulates training multiply-adds over a run and compares them with dense training on the same samples.

    ``row`` is the algorithm's accounting row (``SparseAlgorithm.flops_accounting``) and ``delta_t``
    the period of the periodic row. Call ``update(densities, n_samples)`` once per step (or once per
    epoch with that epoch's sample count and the densities in force). ``macs`` comes from :func:`layer_macs`.
    """

    def __init__(self, macs: Mapping[str, int], row: str, delta_t: int = 100):
        self.macs = dict(macs)
        self.row = check_row(row)
        self.delta_t = delta_t
        self.f_dense = forward_flops(self.macs, None)
        self.total = 0.0
        self.dense_total = 0.0
        self.samples = 0

    def update(self, densities: Mapping[str, float] | None, n_samples: int) -> float:
        """Adds ``n_samples`` training samples at ``densities``; returns the multiply-adds added."""
        f_sparse = forward_flops(self.macs, densities)
        added = training_flops_per_sample(self.row, f_sparse, self.f_dense, self.delta_t) * n_samples
        self.total += added
        self.dense_total += 3.0 * self.f_dense * n_samples
        self.samples += int(n_samples)
        return added

    @property
    def ratio(self) -> float:
        """Training multiply-adds so far / those of dense training on the same samples (nan before any update)."""
        return self.total / self.dense_total if self.dense_total > 0 else float("nan")

    def state_dict(self) -> dict:
        return {
            "row": self.row,
            "delta_t": self.delta_t,
            "total": self.total,
            "dense_total": self.dense_total,
            "samples": self.samples,
        }

    def load_state_dict(self, state: Mapping) -> None:
        # checkpoints written before rows had names of their own say "algorithm" and "rigl_delta_t"
        old = str(state.get("algorithm"))
        row = state["row"] if "row" in state else _OLD_ROW_NAMES.get(old, old)
        if row != self.row:
            raise ValueError(f"state is for FLOP accounting row {row!r}, this counter is {self.row!r}")
        self.delta_t = state["delta_t"] if "delta_t" in state else state["rigl_delta_t"]
        self.total = float(state["total"])
        self.dense_total = float(state["dense_total"])
        self.samples = int(state["samples"])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speedup_estimate(
    model: nn.Module,
    input_shape,
    masks: Mapping[str, torch.Tensor],
    device: str | torch.device = "cpu",
    repeats: int = 5,
    batch_size: int = 32,
    inputs: torch.Tensor | None = None,
) -> dict:
    """ESTIMATED speedups of sparse over dense convolution, the paper's method (Dettmers & Zettlemoyer 2019, sec. 5).

    Nothing sparse is run: every conv layer's DENSE forward is timed and the timing is scaled.
    The model (with the masks applied to its weights for the duration of the call, in eval mode)
    runs one batch, of ``inputs`` if given, else ``batch_size`` standard-normal samples of
    ``input_shape`` (one sample's shape); forward hooks capture each conv's input, and each conv
    is then timed on it alone (median of ``repeats`` runs after one warm-up). Per layer:

    * ``weight_density``: fraction of non-zero mask entries (1 for layers without a mask);
    * ``input_density``: fraction of non-zero entries of the layer's input activations;
    * ``channel_share``: share of the weight's input channels with any non-zero weight;
    * ``input_channel_share`` (reported only): share of (sample, channel) input maps that are not all zero;
    * ``sparse_conv_time_estimate_s`` = dense time x weight_density x input_density ("sparse convolution");
    * ``dense_conv_time_estimate_s`` = dense time x channel_share ("dense convolution": skip empty channels).

    Returns ``{"layers": {weight name: per-layer dict}, "dense_time_s", "sparse_conv_time_estimate_s",
    "dense_conv_time_estimate_s", "speedup_sparse_conv_estimate", "speedup_dense_conv_estimate"}``;
    the speedups are dense total / estimated total (nan when the model has no conv layers).
    """
    device = torch.device(device)
    convs = {_weight_name(n): m for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))}
    params = dict(model.named_parameters())
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name: str):
        def hook(module: nn.Module, inputs_, output):
            captured.setdefault(name, inputs_[0].detach())  # first call of a shared layer

        return hook

    original_device = _model_device_dtype(model)[0]
    saved = {}
    model.to(device)
    try:
        with torch.no_grad(), _EvalMode(model):
            for name, mask in masks.items():
                if name in params:
                    saved[name] = params[name].detach().clone()
                    params[name].mul_(mask.to(device=device, dtype=params[name].dtype))
            for name, conv in convs.items():
                handles.append(conv.register_forward_hook(hook_for(name)))
            if inputs is None:
                gen = torch.Generator().manual_seed(0)
                inputs = torch.randn((batch_size, *_per_sample_shape(input_shape)), generator=gen)
            model(inputs.to(device=device, dtype=_model_device_dtype(model)[1]))
            for h in handles:
                h.remove()
            handles = []

            layers = {}
            for name, conv in convs.items():
                if name not in captured:
                    continue  # never called in forward
                x = captured[name]
                conv(x)  # warm-up
                times = []
                for _ in range(max(1, repeats)):
                    _sync(device)
                    start = time.perf_counter()
                    conv(x)
                    _sync(device)
                    times.append(time.perf_counter() - start)
                t = float(torch.tensor(times).median())
                w = conv.weight
                nonzero_w = w != 0
                weight_density = float(nonzero_w.float().mean())
                channel_share = float(nonzero_w.transpose(0, 1).flatten(1).any(1).float().mean())
                input_density = float((x != 0).float().mean())
                input_channel_share = float((x != 0).flatten(2).any(2).float().mean())
                layers[name] = {
                    "dense_time_s": t,
                    "weight_density": weight_density,
                    "input_density": input_density,
                    "channel_share": channel_share,
                    "input_channel_share": input_channel_share,
                    "sparse_conv_time_estimate_s": t * weight_density * input_density,
                    "dense_conv_time_estimate_s": t * channel_share,
                }
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)
        model.to(original_device)

    dense = sum(v["dense_time_s"] for v in layers.values())
    sparse_est = sum(v["sparse_conv_time_estimate_s"] for v in layers.values())
    dense_conv_est = sum(v["dense_conv_time_estimate_s"] for v in layers.values())
    return {
        "layers": layers,
        "dense_time_s": dense,
        "sparse_conv_time_estimate_s": sparse_est,
        "dense_conv_time_estimate_s": dense_conv_est,
        "speedup_sparse_conv_estimate": dense / sparse_est if sparse_est > 0 else float("nan"),
        "speedup_dense_conv_estimate": dense / dense_conv_est if dense_conv_est > 0 else float("nan"),
    }
