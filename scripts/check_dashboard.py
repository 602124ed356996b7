"""Open the dashboard in headless Chromium as a user would, check what it shows, keep a screenshot.

    python scripts/check_dashboard.py [--results DIR ...] [--tables DIR] [--quick] [--screenshot PNG] [--run ID ...]

``make check-dashboard`` runs it. It serves the dashboard (``snfs.report.dashboard``) on a free local
port, dumps the rendered page and asserts that the run list holds the newest runs (the newest
selected) and that a curve is drawn; ``--run`` opens the page with those runs overlaid. Exit status 1
names what is missing. tests/integration/test_dashboard.py drives the same functions.
"""

from __future__ import annotations

import argparse
import html as htmlmod
import json
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from snfs.report import paths
from snfs.report.dashboard import PAGE_SIZE, BackgroundServer, latest, make_app, result_folders
from snfs.report.runlog import RunStores

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium(browser: str, url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="snfs-chromium-") as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--window-size=1400,1850",
            "--virtual-time-budget=30000",
            *args,
            url,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class _GridCells(HTMLParser):
    """The text of the grid cells of one column, and whether each one's row is selected."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, column: str):
        super().__init__()
        self.column = column
        self.stack: list[dict] = []  # open elements: attributes of each
        self.cells: list[tuple[str, bool]] = []
        self._text: list[str] | None = None
        self._depth = 0
        self._selected = False

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        a = dict(attrs)
        self.stack.append(a)
        if (
            self._text is None
            and a.get("role") == "gridcell"
            and a.get("col-id") == self.column
            and "ag-cell" in (a.get("class") or "").split()
        ):
            self._text, self._depth = [], len(self.stack)
            rows = [x for x in self.stack if x.get("role") == "row"]
            self._selected = bool(rows) and rows[-1].get("aria-selected") == "true"

    def handle_endtag(self, tag):
        if tag in self.VOID or not self.stack:
            return
        if self._text is not None and len(self.stack) == self._depth:
            text = "".join(self._text).strip()
            if text:
                self.cells.append((text, self._selected))
            self._text = None
        self.stack.pop()

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def page_facts(dom: str) -> dict[str, Any]:
    """What the rendered page shows: the run ids in the run list (AG Grid cells of the run column, in
    order), the selected ones, and the plotted lines (Plotly's SVG paths with at least two points)."""
    parser = _GridCells("run_id")
    parser.feed(dom)
    run_ids = [text for text, _ in parser.cells]
    selected = [text for text, sel in parser.cells if sel]
    lines = [d for d in re.findall(r'<path class="js-line"[^>]*\sd="([^"]*)"', dom) if "L" in d]
    title = re.search(r'<text class="gtitle"[^>]*>([^<]*)</text>', dom)
    return {
        "run_ids": run_ids,
        "selected": selected,
        "lines": len(lines),
        "graph": 'class="js-plotly-plot"' in dom,
        "title": htmlmod.unescape(title.group(1)) if title else None,
    }


def check(
    results: Path | Sequence[Path],
    tables_dir: Path,
    screenshot: Path,
    browser: str | None = None,
    select: Sequence[str] = (),
) -> dict[str, Any]:
    """Serve the dashboard, open it in headless Chromium, assert a run list and a curve; keep a screenshot.
    ``select``: run ids to open the page with (``?run=...``), overlaid; by default the newest run."""
    browser = browser or find_chromium()
    if browser is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    app = make_app(results, tables_dir)
    runs = RunStores(result_folders(results)).refresh()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with BackgroundServer(app) as server:
        url = server.url + (("?" + urlencode([("run", i) for i in select])) if select else "")
        dom = chromium(browser, url, "--dump-dom")
        if dom.returncode != 0:
            raise RuntimeError(f"chromium failed ({dom.returncode}): {dom.stderr[-2000:]}")
        facts = page_facts(dom.stdout)
        shot = chromium(browser, url, f"--screenshot={screenshot.resolve()}")
        if shot.returncode != 0 or not screenshot.exists():
            raise RuntimeError(f"chromium took no screenshot ({shot.returncode}): {shot.stderr[-2000:]}")
    expected = min(len(runs), PAGE_SIZE)
    newest = latest(runs)
    problems = []
    if len(facts["run_ids"]) != expected:
        problems.append(f"the run list shows {len(facts['run_ids'])} runs, expected {expected}")
    if newest is not None and newest.run_id not in facts["run_ids"]:
        problems.append(f"the latest run {newest.run_id} is not in the run list")
    if newest is not None and not select and newest.run_id not in facts["selected"]:
        problems.append(f"the latest run {newest.run_id} is not selected")
    if newest is not None and facts["lines"] == 0:
        problems.append("no curve is drawn")
    title = (
        f"{len(select)} runs overlaid"
        if len(select) > 1
        else (select[0] if select else (newest.run_id if newest else None))
    )
    if title is not None and not (facts["title"] or "").startswith(title):
        problems.append(f"the figure's title is {facts['title']!r}, expected {title!r}")
    facts.update(
        url=server.url,
        screenshot=str(screenshot),
        expected_rows=expected,
        problems=problems,
        latest=newest.run_id if newest else None,
    )
    return facts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/check_dashboard.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--results",
        action="append",
        default=[],
        help="a folder of run JSONs; repeat for several (default results/runs and results/local/runs; "
        "--quick: results/quick/runs)",
    )
    p.add_argument("--tables", help="folder of tables (default results/tables; --quick: results/quick/tables)")
    p.add_argument("--quick", action="store_true", help="the QUICK=1 store (results/quick/)")
    p.add_argument(
        "--screenshot",
        help="PNG to write (default results/local/dashboard.png; --quick: results/quick/report/dashboard.png)",
    )
    p.add_argument("--run", action="append", default=[], help="open the page with this run selected (repeat: overlaid)")
    args = p.parse_args(argv)
    if args.results:
        results = [Path(r) for r in args.results]
    elif args.quick:
        results = [paths.QUICK_RUNS_DIR]
    else:
        results = [paths.RUNS_DIR, paths.LOCAL_RUNS_DIR]
    tables_dir = Path(args.tables) if args.tables else (paths.QUICK_TABLES_DIR if args.quick else paths.TABLES_DIR)
    shot = (
        Path(args.screenshot)
        if args.screenshot
        else (paths.QUICK_DIR / "report" / "dashboard.png" if args.quick else paths.LOCAL_DIR / "dashboard.png")
    )
    if not any(r.is_dir() for r in results):
        print(f"error: results folder {results[0]} does not exist", file=sys.stderr)
        return 2
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    try:
        facts = check(results, tables_dir, shot, select=args.run)
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {k: facts[k] for k in ("url", "expected_rows", "lines", "title", "latest", "screenshot", "problems")}
            | {"rows_shown": len(facts["run_ids"])}
        )
    )
    if facts["problems"]:
        print("error: " + "; ".join(facts["problems"]), file=sys.stderr)
        return 1
    print(
        f"ok: run list ({len(facts['run_ids'])} rows) and {facts['lines']} curve(s) rendered; "
        f"screenshot {paths.display(shot)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
