"""What a run prints, and how it ends (issue 26, finding 10).

After the result line wandb printed about 35 lines (run history and summary); the validation error was
printed unrounded (3.3333333333333335); the dashboard showed epochs=3.0; two Ctrl-C 50 ms apart printed
a Python traceback while the process shut down.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from support import REPO

from snfs.checkpoint import read_checkpoint

RUN = ["dataset=fake", "dataset.n_train=256", "dataset.n_val=30", "threads=1", "progress=false", "run_id=polish"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def test_a_run_ends_with_its_result_line_and_one_wandb_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "snfs.train", *RUN, "epochs=2", f"results_dir={tmp_path / 'runs'}"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    result = next(i for i, line in enumerate(lines) if line.startswith("polish: test error"))
    assert re.fullmatch(r"polish: test error \d+\.\d\d%, val error \d+\.\d\d%, density 0\.0500, .*", lines[result])
    after = lines[result + 1 :]
    assert len(after) == 1 and after[0].startswith(f"wandb: logged offline to {tmp_path / 'runs' / 'wandb'}"), after
    assert not any(line.startswith("wandb: WARNING") for line in lines), lines


@pytest.mark.parametrize("gap_s", [0.05, 0.3])
def test_two_ctrl_c_stop_the_run_without_a_traceback(tmp_path, gap_s):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snfs.train",
            *RUN,
            "dataset.n_train=20000",
            "epochs=50",
            "logger.mode=offline",
            f"results_dir={tmp_path / 'runs'}",
        ],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoint = tmp_path / "runs" / "checkpoints" / "polish.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    # the first checkpoint is written (atomically) inside the training loop, whose handler takes Ctrl-C from here on
    proc.send_signal(signal.SIGINT)
    time.sleep(gap_s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert "Ctrl-C: saving a checkpoint after this batch" in err, err  # the training loop took the first one
    assert "Traceback" not in err, err
    assert proc.returncode == 130, err
    assert read_checkpoint(checkpoint)["run_id"] == "polish"
