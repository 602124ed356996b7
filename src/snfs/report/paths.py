"""Where things live. Paths are absolute, anchored at the repository root (editable install)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
CONF_DIR = REPO_ROOT / "conf"
EXPERIMENT_DIR = CONF_DIR / "experiment"
RESULTS_DIR = REPO_ROOT / "results"
RUNS_DIR = RESULTS_DIR / "runs"  # the committed store: run JSONs behind the tables (checkpoints: ignored)
LOCAL_DIR = RESULTS_DIR / "local"  # a user's own output, never committed (gitignored)
LOCAL_RUNS_DIR = LOCAL_DIR / "runs"  # where `python -m snfs.train` / `make train` write by default
LOCAL_REPORT_DIR = LOCAL_DIR / "report"  # `make report`: the static dashboard of both stores
REPORT_DIR = RESULTS_DIR / "report"  # committed: the static dashboard of RUNS_DIR alone (make report-committed)
REFERENCE_DIR = RESULTS_DIR / "reference"  # the paper's numbers, committed
TABLES_DIR = RESULTS_DIR / "tables"
FIGURES_DIR = RESULTS_DIR / "figures"
QUICK_DIR = RESULTS_DIR / "quick"  # QUICK=1 smoke runs, tables and figures (gitignored)
QUICK_RUNS_DIR = QUICK_DIR / "runs"
QUICK_TABLES_DIR = QUICK_DIR / "tables"
QUICK_FIGURES_DIR = QUICK_DIR / "figures"


def presets() -> list[str]:
    """Names of the experiment presets: the top-level ``conf/experiment/*.yaml`` files."""
    return sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))


def display(path: str | Path) -> str:
    """``path`` relative to the repository root when it is inside it (for tables and logs)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
