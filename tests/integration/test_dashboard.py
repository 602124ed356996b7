"""The dashboard in a browser and beside the training stack: the served page in headless Chromium (Debian's
package), as a user would, needing nothing but that binary; a real wandb offline log; its imports.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from support import REPO
from support.dashboard import record

from snfs.report import dashboard
from snfs.report.runlog import RunFolder, SkippedFile


def browser_check():
    """scripts/check_dashboard.py (make check-dashboard), the headless-Chromium harness, as a module."""
    path = REPO / "scripts" / "check_dashboard.py"
    spec = importlib.util.spec_from_file_location("check_dashboard", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dashboard_imports_no_training_stack(tmp_path):
    (tmp_path / "runs").mkdir()
    code = (
        "import sys; from pathlib import Path; import snfs.report.dashboard as d; "
        f"d.make_app(Path({str(tmp_path / 'runs')!r}), Path({str(tmp_path)!r})); "
        "print([m for m in ('torch', 'hydra', 'snfs.train', 'wandb') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_browser_shows_run_list_and_curve(store):
    harness = browser_check()
    browser = harness.find_chromium()
    if browser is None:
        if os.environ.get("SNFS_REQUIRE_CHROMIUM"):
            pytest.fail("SNFS_REQUIRE_CHROMIUM is set but no chromium is on PATH")
        pytest.skip("no Chromium on PATH (apt-get install chromium); .ci/run installs it")
    shot = store["tmp"] / "shot" / "dashboard.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFile)
        facts = harness.check(store["runs"], store["tables"], shot, browser=browser)
        expected = sorted(r.run_id for r in RunFolder(store["runs"]).refresh())
    assert facts["problems"] == []
    assert sorted(facts["run_ids"]) == expected
    assert facts["run_ids"][0] == facts["latest"]  # newest first, and drawn
    assert facts["lines"] >= 5  # losses, errors, lr, prune rate, densities of the selected run
    assert (
        facts["title"]
        == f"{facts['latest']} (" + ("running, 2" if facts["latest"] == store["live"] else "finished, 6") + " epochs)"
    )
    import matplotlib.image

    assert min(png_size(shot)) > 0
    single = matplotlib.image.imread(shot)
    assert single.std() > 0.05  # not a blank page
    # a link that opens several runs overlaid (?run=...&run=...), e.g. every seed of one table row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFile)
        seeds = sorted(r.run_id for r in RunFolder(store["runs"]).refresh() if "-set-d0.05-" in r.run_id)
        overlaid = harness.check(store["runs"], store["tables"], shot, browser=browser, select=seeds)
    assert overlaid["problems"] == [] and overlaid["title"] == "3 runs overlaid"
    assert overlaid["lines"] == 3 * 6  # six panels, one line per run in each
    # the screenshot is of this page, not the one before: three runs' curves differ from one run's
    again = matplotlib.image.imread(shot)
    assert again.shape != single.shape or (again != single).any()
    # the static report opens from disk, without a server, and draws its curves
    out = store["tmp"] / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFile)
        dashboard.write_report(store["runs"], store["tables"], out, progress=False)
    page = harness.chromium(browser, (out / "runs" / f"{facts['latest']}.html").resolve().as_uri(), "--dump-dom")
    assert page.returncode == 0, page.stderr[-2000:]
    assert harness.page_facts(page.stdout)["lines"] >= 5


def test_a_real_wandb_offline_log_is_read(tmp_path):
    """The format as wandb itself writes it (offline, as logger.mode=offline does), not our own writer."""
    runs = tmp_path / "runs"
    runs.mkdir()
    rec = record("set", 0.05, 18, 3)
    code = f"""
import json, wandb
rec = json.loads({json.dumps(json.dumps(rec))})
run = wandb.init(mode="offline", dir={str(runs)!r}, name=rec["run_id"], project="snfs", config=rec["config"])
for h in rec["history"]:
    run.log({{k: v for k, v in h.items() if not isinstance(v, dict)}}
            | {{f"layer_density/{{k}}": v for k, v in h["layer_density"].items()}}, step=h["epoch"] * 10)
run.finish()
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, WANDB_SILENT="true", WANDB_DISABLE_GIT="true"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert list(runs.glob("wandb/offline-run-*/run-*.wandb"))
    (run,) = RunFolder(runs).refresh()
    assert (run.run_id, run.status, run.summary()["algorithm"], run.summary()["seed"]) == (
        rec["run_id"],
        "stopped",
        "set",
        18,
    )
    assert run.series("train_loss")[1] == pytest.approx([1.0, 0.5, 1 / 3])
    assert run.layer_series("fc2.weight")[1] == pytest.approx([0.05] * 3)
