"""The committed tables rebuild unchanged from the run records they name.

Which runs: exactly those whose ids the committed CSVs list (their ``run_ids`` column), copied from
results/runs into a temporary store. A background sweep keeps adding run records to results/runs
(LeNet-5-Caffe for mnist_compression), and a table rebuilt from the whole store changes as they
land; pinning the store to the runs each table names keeps this test about the code (same runs in,
same table out) and not about when the last run arrived. A named run missing from results/runs
fails the test (run records are never rewritten, so that is a lost record).

What is compared: every results/tables/*.md and *.csv and the index README.md, byte for byte,
except the markdown line that says at which commit the table was built.
"""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from support import REPO

TABLES_DIR = REPO / "results" / "tables"
RUNS_DIR = REPO / "results" / "runs"
BUILD_LINE = "- Table built by `scripts/reproduce.py` at commit"


def named_run_ids() -> set[str]:
    ids: set[str] = set()
    for path in TABLES_DIR.glob("*.csv"):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                ids.update(i for i in (row.get("run_ids") or "").split(";") if i)
    return ids


def without_build_line(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(BUILD_LINE)]


@pytest.mark.slow  # composes every preset's grid (~600 jobs) and rebuilds every table: ~1.5 min on 2 cores
def test_committed_tables_rebuild_unchanged(tmp_path):
    from snfs.report import cli

    store = tmp_path / "runs"
    store.mkdir()
    ids = named_run_ids()
    missing = sorted(i for i in ids if not (RUNS_DIR / f"{i}.json").is_file())
    assert not missing, f"runs named by results/tables/*.csv are not in results/runs: {missing[:5]}"
    for run_id in ids:
        shutil.copy(RUNS_DIR / f"{run_id}.json", store / f"{run_id}.json")
        json.loads((store / f"{run_id}.json").read_text())  # a record the store can read
    out = tmp_path / "tables"
    written = cli.rebuild_tables(store, out, description="local results store `results/runs`")
    committed = sorted(p.name for p in TABLES_DIR.iterdir() if p.suffix in (".md", ".csv"))
    assert sorted(p.name for p in written) == committed
    for name in committed:
        want = without_build_line((TABLES_DIR / name).read_text())
        got = without_build_line((out / name).read_text())
        assert got == want, f"results/tables/{name} does not rebuild unchanged; first differing line: " + next(
            (f"committed {a!r} vs rebuilt {b!r}" for a, b in zip(want, got) if a != b),
            f"{len(want)} vs {len(got)} lines",
        )


# --- specs: conf/experiment/<name>.yaml + <name>.md -------------------------------------------------------


def test_every_preset_is_a_table_with_its_whole_grid():
    """The grid is the preset file's: its sweep plus its `# @block:` lines (mnist_methods: 108 runs)."""
    from snfs.report.paths import presets
    from snfs.report.sweep import Composer, expand
    from snfs.report.tables import TABLES

    assert list(TABLES) == presets()
    spec = TABLES["mnist_methods"]
    assert [g.overrides for g in spec.groups] == [
        (),
        ("sparse=dense", "density=1.0"),
        ("sparse=static,rigl", "density=0.01,0.02,0.05,0.1"),
        ("sparse=deepr_dsr_code", "density=0.02,0.03,0.05"),
    ]
    with Composer() as composer:
        ids = {j.run_id for g in spec.groups for j in expand(composer, g.preset, list(g.overrides)).jobs}
    assert len(ids) == 108
    assert TABLES["imagenet_resnet50"].groups[1].overrides[-1] == "~sparse.prune_rate"
