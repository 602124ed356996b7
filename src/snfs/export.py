"""A trained sparse model in a small file that loads back into the user's own model class.

The file is an ordinary ``torch.save`` dict, loadable with ``torch.load(weights_only=True)``:

- ``tensors``: the model's ``state_dict``, in which every sparse weight is a CSR tensor (``int32``
  indices) holding its active entries, as ``(out, in * kernel)`` for a convolution;
- ``shapes``: each sparse weight's own shape; ``config``: what the caller adds (algorithm, density).

The CSR pattern is the mask: an active weight that happens to be exactly 0 is stored too, so the
masks come back exactly. At 5% density a sparse weight takes about 10% of its dense bytes (4 for
the value, 4 for its column index).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snfs.execution import CsrPattern

FORMAT = "snfs.sparse/1"


def _csr(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The active entries of ``weight`` (``mask``) as a CSR matrix (int32 indices), ``(out, in x kernel)``."""
    pattern = CsrPattern.from_mask(mask.reshape(mask.shape[0], -1).cpu())
    return pattern.matrix(weight.detach().reshape(weight.shape[0], -1).cpu())


def save_sparse(
    model: nn.Module,
    path: str | os.PathLike,
    masks: Mapping[str, torch.Tensor],
    config: Mapping[str, Any] | None = None,
) -> int:
    """Write ``model`` with the weights named in ``masks`` stored sparse; returns the file's size in bytes."""
    state = model.state_dict()
    unknown = sorted(set(masks) - set(state))
    if unknown:
        raise KeyError(f"masks name weights the model does not have: {unknown}")
    tensors: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        tensors[name] = _csr(value, masks[name].to(value.device)) if name in masks else value.detach().cpu()
    shapes = {name: list(state[name].shape) for name in masks}
    return write_sparse(path, tensors, shapes, config)


def write_sparse(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    shapes: Mapping[str, list[int]],
    config: Mapping[str, Any] | None = None,
) -> int:
    """Write the file of ``save_sparse`` from its parts (sparse weights already CSR); returns its size in bytes."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "tensors": dict(tensors), "shapes": dict(shapes), "config": dict(config or {})}, tmp)
    os.replace(tmp, path)  # never a half-written file under the real name
    return path.stat().st_size


def load_sparse(
    model: nn.Module, path: str | os.PathLike, sparse_kernels: bool = False, strict: bool = True
) -> dict[str, Any]:
    """Load a ``save_sparse`` file into ``model`` (the user's own class); returns ``{"masks", "config"}``.

    With ``sparse_kernels=True`` the sparse ``nn.Linear`` layers then compute with their CSR
    weights (``use_sparse_kernels``), for inference.
    """
    with warnings.catch_warnings():  # weights_only checks every CSR tensor's invariants, and says so each time
        warnings.filterwarnings("ignore", message="Validating sparse tensor invariants")
        saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"{path} is not an snfs sparse model (format {FORMAT})")
    dense, masks = {}, {}
    for name, value in saved["tensors"].items():
        if value.layout == torch.sparse_csr:
            shape = saved["shapes"][name]
            ones = torch.sparse_csr_tensor(
                value.crow_indices(),
                value.col_indices(),
                torch.ones_like(value.values(), dtype=torch.bool),
                value.shape,
                check_invariants=False,
            )
            masks[name] = ones.to_dense().reshape(shape)
            dense[name] = value.to_dense().reshape(shape)
        else:
            dense[name] = value
    model.load_state_dict(dense, strict=strict)
    if sparse_kernels:
        use_sparse_kernels(model, masks)
    return {"masks": masks, "config": saved.get("config", {})}


def use_sparse_kernels(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> list[str]:
    """Make the masked ``nn.Linear`` layers of ``model`` compute ``x W^T`` with a CSR ``W``, for inference.

    The CSR matrix is built once from the current weights, so later changes to the weights are not
    seen; gradients do not flow through it. Returns the layers changed.
    """
    changed = []
    for module_name, module in model.named_modules():
        name = f"{module_name}.weight" if module_name else "weight"
        if isinstance(module, nn.Linear) and name in masks:
            csr = _csr(module.weight, masks[name]).to(module.weight.device)
            # the instance's forward, not the class's: other nn.Linear layers keep the dense route
            module.forward = _csr_forward(csr, module.bias)  # type: ignore[method-assign]
            changed.append(name)
    return changed


def _csr_forward(csr: torch.Tensor, bias: torch.Tensor | None):
    def forward(x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        out = torch.mm(csr, x.reshape(-1, x.shape[-1]).t()).t()  # (W x^T)^T: PyTorch's CSR x dense kernel
        if bias is not None:
            out = out + bias
        return out.reshape(*lead, out.shape[-1])

    return forward
