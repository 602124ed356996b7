"""Architectures: parameter counts against the paper's networks, output shapes, one CPU forward+backward each,
determinism, configs."""

from __future__ import annotations

import functools

import pytest
import torch
from omegaconf import OmegaConf
from support import REPO
from support.models import CIFAR_MODELS, COUNTS, MNIST_MODELS, forward_backward, n_params

from snfs.models import build_model

CONF = REPO / "conf" / "model"


@functools.cache
def built(name: str, num_classes: int, options: tuple = ()) -> torch.nn.Module:
    """A model for tests that only read its structure, built once (ResNet-50 takes a second to initialise)."""
    return build_model(name, num_classes, **dict(options))


@pytest.mark.parametrize("name", list(COUNTS))
def test_parameter_count(name):
    num_classes, expected = COUNTS[name]
    assert n_params(built(name, num_classes)) == expected


@pytest.mark.parametrize("name", MNIST_MODELS)
def test_mnist_forward_backward(name):
    torch.manual_seed(0)
    forward_backward(build_model(name, 10), torch.randn(3, 1, 28, 28), 10)


@pytest.mark.parametrize("name,shape", [("lenet5_caffe", (1, 28, 28)), ("wrn28_2", (3, 32, 32))])
def test_same_seed_same_network_and_outputs(name, shape):
    """Building is seeded by the global torch RNG only: the same seed gives the same weights and outputs
    (eval mode: dropout off), another seed other weights."""
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    a = build_model(name, 10).eval()
    torch.manual_seed(5)
    b = build_model(name, 10).eval()
    torch.manual_seed(6)
    c = build_model(name, 10)
    for k, w in a.state_dict().items():
        assert torch.equal(w, b.state_dict()[k]), k
    assert any(w.is_floating_point() and not torch.equal(w, c.state_dict()[k]) for k, w in a.state_dict().items())
    with torch.no_grad():
        out = a(x)
        assert torch.equal(out, b(x)) and torch.equal(out, a(x))
    assert out.shape == (4, 10)


def test_other_num_classes():
    assert build_model("wrn28_2", 100)(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert build_model("vgg16_c", 100)(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_wrn_dropout_option():
    model = build_model("wrn28_2", 10, dropout=0.0)
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    model = build_model("wrn28_2", 10)
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_lenet300_100_batch_norm_option():
    plain, bn = build_model("lenet300_100", 10), build_model("lenet300_100", 10, batch_norm=True)
    assert n_params(plain) == 266_610 and n_params(bn) == 266_610 + 2 * (300 + 100)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.modules())
    bn.train()
    h = torch.nn.functional.relu(bn.bn1(bn.fc1(torch.randn(64, 784))))
    assert h.shape == (64, 300) and bn(torch.randn(64, 1, 28, 28)).shape == (64, 10)
    from snfs.masks import sparse_parameters

    assert set(sparse_parameters(bn)) == {"fc1.weight", "fc2.weight", "fc3.weight"}  # BN stays dense


def test_resnet50_dense_layer_names():
    dense = built("resnet50", 1000, (("partially_dense", True),))
    names = dense.dense_layer_names
    assert names == [
        "conv1.weight",
        "layer1.0.downsample.0.weight",
        "layer2.0.downsample.0.weight",
        "layer3.0.downsample.0.weight",
        "layer4.0.downsample.0.weight",
    ]
    params = dict(dense.named_parameters())
    assert all(params[n].dim() == 4 for n in names)
    assert built("resnet50", 1000).dense_layer_names == []
    assert not getattr(built("wrn28_2", 10), "dense_layer_names", [])


@pytest.mark.parametrize(
    "yaml_name",
    [*MNIST_MODELS, *CIFAR_MODELS, "resnet50", "resnet50_partial"],
)
def test_model_configs_build(yaml_name):
    cfg = OmegaConf.load(CONF / f"{yaml_name}.yaml")
    options = {k: v for k, v in cfg.items() if k != "name"}
    num_classes, expected = COUNTS[cfg.name]
    model = built(cfg.name, num_classes, tuple(sorted(options.items())))
    assert n_params(model) == expected
    assert bool(getattr(model, "dense_layer_names", [])) == (yaml_name == "resnet50_partial")


def test_mlp_config_builds_the_wide_benchmark_model():
    cfg = OmegaConf.load(CONF / "mlp.yaml")
    model = build_model(cfg.name, 10, **{k: v for k, v in cfg.items() if k != "name"})
    # 784*4096 + 4096 + 4096*4096 + 4096 + 4096*10 + 10
    assert n_params(model) == 20_037_642
    small = build_model("mlp", 3, hidden=[5], in_features=4)
    assert n_params(small) == 4 * 5 + 5 + 5 * 3 + 3
    assert small(torch.randn(2, 1, 2, 2)).shape == (2, 3)
