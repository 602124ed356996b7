"""FLOP accounting against hand counts, the accounting rows and the algorithms' choice of row, and the speedup
estimate's structure."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from support import CONF
from torch import nn

from snfs.algorithms import ALGORITHMS
from snfs.algorithms.base import SparseAlgorithm
from snfs.costs import (
    ROWS,
    FlopCounter,
    densities_from_masks,
    forward_flops,
    layer_macs,
    speedup_estimate,
    training_flops_per_sample,
)
from snfs.models import build_model
from snfs.report.flops import dataset_facts, flop_speedups, run_macs
from snfs.report.tables import HOOKS, Row

LENET_MACS = {"fc1.weight": 784 * 300, "fc2.weight": 300 * 100, "fc3.weight": 100 * 10}


def test_lenet300_100_macs():
    macs = layer_macs(build_model("lenet300_100", 10), (1, 28, 28))
    assert macs == LENET_MACS
    assert forward_flops(macs) == 266_200


def test_conv_macs_and_training_mode_restored():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 5)
    )
    model.train()
    macs = layer_macs(model, (3, 8, 8))
    assert macs == {"0.weight": 16 * 3 * 9 * 64, "4.weight": 16 * 64 * 5}
    assert model.training


def test_grouped_and_strided_conv_macs():
    model = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4)
    assert layer_macs(model, (8, 8, 8)) == {"weight": 16 * (8 // 4) * 9 * 16}


def test_forward_flops_with_densities():
    densities = {"fc1.weight": 0.1, "fc2.weight": 0.5, "not_a_layer.weight": 0.0}
    expected = 784 * 300 * 0.1 + 300 * 100 * 0.5 + 100 * 10
    assert forward_flops(LENET_MACS, densities) == pytest.approx(expected)


def test_training_flops_rows():
    fs, fd = 10.0, 100.0
    assert training_flops_per_sample("dense", fs, fd) == 300.0
    assert training_flops_per_sample("sparse", fs, fd) == 30.0
    assert training_flops_per_sample("dense_weight_gradient", fs, fd) == 2 * fs + fd
    assert training_flops_per_sample("periodic_dense_weight_gradient", fs, fd, delta_t=100) == pytest.approx(
        (3 * fs * 100 + 2 * fs + fd) / 101
    )
    assert training_flops_per_sample("periodic_dense_weight_gradient", fs, fd, delta_t=1) == pytest.approx(
        (3 * fs + 2 * fs + fd) / 2
    )
    with pytest.raises(ValueError, match="dense_weight_gradient"):
        training_flops_per_sample("lottery", fs, fd)
    with pytest.raises(ValueError, match="valid"):  # an algorithm name is not a row
        training_flops_per_sample("momentum", fs, fd)


# The per-algorithm table as it was written before formulas were keyed by row (docs/algorithms.md, "Cost accounting").
BY_ALGORITHM = {
    "dense": lambda fs, fd, dt: 3 * fd,
    **{name: (lambda fs, fd, dt: 3 * fs) for name in ("static", "set", "dsr", "deepr", "snip")},
    "momentum": lambda fs, fd, dt: 2 * fs + fd,
    "rigl": lambda fs, fd, dt: (3 * fs * dt + 2 * fs + fd) / (dt + 1),
}


@pytest.mark.parametrize("name", sorted(BY_ALGORITHM))
def test_every_algorithm_declares_the_row_that_gives_its_old_numbers(name):
    row = ALGORITHMS.get(name).flops_accounting
    assert row in ROWS
    for fs, fd, dt in ((10.0, 100.0, 100), (3.5, 70.0, 7), (0.0, 1.0, 1)):
        assert training_flops_per_sample(row, fs, fd, dt) == pytest.approx(BY_ALGORITHM[name](fs, fd, dt))


def test_every_registered_algorithm_has_a_row_and_a_bad_row_fails_at_class_definition():
    assert set(BY_ALGORITHM) <= set(ALGORITHMS.names())
    assert all(ALGORITHMS.get(name).flops_accounting in ROWS for name in ALGORITHMS.names())
    with pytest.raises(TypeError, match="flops_accounting='momentum'.*valid: dense, sparse"):
        type("Bad", (SparseAlgorithm,), {"flops_accounting": "momentum"})


@pytest.mark.parametrize("name", sorted(BY_ALGORITHM))
def test_report_training_speedup_without_a_logged_ratio_uses_the_algorithms_row(name):
    densities = [
        {"fc1.weight": 0.05, "fc2.weight": 0.1, "fc3.weight": 0.5},
        {"fc1.weight": 0.04, "fc2.weight": 0.12, "fc3.weight": 0.6},
    ]
    run = {
        "algorithm": name,
        "history": [{"layer_density": d} for d in densities],
        "config": {"dataset": {"name": "mnist"}, "model": {"name": "lenet300_100"}, "sparse": {"delta_t": 7}},
    }
    fd = forward_flops(LENET_MACS)
    per_epoch = [BY_ALGORITHM[name](forward_flops(LENET_MACS, d), fd, 7) for d in densities]
    out = flop_speedups(run)
    if name == "dense":
        assert out == {"inference_flop_speedup": 1.0, "training_flop_speedup": 1.0}
    else:
        assert out["training_flop_speedup"] == pytest.approx(3 * fd / (sum(per_epoch) / 2))
        assert out["inference_flop_speedup"] == pytest.approx(fd / forward_flops(LENET_MACS, densities[-1]))
    assert math.isnan(flop_speedups({**run, "algorithm": "lottery"})["training_flop_speedup"])


def test_flop_counter_momentum_ratio_lenet():
    macs = layer_macs(build_model("lenet300_100", 10), (784,))
    densities = {name: 0.05 for name in macs}
    counter = FlopCounter(macs, "dense_weight_gradient")
    for _ in range(3):
        counter.update(densities, 100)
    counter.update(densities, 60000)
    fd = 266_200
    fs = 0.05 * fd
    assert counter.dense_total == pytest.approx(3 * fd * 60300)
    assert counter.total == pytest.approx((2 * fs + fd) * 60300)
    assert counter.ratio == pytest.approx((2 * 0.05 + 1) / 3)  # 0.3667
    assert counter.samples == 60300

    restored = FlopCounter(macs, "dense_weight_gradient")
    restored.load_state_dict(counter.state_dict())
    assert restored.total == counter.total and restored.ratio == counter.ratio
    with pytest.raises(ValueError):
        FlopCounter(macs, "periodic_dense_weight_gradient").load_state_dict(counter.state_dict())


def test_flop_counter_reads_checkpoints_that_named_rows_by_algorithm():
    old = {"algorithm": "rigl", "rigl_delta_t": 7, "total": 12.5, "dense_total": 50.0, "samples": 3}
    counter = FlopCounter(LENET_MACS, "periodic_dense_weight_gradient")
    counter.load_state_dict(old)
    assert (counter.delta_t, counter.total, counter.samples, counter.ratio) == (7, 12.5, 3, 0.25)
    FlopCounter(LENET_MACS, "sparse").load_state_dict({**old, "algorithm": "static"})
    FlopCounter(LENET_MACS, "dense_weight_gradient").load_state_dict({**old, "algorithm": "momentum"})
    with pytest.raises(ValueError, match="'sparse'"):
        FlopCounter(LENET_MACS, "dense").load_state_dict({**old, "algorithm": "static"})


def test_flop_counter_dense_and_sparse():
    dense = FlopCounter(LENET_MACS, "dense")
    assert math.isnan(dense.ratio)
    dense.update(None, 10)
    assert dense.ratio == 1.0
    sparse = FlopCounter(LENET_MACS, "sparse")
    sparse.update({n: 0.1 for n in LENET_MACS}, 10)
    assert sparse.ratio == pytest.approx(0.1)
    with pytest.raises(ValueError, match="valid"):
        FlopCounter(LENET_MACS, "nope")


def test_densities_from_masks():
    masks = {"a": torch.tensor([1, 0, 0, 1], dtype=torch.bool)}
    assert densities_from_masks(masks) == {"a": 0.5}


class SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


def test_speedup_estimate_structure():
    torch.manual_seed(0)
    model = SmallConvNet()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    mask = torch.rand_like(model.conv2.weight) < 0.1
    mask[:, :4] = False  # four empty input channels
    result = speedup_estimate(model, (3, 16, 16), {"conv2.weight": mask}, repeats=3, batch_size=8)

    assert set(result["layers"]) == {"conv1.weight", "conv2.weight"}
    for layer in result["layers"].values():
        assert layer["dense_time_s"] > 0
        assert 0 < layer["sparse_conv_time_estimate_s"] <= layer["dense_time_s"]
        assert 0 < layer["dense_conv_time_estimate_s"] <= layer["dense_time_s"]
    conv1, conv2 = result["layers"]["conv1.weight"], result["layers"]["conv2.weight"]
    assert conv1["weight_density"] == 1.0 and conv1["channel_share"] == 1.0
    assert conv2["weight_density"] == pytest.approx(mask.float().mean().item())
    assert conv2["channel_share"] == pytest.approx(12 / 16)
    assert 0 < conv2["input_density"] < 1  # post-ReLU activations
    assert result["dense_time_s"] > 0
    # the paper's estimates from the timed parts: dense time scaled by weight x input density, or by channel share
    t1, t2 = conv1["dense_time_s"], conv2["dense_time_s"]
    sparse_conv = t1 * conv1["input_density"] + t2 * conv2["weight_density"] * conv2["input_density"]
    assert result["speedup_sparse_conv_estimate"] == pytest.approx((t1 + t2) / sparse_conv)
    # conv2's four empty input channels are all a dense convolution can skip
    assert result["speedup_dense_conv_estimate"] == pytest.approx((t1 + t2) / (t1 + 0.75 * t2))
    assert result["speedup_dense_conv_estimate"] > 1
    # the model's weights are left untouched
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_speedup_estimate_without_convs():
    result = speedup_estimate(build_model("lenet300_100", 10), (784,), {}, repeats=1, batch_size=2)
    assert result["layers"] == {} and math.isnan(result["speedup_sparse_conv_estimate"])


def test_speedup_estimate_on_a_paper_model():
    torch.manual_seed(0)
    model = build_model("alexnet_s", 10)
    masks = {
        n: torch.rand_like(p) < 0.05 for n, p in model.named_parameters() if p.dim() > 1 and n != "features.0.weight"
    }
    result = speedup_estimate(model, (3, 32, 32), masks, repeats=1, batch_size=4)
    assert len(result["layers"]) == 5
    assert result["speedup_sparse_conv_estimate"] > 1
    # random 5% masks leave no input channel empty, so skipping empty channels saves nothing (the paper's point)
    assert all(layer["channel_share"] == 1.0 for name, layer in result["layers"].items() if name in masks)
    assert result["speedup_dense_conv_estimate"] == pytest.approx(1.0)


DATASET_DIR = CONF / "dataset"
IDX_DATASETS = sorted(
    p.stem for p in DATASET_DIR.glob("*.yaml") if yaml.safe_load(p.read_text()).get("loader") == "idx"
)


@pytest.mark.parametrize("dataset", IDX_DATASETS)
def test_a_table_of_any_idx_dataset_gets_finite_flop_speedups(dataset):
    """Shape and classes come from the dataset's YAML through the registry, not from a list of known names."""
    declared = yaml.safe_load((DATASET_DIR / f"{dataset}.yaml").read_text())
    density = {"fc1.weight": 0.05, "fc2.weight": 0.1, "fc3.weight": 0.5}
    run = {
        "algorithm": "set",
        "history": [{"layer_density": density}],
        "config": {"dataset": declared, "model": {"name": "lenet300_100"}, "sparse": {"name": "set"}},
    }
    row = Row(setting={"method": "set"}, runs=[run])
    HOOKS["flop_speedups"]([row])
    fd = forward_flops(LENET_MACS)
    assert row.extra["inference FLOP speedup"] == pytest.approx(fd / forward_flops(LENET_MACS, density))
    assert math.isfinite(row.extra["training FLOP speedup"]) and row.extra["training FLOP speedup"] > 1


