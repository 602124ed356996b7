"""Every script in examples/ runs as printed in its docstring, on small settings (docs/library.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import REPO

EXAMPLES = REPO / "examples"


def run(script: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_every_example_has_a_test():
    tested = {"mnist_plain_loop.py", "resnet18_generated.py", "transformer_tokens.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_mnist_plain_loop(fake_mnist_root, tmp_path):
    out = run("mnist_plain_loop.py", "--data", str(fake_mnist_root), "--epochs", "5", "--limit", "10", cwd=tmp_path)
    error = float(out.split("test error ")[1].split("%")[0])
    assert error < 80.0  # chance is 90%: it learnt from 50 steps on generated, learnable digits
    assert "at density 0.0500" in out
    assert (tmp_path / "mnist_sparse.pt").stat().st_size > 0


def test_resnet18_on_generated_images(tmp_path):
    out = run("resnet18_generated.py", "--steps", "20", "--batch", "16", cwd=tmp_path)
    assert "RigL moved weights" in out and "conv1 dense: True" in out
    first, last = (float(v.split()[-1]) for v in out.split("loss: first ")[1].splitlines()[0].split(","))
    assert last < first


def test_transformer_with_sparse_attention(tmp_path):
    out = run("transformer_tokens.py", "--steps", "60", "--epochs", "2", cwd=tmp_path)
    assert "sparse attention projections: 2" in out
    accuracy = float(out.split("epoch 2: ")[1].split("token accuracy ")[1].split("%")[0])
    assert accuracy > 100.0 / 32  # better than chance on the successor task
