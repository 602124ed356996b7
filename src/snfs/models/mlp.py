"""A plain ReLU MLP of any widths: the wide layers where sparse kernels pay most (make bench)."""

from __future__ import annotations

from torch import nn

from snfs.models import MODELS


@MODELS.register("mlp")
def mlp(num_classes: int = 10, hidden: list[int] | tuple[int, ...] = (4096, 4096), in_features: int = 784) -> nn.Module:
    """in_features -> hidden... -> num_classes, ReLU between layers; input images are flattened."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(in_features)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