def test_flop_speedups_read_the_datasets_own_shape_and_classes():
    tenth = {"fc1.weight": 0.1, "fc2.weight": 0.1, "fc3.weight": 0.1}
    run = {
        "algorithm": "set",
        "history": [{"layer_density": tenth}],
        "config": {"model": {"name": "lenet300_100"}, "sparse": {"name": "set"}},
    }
    # a record that kept only the dataset's name is completed from conf/dataset/<name>.yaml
    assert dataset_facts({"name": "mnist"}) == ((1, 28, 28), 10)
    assert dataset_facts({"name": "cifar10"}) == ((3, 32, 32), 10)
    # a generated dataset's own class count sizes the last layer
    assert dataset_facts({"name": "fake", "shape": [1, 28, 28], "num_classes": 4}) == ((1, 28, 28), 4)
    four = {**run, "config": {**run["config"], "dataset": {"name": "fake", "shape": [1, 28, 28], "num_classes": 4}}}
    assert run_macs(four) == {**LENET_MACS, "fc3.weight": 100 * 4}
    assert flop_speedups(four)["inference_flop_speedup"] == pytest.approx(10.0)  # every layer at density 0.1
    unknown = flop_speedups({**run, "config": {**run["config"], "dataset": {"name": "no_such_dataset"}}})
    assert math.isnan(unknown["inference_flop_speedup"])
