"""The GPU check's own dry run on a CPU (``DEVICE=cpu QUICK=1``) runs every check and writes both runs of each
comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support import REPO


def test_gpu_check_dry_run_writes_both_runs_of_each_comparison(tmp_path):
    env = dict(os.environ, DEVICE="cpu", QUICK="1", PYTHON=sys.executable, OMP_NUM_THREADS="1")
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(tmp_path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [json.loads(line) for line in (tmp_path / "gpu_check.jsonl").read_text().splitlines() if line.strip()]
    log = (tmp_path / "gpu_check.log").read_text()
    assert [r for r in lines if r.get("status") == "failed"] == [], log[-3000:]
    assert done.returncode == 0, log[-3000:]
    assert sorted(r["execution"] for r in lines if r.get("check") == "mnist_2_epochs") == ["masked", "sparse"]
    assert sorted(r["launcher"] for r in lines if r.get("check") == "torchrun_vs_plain") == ["plain", "torchrun"]
    assert {(r["precision"], r["sparse"]) for r in lines if r.get("model") == "wrn16_8"} == {
        (p, s) for p in ("fp32", "bf16") for s in ("dense", "momentum")
    }
    machine = next(r for r in lines if r.get("check") == "machine")
    assert machine["cpu"] and machine["threads"] >= 1
    assert "has already finished" not in log
