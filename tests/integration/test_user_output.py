"""What is committed and what is a user's own output (issue 26, findings 2 and 3).

Committed artefacts are built from committed run records only and rebuild unchanged: the tables
(tests/integration/test_tables.py) and the static report results/report/
(tests/integration/test_user_output.py). A user's own runs, reports and
screenshots go under results/local/, which git ignores, and a user's first run trains even where the
committed store holds a finished run of the same config.
"""

from __future__ import annotations

import os
import shutil

from support import REPO

RUNS_DIR = REPO / "results" / "runs"
REPORT_DIR = REPO / "results" / "report"


# renders every committed run's page (~20 s on 2 cores)
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
