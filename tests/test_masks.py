import math

import pytest
import torch
from torch import nn

from snfs.errors import CheckpointError, ConfigError
from snfs.masks import MaskState, erdos_renyi_counts, init_masks, sparse_parameters, uniform_counts
from snfs.models import build_model


def test_sparse_parameters_are_conv_and_linear_weights_only():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    assert list(sparse_parameters(model)) == ["0.weight", "3.weight"]
    assert list(sparse_parameters(model, dense_layers=["0.weight"])) == ["3.weight"]


def test_dense_layers_are_matched_exactly_not_by_prefix():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    names = sparse_parameters(model, dense_layers=["1.weight"])
    assert "10.weight" in names and "11.weight" in names and "1.weight" not in names


def test_unknown_dense_layer_is_a_config_error():
    with pytest.raises(ConfigError, match="dense_layers"):
        sparse_parameters(nn.Linear(2, 2), dense_layers=["nope.weight"])


def test_uniform_counts_are_exact_per_layer():
    shapes = {"a": torch.Size([300, 784]), "b": torch.Size([100, 300]), "c": torch.Size([10, 100])}
    counts = uniform_counts(shapes, 0.05)
    assert counts == {"a": round(0.05 * 235200), "b": round(0.05 * 30000), "c": round(0.05 * 1000)}


@pytest.mark.parametrize("density", [0.01, 0.05, 0.2, 0.5, 0.9])
def test_erk_total_is_exact_and_layers_capped(density):
    model = build_model("lenet5_caffe", 10)
    shapes = {k: p.shape for k, p in sparse_parameters(model).items()}
    counts = erdos_renyi_counts(shapes, density, kernel=True)
    total = sum(math.prod(s) for s in shapes.values())
    assert sum(counts.values()) == round(density * total)
    for k, n in counts.items():
        assert 0 <= n <= math.prod(shapes[k])


def test_erk_gives_small_layers_higher_density():
    shapes = {"big": torch.Size([500, 800]), "small": torch.Size([10, 500])}
    counts = erdos_renyi_counts(shapes, 0.05)
    assert counts["small"] / 5000 > counts["big"] / 400000


def test_erk_makes_overfull_layers_dense_and_resolves():
    shapes = {"tiny": torch.Size([2, 2]), "big": torch.Size([1000, 1000])}
    counts = erdos_renyi_counts(shapes, 0.5)
    assert counts["tiny"] == 4
    assert sum(counts.values()) == round(0.5 * 1_000_004)


def test_init_masks_exact_counts_and_state_roundtrip():
    model = build_model("lenet300_100", 10)
    params = sparse_parameters(model)
    g = torch.Generator().manual_seed(0)
    ms = init_masks(params, 0.05, "uniform", g)
    assert ms.active_counts() == uniform_counts({k: p.shape for k, p in params.items()}, 0.05)
    saved = ms.state_dict()
    other = init_masks(params, 0.05, "uniform", torch.Generator().manual_seed(1))
    assert any(not torch.equal(other.masks[k], saved[k]) for k in saved)
    other.load_state_dict(saved)
    assert all(torch.equal(other.masks[k], saved[k]) for k in saved)


def test_apply_zeroes_exactly_the_inactive_weights():
    lin = nn.Linear(4, 3)
    params = {"weight": lin.weight}
    mask = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    before = lin.weight.detach().clone()
    MaskState({"weight": mask}).apply(params)
    assert torch.equal(lin.weight[~mask], torch.zeros(int((~mask).sum())))
    assert torch.equal(lin.weight[mask], before[mask])


def test_load_state_dict_rejects_other_layers():
    ms = MaskState({"a": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(CheckpointError):
        ms.load_state_dict({"b": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(CheckpointError):
        ms.load_state_dict({"a": torch.ones(3, 2, dtype=torch.bool)})


def test_bad_distribution_names_choices():
    with pytest.raises(ConfigError, match="uniform"):
        init_masks({"w": torch.zeros(2, 2)}, 0.5, "gaussian", torch.Generator())
