"""Hand-made run records and the tables built from them, for the report and table tests of both tiers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snfs.report.sweep import Composer, expand
from snfs.report.tables import TABLES, Table, build_table

POINTS = ["+experiment/mnist_point=lenet300_100_5.0,lenet300_100_dense"]  # 2 settings x 3 seeds


@pytest.fixture(scope="module")
def jobs():
    with Composer() as composer:
        return expand(composer, "mnist_compression", POINTS).jobs


def run_json(job, test_error, **extra) -> dict:
    return {
        "status": "finished",
        "run_id": job.run_id,
        "dataset": job.config["dataset"]["name"],
        "model": job.config["model"]["name"],
        "algorithm": job.config["sparse"]["name"],
        "density": job.config["density"],
        "seed": job.config["seed"],
        "epochs": job.config["epochs"],
        "test_error": test_error,
        "val_error": test_error,
        "git_commit": "0123456789abcdef0123",
        "device": "cpu",
        "machine": "test CPU x2 threads, box",
        "config": job.config,
        "history": [],
        **extra,
    }


def write_runs(store: Path, runs: list[dict]) -> None:
    store.mkdir(parents=True, exist_ok=True)
    for r in runs:
        (store / f"{r['run_id']}.json").write_text(json.dumps(r))


def table_of(index, overrides=POINTS, name="mnist_compression", **kw) -> Table:
    with Composer() as composer:
        return build_table(TABLES[name], index, composer, extra_overrides=lambda g: list(overrides), **kw)
