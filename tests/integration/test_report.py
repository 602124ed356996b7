"""Tables and figures: statistics on hand-made run JSONs, run matching, the wandb source (mocked
Api), figure files, the reference CSVs, and one QUICK sweep end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import REPO
from support.report import POINTS, run_json, table_of

from snfs.report.store import load_wandb
from snfs.report.sweep import Composer, expand
from snfs.report.tables import to_markdown

# --- wandb source ------------------------------------------------------------------------------------------


class FakeRun:
    def __init__(self, record: dict, state: str = "finished"):
        self.name = record["run_id"]
        self.id = "w" + str(abs(hash(record["run_id"])))[:7]
        self.state = state
        self.config = record["config"]
        self.summary = {
            "test_error": record["test_error"],
            "val_error": record["val_error"],
            "final_density": 0.05,
            "wall_time_s": 1.0,
            "_runtime": 1.0,
        }
        self.commit = "feedfacecafe"
        self.path = ["me", "snfs", self.id]
        self._history = [
            {"_step": 10, "epoch": 1, "layer_density/fc1.weight": 0.04, "layer_density/fc2.weight": 0.1},
            {"_step": 20, "epoch": 2, "layer_density/fc1.weight": 0.03, "layer_density/fc2.weight": 0.2},
        ]

    def scan_history(self, keys=None, page_size=1000):
        return iter(self._history)


class FakeApi:
    def __init__(self, runs):
        self._runs = runs
        self.calls = []

    def runs(self, path=None, filters=None, **kw):
        self.calls.append((path, filters))
        return list(self._runs)


def test_wandb_source_with_a_mocked_api(tmp_path, jobs, monkeypatch):
    sparse = [j for j in jobs if j.config["sparse"]["name"] == "momentum"]
    records = [run_json(j, e) for j, e in zip(sparse, (1.5, 1.6, 1.8))]
    fake = FakeApi([FakeRun(r) for r in records] + [FakeRun(run_json(jobs[-1], 1.3), state="crashed")])
    index = load_wandb("me/snfs", api=fake)
    assert fake.calls == [("me/snfs", {})] and len(index) == 3
    table = table_of(index)
    row = table.rows[0]
    assert (row.ours.n, row.ours.mean) == (3, pytest.approx(1.6333333))
    assert table.rows[1].ours.n == 0  # the crashed run does not count
    md = to_markdown(table)
    assert "wandb project `me/snfs`" in md and "`feedfacecafe` (3 runs)" in md

    # the CLI path: `make tables SOURCE=wandb WANDB_PROJECT=me/snfs` with wandb.Api patched
    import wandb

    monkeypatch.setattr(wandb, "Api", lambda *a, **k: fake)
    from snfs.report.cli import main

    out = tmp_path / "tables"
    assert (
        main(
            ["tables", "mnist_compression", "--source", "wandb", "--wandb-project", "me/snfs", "--tables-dir", str(out)]
        )
        == 0
    )
    text = (out / "mnist_compression.md").read_text()
    assert (
        "wandb project `me/snfs`" in text and "| lenet300_100 | sparse_momentum | 5 | 1.633 ± 0.088 | 3/3 | 0 |" in text
    )

    # layer densities come from the run's logged history
    from snfs.report.figures import figure_layer_density
    from snfs.report.store import history

    rec = index.runs[0]
    assert [h["layer_density"]["fc2.weight"] for h in history(rec)] == [0.1, 0.2]
    assert figure_layer_density(rec, tmp_path / "ld.png").read_bytes()[:4] == b"\x89PNG"


# --- one QUICK sweep, end to end -----------------------------------------------------------------------------


def test_quick_sweep_end_to_end(tmp_path, jobs, capsys):
    """Two QUICK runs on generated data through `scripts/reproduce.py run` (a real Hydra multirun):
    the run JSONs have the expected run ids, the table has exactly those rows, the figures exist,
    and a second call finds nothing to run."""
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "reproduce.py"),
        "run",
        "mnist_compression",
        "+experiment/mnist_point=lenet300_100_5.0,lenet300_100_dense",
        "--quick",
        "--fake-data",
        "--results",
        str(tmp_path / "runs"),
        "--tables-dir",
        str(tmp_path / "tables"),
        "--figures-dir",
        str(tmp_path / "figures"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    made = sorted(p.stem for p in (tmp_path / "runs").glob("*.json"))
    assert len(made) == 2 and all(m.startswith("fake-lenet300_100-") for m in made)
    with Composer() as composer:
        from snfs.report.quick import quick_overrides

        expected = expand(composer, "mnist_compression", POINTS + quick_overrides("mnist", tmp_path, force_fake=True))
    assert made == sorted(j.run_id for j in expected.jobs)  # our run ids are the ones Hydra's jobs computed
    md = (tmp_path / "tables" / "mnist_compression.md").read_text()
    assert (
        md.startswith("# QUICK") and "**smoke test** (QUICK): 2 of 2 cut-down runs" in md and "reproduced**" not in md
    )
    table_rows = [line for line in md.splitlines() if line.startswith("| lenet")]
    assert [r.split(" | ")[1:3] for r in table_rows] == [["sparse_momentum", "5"], ["dense", "100"]]
    assert all(" | 1/1 | " in r for r in table_rows)
    assert (tmp_path / "figures" / "mnist_compression.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "figures" / "layer_density_fake_lenet300_100.png").exists()
    assert not list((tmp_path / "runs" / "checkpoints").glob("*.pt"))  # QUICK keeps no checkpoints
    from snfs.report.cli import main

    assert main(cmd[2:] + ["--dry-run"]) == 0
    assert "2 runs, 2 finished, 0 to run" in capsys.readouterr().out
