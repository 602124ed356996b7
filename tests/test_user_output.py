"""What is committed and what is a user's own output (issue 26, findings 2 and 3).

Committed artefacts are built from committed run records only and rebuild unchanged: the tables
(tests/test_tables.py) and the static report results/report/ (here). A user's own runs, reports and
screenshots go under results/local/, which git ignores, and a user's first run trains even where the
committed store holds a finished run of the same config.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess

import pytest
from conftest import REPO
from omegaconf import OmegaConf

REPORT_DIR = REPO / "results" / "report"
RUNS_DIR = REPO / "results" / "runs"


def git_ignores(path) -> bool:
    done = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO)
    return done.returncode == 0


def test_a_users_output_goes_where_git_does_not_track_it():
    from snfs.report import paths

    results_dir = OmegaConf.load(REPO / "conf" / "config.yaml").results_dir
    assert (REPO / results_dir).resolve() == paths.LOCAL_RUNS_DIR
    for path in (
        paths.LOCAL_RUNS_DIR / "some-run.json",
        paths.LOCAL_REPORT_DIR / "index.html",
        paths.LOCAL_DIR / "dashboard.png",
    ):
        assert git_ignores(path), f"{path} would be tracked by git"
    assert not git_ignores(RUNS_DIR / "some-run.json")  # the committed store stays committed


def _dashboard_check():
    """(module, argv) of the dashboard's browser check: scripts/check_dashboard.py where it exists, else
    `python -m snfs.report.dashboard check`."""
    script = REPO / "scripts" / "check_dashboard.py"
    if script.exists():
        spec = importlib.util.spec_from_file_location("check_dashboard", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module, []
    from snfs.report import dashboard

    return dashboard, ["check"]


def test_report_and_check_write_under_results_local_by_default(monkeypatch, tmp_path):
    from snfs.report import dashboard, paths

    seen = {}
    monkeypatch.setattr(
        dashboard,
        "write_report",
        lambda results, tables, out, **k: (
            seen.update(report=(results, out)) or {"runs": 0, "rows": 0, "compare": 0, "files": 0}
        ),
    )
    assert dashboard.main(["report"]) == 0
    assert seen["report"] == ([paths.RUNS_DIR, paths.LOCAL_RUNS_DIR], paths.LOCAL_REPORT_DIR)
    assert dashboard.main(["report", "--committed"]) == 0
    assert seen["report"] == ([paths.RUNS_DIR], paths.REPORT_DIR)
    module, argv = _dashboard_check()
    monkeypatch.setattr(
        module,
        "check",
        lambda results, tables, shot, **k: (
            seen.update(check=(results, shot))
            or {
                "run_ids": [],
                "lines": 0,
                "problems": [],
                "url": "",
                "expected_rows": 0,
                "title": None,
                "latest": None,
                "screenshot": str(shot),
            }
        ),
    )
    module.main(argv)
    assert seen["check"] == ([paths.RUNS_DIR, paths.LOCAL_RUNS_DIR], paths.LOCAL_DIR / "dashboard.png")


def test_the_dashboard_shows_a_users_runs_beside_the_committed_ones(tmp_path):
    from snfs.report.runlog import RunStores

    committed, local = tmp_path / "runs", tmp_path / "local"
    committed.mkdir()
    local.mkdir()
    some = sorted(RUNS_DIR.glob("*.json"))[:2]
    for path in some:
        shutil.copy(path, committed / path.name)
    shutil.copy(some[0], local / some[0].name)  # the user trained one committed config again
    runs = RunStores([committed, local]).refresh()
    assert sorted(r.run_id for r in runs) == sorted(p.stem for p in some)
    assert next(r for r in runs if r.run_id == some[0].stem).path == local / some[0].name
    assert [r.run_id for r in RunStores([committed, tmp_path / "not-yet"]).refresh()] == sorted(p.stem for p in some)


@pytest.mark.integration  # renders every committed run's page (~20 s on 2 cores)
def test_committed_report_rebuilds_unchanged(tmp_path):
    """results/report/ is the report of the runs it lists, rebuilt byte for byte (the screenshots aside).

    As for the tables, the store is pinned to the runs the committed report names (its runs/*.html), so
    that runs added to results/runs later make this fail only once `make report-committed` is due."""
    from snfs.report.dashboard import write_report

    store = tmp_path / "runs"
    store.mkdir()
    ids = sorted(p.stem for p in (REPORT_DIR / "runs").glob("*.html"))
    missing = [i for i in ids if not (RUNS_DIR / f"{i}.json").is_file()]
    assert not missing, f"runs named by results/report/runs/ are not in results/runs: {missing[:5]}"
    for run_id in ids:
        shutil.copy(RUNS_DIR / f"{run_id}.json", store / f"{run_id}.json")
    out = tmp_path / "report"
    write_report([store], REPO / "results" / "tables", out, progress=False, description="results/runs")
    committed = sorted(
        str(p.relative_to(REPORT_DIR)) for p in REPORT_DIR.rglob("*") if p.is_file() and p.suffix != ".png"
    )
    rebuilt = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert rebuilt == committed
    # tables.html links the figures relative to where it is written: from results/report/, "../figures/"
    tables = out / "tables.html"
    figures_from_tmp = os.path.relpath(REPO / "results" / "figures", out.resolve())
    tables.write_text(tables.read_text().replace(f'src="{figures_from_tmp}/', 'src="../figures/'))
    differing = [name for name in committed if (REPORT_DIR / name).read_bytes() != (out / name).read_bytes()]
    assert not differing, f"results/report does not rebuild unchanged (make report-committed): {differing[:5]}"


def test_a_finished_run_message_gives_a_command_and_never_says_delete(monkeypatch, tmp_path):
    from pathlib import Path

    from snfs.train import already_finished_message

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["snfs/train.py", "density=0.02", "results_dir=results/runs"])
    where = Path("results/runs/mnist-lenet300_100-momentum-d0.02-s17-0123456789.json")
    text = already_finished_message("mnist-lenet300_100-momentum-d0.02-s17-abcdefabcd", {"test_error": 1.23456}, where)
    assert "delete" not in text.lower() and "remove" not in text.lower()
    assert "test error 1.23%" in text
    assert "under mnist-lenet300_100-momentum-d0.02-s17-0123456789, the id an earlier version gave this config" in text
    assert text.endswith("python -m snfs.train density=0.02 results_dir=results/local/runs-2")
    (tmp_path / "results" / "local" / "runs-2").mkdir(parents=True)
    assert already_finished_message(where.stem, {}, where).endswith("results_dir=results/local/runs-3")
