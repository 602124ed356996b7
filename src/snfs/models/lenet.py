"""LeNet-300-100 and LeNet-5-Caffe, the paper's MNIST networks."""

from __future__ import annotations

import torch
from torch import nn

from snfs.models import MODELS


class LeNet300100(nn.Module):
    """784-300-100-10 MLP with ReLU (LeCun et al. 1998); 266,610 parameters."""

    def __init__(self, num_classes: int = 10, in_features: int = 784, batch_norm: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        # off in the paper; the DSR authors' MNIST MLP has Linear -> BN -> ReLU by default (and BN on the logits)
        self.bn1 = nn.BatchNorm1d(300) if batch_norm else nn.Identity()
        self.bn2 = nn.BatchNorm1d(100) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = torch.relu(self.bn1(self.fc1(x)))
        x = torch.relu(self.bn2(self.fc2(x)))
        return self.fc3(x)


class LeNet5Caffe(nn.Module):
    """Caffe's LeNet-5 (conv20-pool-conv50-pool-fc500-fc10, ReLU as in the paper's code); 431,080 parameters."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.fc3 = nn.Linear(50 * 4 * 4, 500)
        self.fc4 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Pool, then ReLU: the same values and gradients as ReLU then pool (ReLU is monotone, so it commutes
        # with max), with the ReLU on a quarter of the elements (docs/findings/lenet5_caffe_speed.md).
        x = torch.relu(torch.max_pool2d(self.conv1(x), 2))
        x = torch.relu(torch.max_pool2d(self.conv2(x), 2))
        x = torch.relu(self.fc3(x.flatten(1)))
        return self.fc4(x)


@MODELS.register("lenet300_100")
def lenet300_100(num_classes: int = 10, batch_norm: bool = False) -> nn.Module:
    return LeNet300100(num_classes, batch_norm=bool(batch_norm))


@MODELS.register("lenet5_caffe")
def lenet5_caffe(num_classes: int = 10) -> nn.Module:
    return LeNet5Caffe(num_classes)
