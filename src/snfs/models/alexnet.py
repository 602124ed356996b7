"""AlexNet-s and AlexNet-b for CIFAR-10, the BatchNorm variants of SNIP (Lee et al. 2019)."""

from __future__ import annotations

import torch
from torch import nn

from snfs.models import MODELS


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class AlexNet(nn.Module):
    """AlexNet with BatchNorm after every layer (SNIP, Lee et al. 2019); width 1024*factor in the classifier.

    factor=1 is AlexNet-s (5,077,066 parameters for 10 classes), factor=2 is AlexNet-b (8,501,322).
    On a 32x32 input the five stride-2 convolutions leave a 1x1x256 feature map.
    """

    def __init__(self, num_classes: int = 10, factor: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_relu(3, 96, 11, 2, 2),
            *_conv_bn_relu(96, 256, 5, 2, 2),
            *_conv_bn_relu(256, 384, 3, 2, 1),
            *_conv_bn_relu(384, 384, 3, 2, 1),
            *_conv_bn_relu(384, 256, 3, 2, 1),
        )
        width = 1024 * factor
        self.classifier = nn.Sequential(
            nn.Linear(256, width),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.Linear(width, width),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.Linear(width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


@MODELS.register("alexnet_s")
def alexnet_s(num_classes: int = 10) -> nn.Module:
    return AlexNet(num_classes, factor=1)


@MODELS.register("alexnet_b")
def alexnet_b(num_classes: int = 10) -> nn.Module:
    return AlexNet(num_classes, factor=2)
