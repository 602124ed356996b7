"""What is committed and what is a user's own output (issue 26, findings 2 and 3).

Committed artefacts are built from committed run records only and rebuild unchanged: the tables
(tests/integration/test_tables.py) and the static report results/report/
(tests/integration/test_user_output.py). A user's own runs, reports and
screenshots go under results/local/, which git ignores, and a user's first run trains even where the
committed store holds a finished run of the same config.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

from omegaconf import OmegaConf
from support import REPO

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
