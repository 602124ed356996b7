"""python -m benchmarks.epoch_time end to end on generated MNIST-format data: early and late epochs, machine named."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support import REPO


def test_bench_times_early_and_late_epochs_and_names_the_machine(fake_mnist_root, tmp_path):
    out = tmp_path / "bench"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.epoch_time",
        "lenet300_100",
        "--rounds",
        "1",
        "--algorithms",
        "static",
        "--densities",
        "0.1",
        "--late-epoch",
        "1",
        "--late-densities",
        "0.1",
        "--data-root",
        str(fake_mnist_root),
        "--out",
        str(out),
        "--set",
        "dataset.download=false",
        "dataset.verify_md5=false",
        "limit_batches=2",
    ]
    python_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    done = subprocess.run(
        cmd,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), *python_path])),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "lenet300_100.json").read_text())
    settings = {(r["execution"], r["late"]) for r in result["rows"] if r["algorithm"] == "static"}
    assert settings == {("masked", False), ("sparse", False), ("masked", True), ("sparse", True)}
    assert result["machine"]["cpu"] and result["machine"]["vector_extensions"] is not None
    assert result["flush_denormal"] is True and result["late_epoch"] == 1
    text = (out / "lenet300_100.md").read_text()
    assert result["machine"]["machine"] in text and "Late epochs" in text and "sparse vs masked" in text
