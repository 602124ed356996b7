"""Wide residual networks WRN-depth-k for CIFAR (Zagoruyko & Komodakis 2016)."""

from __future__ import annotations

import torch
from torch import nn

from snfs.models import MODELS


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3 with an identity, or a 1x1 conv when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        # the projection shortcut sees the pre-activated input, as in the authors' code
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-depth-k (Zagoruyko & Komodakis 2016): conv16, three groups of (depth-4)/6 blocks of width 16k/32k/64k.

    Convolutions are bias-free; the last BN-ReLU is followed by global average pooling and a linear layer.
    """

    def __init__(self, depth: int, widen_factor: int, num_classes: int = 10, dropout: float = 0.3):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        groups = []
        cin = widths[0]
        for g, stride in enumerate([1, 2, 2]):
            blocks = []
            for i in range(n):
                blocks.append(PreActBlock(cin, widths[g + 1], stride if i == 0 else 1, dropout))
                cin = widths[g + 1]
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = torch.relu(self.bn(out))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


def _register(name: str, depth: int, k: int) -> None:
    def build(num_classes: int = 10, dropout: float = 0.3) -> nn.Module:
        return WideResNet(depth, k, num_classes, dropout)

    build.__name__ = name
    build.__doc__ = f"WRN-{depth}-{k} (Zagoruyko & Komodakis 2016), dropout 0.3 by default."
    MODELS.register(name)(build)


for _name, _depth, _k in [("wrn16_8", 16, 8), ("wrn16_10", 16, 10), ("wrn22_8", 22, 8), ("wrn28_2", 28, 2)]:
    _register(_name, _depth, _k)
