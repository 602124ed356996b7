"""Every top-level key and every dataset YAML key is declared as an Option and checked (issue 26, 4, 13, 15).

A value of the wrong type, out of range, or a required dataset key left out stops the run with one line
naming the key, before any data loads; a density that leaves a sparse layer with no weight is refused.
"""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from support import CONF, compose_cfg

from snfs.errors import ConfigError


def one_line_error(overrides: list[str]) -> str:
    from snfs.config import validate_config

    with pytest.raises(ConfigError) as info:
        validate_config(compose_cfg(overrides))
    text = str(info.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["seed=1.5"], "seed=1.5 is not valid; must be an integer in [0, inf)"),
        (["seed=-1"], "seed=-1 is not valid; must be an integer in [0, inf)"),
        (["epochs=2.5"], "epochs=2.5 is not valid; must be an integer in [1, inf)"),
        (["resume=maybe"], "resume='maybe' is not valid; must be true or false"),
        (["limit_batches=0"], "limit_batches=0 is not valid; must be an integer in [1, inf)"),
        (["precision=fp8"], "precision='fp8' is not a valid choice; valid choices: fp32, bf16, fp16"),
        (["density=0"], "density=0 is not valid; must be a number in (0, 1]"),
        (["+densty=0.02"], "densty is not a key of this config; valid top-level keys: "),
    ],
)
def test_top_level_values_are_checked_as_declared(overrides, expected):
    assert one_line_error(overrides).startswith(expected)


def test_a_mistyped_key_gets_a_did_you_mean():
    assert one_line_error(["+densty=0.02"]).endswith("; did you mean density?")


def test_every_top_level_key_is_declared_with_the_default_config_yaml_states():
    from snfs.config import TOP_LEVEL_OPTIONS, top_level_keys

    base = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))
    declared = {o.name: o for o in TOP_LEVEL_OPTIONS}
    groups = {"dataset", "model", "sparse", "optim", "logger", "experiment", "hydra"}
    assert set(declared) == top_level_keys() - groups
    for name, option in declared.items():
        assert base[name] == option.default, (
            f"conf/config.yaml sets {name}: {base[name]!r}, declared {option.default!r}"
        )


@pytest.mark.parametrize("path", sorted((CONF / "dataset").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_dataset_yaml_passes_its_loaders_declaration(path):
    from snfs.data import check_dataset

    check_dataset(OmegaConf.to_container(OmegaConf.load(path)))


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            ["dataset.val_fraction=1.5"],
            "dataset.val_fraction=1.5 is not valid for dataset=mnist; must be a number in [0, 1)",
        ),
        (
            ["dataset.val_fraction=-0.1"],
            "dataset.val_fraction=-0.1 is not valid for dataset=mnist; must be a number in [0, 1)",
        ),
        (
            ["dataset.std=[0]"],
            "dataset.std=[0] is not valid for dataset=mnist; must be a list of numbers > 0; 0 is not",
        ),
        (
            ["dataset.num_classes=ten"],
            "dataset.num_classes='ten' is not valid for dataset=mnist; must be an integer in [2, inf)",
        ),
        (["~dataset.num_classes"], "dataset.num_classes is missing from dataset=mnist: its YAML must set it"),
        (["~dataset.std"], "dataset.std is missing from dataset=mnist"),
        (["~dataset.name"], "dataset.name is missing"),
        (["+dataset.val_fractoin=0.2"], "dataset.val_fractoin is not an option of dataset=mnist; valid options: "),
        (
            ["dataset=fake", "dataset.n_train=0"],
            "dataset.n_train=0 is not valid for dataset=fake; must be an integer in [1, inf)",
        ),
    ],
)
def test_dataset_values_are_checked_before_any_data_loads(overrides, expected):
    assert one_line_error(overrides).startswith(expected)


def test_a_density_that_leaves_a_sparse_layer_without_weights_is_refused():
    from snfs.masks import init_masks

    params = {"fc1.weight": torch.zeros(300, 784), "fc3.weight": torch.zeros(10, 100)}
    with pytest.raises(ConfigError) as info:
        init_masks(params, 1e-9, "uniform", torch.Generator().manual_seed(0))
    assert str(info.value) == (
        "density=1e-09 leaves sparse layer fc1.weight (235200 weights) without any weight under "
        "sparse.distribution=uniform; density > 0.0005 gives every layer at least one"
    )
    smallest_ok = math.nextafter(0.5 / 1000, 1.0)
    masks = init_masks(params, smallest_ok, "uniform", torch.Generator().manual_seed(0))
    assert min(masks.active_counts().values()) >= 1
    with pytest.raises(
        ConfigError, match="density=1e-09 leaves sparse layer .* under sparse.distribution=erk; raise density"
    ):
        init_masks(params, 1e-9, "erk", torch.Generator().manual_seed(0))


def test_precision_names_of_the_config_are_the_ones_the_trainer_maps():
    from snfs.config import PRECISION_NAMES
    from snfs.precision import PRECISIONS

    assert tuple(PRECISIONS) == PRECISION_NAMES
