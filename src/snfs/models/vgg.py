"""VGG16-C, VGG16-D and VGG-like for CIFAR-10, the BatchNorm variants of SNIP (Lee et al. 2019)."""

from __future__ import annotations

import torch
from torch import nn

from snfs.models import MODELS

# An int is a 3x3 convolution with that many output channels, (k, c) a kxk convolution,
# "M" a 2x2 max-pool. VGG16-C (Simonyan & Zisserman 2015, table 1) ends blocks 3-5 with a 1x1 conv.
_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
_C = [64, 64, "M", 128, 128, "M", 256, 256, (1, 256), "M", 512, 512, (1, 512), "M", 512, 512, (1, 512), "M"]


def _features(plan: list) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for item in plan:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        kernel, cout = item if isinstance(item, tuple) else (3, item)
        # padding=1 also for the 1x1 convs, as in the SNIP / sparse_learning definition: each grows the
        # map by 2 pixels, so a 32x32 input ends as 2x2x512 (a 2048-wide classifier input) in VGG16-C.
        layers += [nn.Conv2d(cin, cout, kernel, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG with BatchNorm and a small (512-wide) classifier, BatchNorm instead of dropout (SNIP, Lee et al. 2019).

    `hidden` lists the classifier's hidden widths; each hidden layer is Linear -> ReLU -> BatchNorm1d.
    """

    def __init__(self, plan: list, flat_features: int, hidden: list[int], num_classes: int = 10):
        super().__init__()
        self.features = _features(plan)
        layers: list[nn.Module] = []
        width = flat_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.BatchNorm1d(h)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


@MODELS.register("vgg16_c")
def vgg16_c(num_classes: int = 10) -> nn.Module:
    """VGG16-C: 11,323,466 parameters for 10 classes."""
    return VGG(_C, 2048, [512, 512], num_classes)


@MODELS.register("vgg16_d")
def vgg16_d(num_classes: int = 10) -> nn.Module:
    """VGG16-D: 15,255,626 parameters for 10 classes."""
    return VGG(_D, 512, [512, 512], num_classes)


@MODELS.register("vgg_like")
def vgg_like(num_classes: int = 10) -> nn.Module:
    """VGG-like (Zagoruyko 2015 CIFAR VGG, as in SNIP): VGG16-D convs, one 512 hidden layer; 14,991,946 parameters."""
    return VGG(_D, 512, [512], num_classes)
