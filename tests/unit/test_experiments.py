"""Experiment presets (conf/experiment/*.yaml): they compose, their grids are the paper's settings,
their jobs pass the training entry's config checks, and the sweep/skip/launch machinery is right."""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess

import pytest
from support import CONF, REPO

from snfs.report.paths import presets
from snfs.report.sweep import Composer, missing_blocks
from snfs.report.tables import TABLES

PRESETS = presets()

# --- composition --------------------------------------------------------------------------------


def test_there_is_one_preset_per_table():
    assert set(PRESETS) == set(TABLES)
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # the Makefile derives its targets from conf/experiment/: each one runs its preset (dry run, nothing executes)
    proc = subprocess.run(
        ["make", "-n", *(f"reproduce-table-{name}" for name in PRESETS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for name in PRESETS:
        assert f"scripts/reproduce.py run {name} " in proc.stdout, name


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_as_a_multirun(name):
    """The idiom everywhere (tests, Makefile, scripts/reproduce.py, docs): `+experiment=<name>`."""
    with Composer() as composer:
        cfg = composer.compose([f"+experiment={name}"], hydra_config=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    params = dict(cfg.hydra.sweeper.params)
    assert params and "seed" in params
    assert (CONF / "experiment" / f"{name}.yaml").read_text().startswith("# @package _global_")


# --- launchers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "launcher,key,value",
    [
        ("slurm", "gpus_per_node", 1),
        ("slurm", "max_num_timeout", 3),
        ("submitit_slurm", "partition", None),
        ("joblib", "n_jobs", -1),
        ("submitit_local", "timeout_min", 60),
    ],
)
def test_launcher_configs_compose(launcher, key, value):
    with Composer() as composer:
        cfg = composer.compose(["+experiment=mnist_methods", f"hydra/launcher={launcher}"], hydra_config=True)
    assert cfg.hydra.launcher[key] == value
    if launcher == "slurm":
        assert "SlurmLauncher" in cfg.hydra.launcher._target_ and "partition" in cfg.hydra.launcher


# --- skipping finished runs --------------------------------------------------------------------------


def test_missing_blocks_cover_exactly_the_missing_points():
    values = [["a", "b", "c"], ["1", "2"], ["17", "18", "19"]]
    grid = list(itertools.product(*values))
    assert missing_blocks(grid, values) == [values]  # the whole grid: one multirun
    assert missing_blocks([], values) == []
    rng = random.Random(0)
    for _ in range(50):
        subset = rng.sample(grid, rng.randint(1, len(grid)))
        blocks = missing_blocks(subset, values)
        covered = [p for b in blocks for p in itertools.product(*b)]
        assert sorted(covered) == sorted(subset) and len(covered) == len(set(covered))
    # one seed missing everywhere: one block
    assert missing_blocks([p for p in grid if p[2] == "19"], values) == [[values[0], values[1], ["19"]]]
