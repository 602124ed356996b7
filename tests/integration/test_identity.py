"""A run's identity (snfs.identity): what it computed, and nothing about where or how it ran."""

from __future__ import annotations

import subprocess
import sys

from support import REPO


def test_reading_identities_loads_neither_torch_nor_hydra():
    code = (
        "import sys, snfs.identity, snfs.report.store; "
        "print([m for m in ('torch', 'hydra', 'snfs.train') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO / "src")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_building_a_table_loads_neither_torch_nor_the_trainer(tmp_path):
    code = (
        "import sys; from snfs.report.cli import main; "
        f"main(['tables', 'mnist_compression', '--results', {str(tmp_path / 'runs')!r}, "
        f"'--tables-dir', {str(tmp_path / 'tables')!r}]); "
        "print([m for m in ('torch', 'snfs.train') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "tables" / "mnist_compression.md").exists()
