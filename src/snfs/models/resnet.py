"""ResNet-50 for ImageNet (He et al. 2016), as torchvision builds it."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet50 as tv_resnet50

from snfs.models import MODELS


@MODELS.register("resnet50")
def resnet50(num_classes: int = 1000, partially_dense: bool = False) -> nn.Module:
    """torchvision's ResNet-50 (25,557,032 parameters for 1000 classes), randomly initialised.

    With ``partially_dense=True`` (the paper's "partially dense" ImageNet setting) the model carries
    ``dense_layer_names``: the first convolution and every downsample (projection shortcut) convolution,
    which the sparse algorithm must keep dense. Otherwise the list is empty.
    """
    model = tv_resnet50(weights=None, num_classes=num_classes)
    names: list[str] = []
    if partially_dense:
        names = ["conv1.weight"] + [
            f"{name}.weight"
            for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and ".downsample." in f"{name}."
        ]
    model.dense_layer_names = names
    return model
