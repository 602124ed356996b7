"""The published architectures' parameter counts and a forward+backward, for the model tests of both tiers."""

from __future__ import annotations

import torch

# registry name -> (num_classes, parameter count): the published architectures' sizes (docs/models.md; the
# papers print them rounded, e.g. LeNet-300-100 267K, LeNet-5-Caffe 431K, ResNet-50 25.6M, WRN-28-2 1.5M)
COUNTS = {
    "lenet300_100": (10, 266_610),
    "lenet5_caffe": (10, 431_080),
    "alexnet_s": (10, 5_077_066),
    "alexnet_b": (10, 8_501_322),
    "vgg16_c": (10, 11_323_466),
    "vgg16_d": (10, 15_255_626),
    "vgg_like": (10, 14_991_946),
    "wrn16_8": (10, 10_961_370),
    "wrn16_10": (10, 17_116_634),
    "wrn22_8": (10, 17_158_106),
    "wrn28_2": (10, 1_467_610),
    "resnet50": (1000, 25_557_032),
}
MNIST_MODELS = ["lenet300_100", "lenet5_caffe"]
CIFAR_MODELS = [name for name in COUNTS if name not in ("resnet50", *MNIST_MODELS)]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_backward(model, x, num_classes):
    model.train()
    out = model(x)
    assert out.shape == (x.shape[0], num_classes)
    assert torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, torch.arange(x.shape[0]) % num_classes).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
