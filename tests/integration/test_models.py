"""Architectures: parameter counts against the paper's networks, output shapes, one CPU forward+backward each,
determinism, configs."""

from __future__ import annotations

import pytest
import torch
from support.models import CIFAR_MODELS, COUNTS, forward_backward, n_params

from snfs.models import build_model


# seconds per network on a CPU; tests/unit/test_models.py runs the LeNets' forward+backward
@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_cifar_forward_backward(name):
    torch.manual_seed(0)
    model = build_model(name, 10)
    forward_backward(model, torch.randn(2, 3, 32, 32), 10)


def test_resnet50_forward_backward():
    torch.manual_seed(0)
    model = build_model("resnet50", 1000)
    assert n_params(model) == COUNTS["resnet50"][1]
    forward_backward(model, torch.randn(2, 3, 224, 224), 1000)
