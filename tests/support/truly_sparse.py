"""What the truly sparse tests of both tiers share."""

from __future__ import annotations

import torch
from torch import nn

from snfs.truly_sparse import TrulySparseLinear


def dense_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Each linear layer's weight as a dense tensor, whether it is truly sparse or not."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, TrulySparseLinear):
            out[f"{name}.weight"] = module.dense_weight()
        elif isinstance(module, nn.Linear):
            out[f"{name}.weight"] = module.weight.detach()
    return out
