"""Typed options (issue 14, bugs 3 and 4): every algorithm and ``optim`` option is checked before data loads."""

from __future__ import annotations

import os
import subprocess
import sys

from support import REPO


def test_bad_option_stops_the_cli_before_any_data_loads(tmp_path):
    """One line, exit 2, no traceback, and no dataset touched (the data root does not even exist)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snfs.train",
            "sparse=set",
            "+sparse.prune_rate=0.3",
            f"data.root={tmp_path / 'nowhere'}",
            f"results_dir={tmp_path / 'runs'}",
            "logger.mode=disabled",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        cwd=tmp_path,
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: sparse.prune_rate is not an option of sparse=set")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "runs").exists()
