"""A local dashboard over the results store, and the same as static HTML files.

    python -m snfs.report.dashboard serve  [--results DIR ...] [--tables DIR] [--host 127.0.0.1] [--port 8050]
    python -m snfs.report.dashboard report [--results DIR ...] [--tables DIR] [--out results/local/report]
    python -m snfs.report.dashboard report --committed      # results/report from the committed store alone

Without ``--results`` it reads the committed store (results/runs) and the user's own
(results/local/runs); what it writes by default goes under the gitignored results/local/. The
committed results/report/ is built from committed records only (``--committed``).

``serve`` (``make dashboard``) is a Dash app: the run list with filters, the curves of the selected
runs (overlaid), the tables beside the paper's numbers; it re-reads the store every few seconds and
shows runs still training from their offline wandb logs (``snfs.report.runlog``). ``report``
(``make report``) writes the same as plain HTML pages that open from disk. The headless-browser
check of the served page is scripts/check_dashboard.py (``make check-dashboard``).

Nothing here imports torch, hydra or ``snfs.train``.
"""

from __future__ import annotations

import argparse
import html as htmlmod
import os
import re
import sys
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snfs.report import paths
from snfs.report.runlog import FILTER_KEYS, SUMMARY_COLUMNS, Run, RunStores, SkippedFile

REFRESH_S = 5
PAGE_SIZE = 15
DECIMALS = {"test_error": 2, "val_error": 2, "final_density": 4, "flops_ratio": 3, "wall_time_s": 0}
NUMBER_FORMATS = {
    "density": "{:g}",
    "test_error": "{:.2f}",
    "val_error": "{:.2f}",
    "final_density": "{:.4f}",
    "flops_ratio": "{:.3f}",
    "wall_time_s": "{:.0f}",
}


def fmt(key: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if key in NUMBER_FORMATS and isinstance(value, (int, float)):
        return NUMBER_FORMATS[key].format(value)
    return str(value)


def table_files(tables_dir: Path) -> list[Path]:
    """The markdown tables: the index (README.md) first, then in the index's order, then the rest."""
    if not tables_dir.is_dir():
        return []
    files = sorted(tables_dir.glob("*.md"))
    index = tables_dir / "README.md"
    order = re.findall(r"\]\(([\w.-]+\.md)\)", index.read_text()) if index.exists() else []
    rank = {name: i for i, name in enumerate(order)}
    return sorted(files, key=lambda p: (p.name != "README.md", rank.get(p.name, len(rank)), p.name))


def table_figure(tables_dir: Path, name: str) -> Path | None:
    """The figure drawn beside a table (``make figures``: ``results/figures/<name>.png``), if there is one."""
    figure = tables_dir.parent / "figures" / f"{Path(name).stem}.png"
    return figure if figure.is_file() else None


def latest(runs: Sequence[Run]) -> Run | None:
    return max(runs, key=lambda r: (r.mtime, r.run_id)) if runs else None


# --- the Dash app ----------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, 'DejaVu Sans', sans-serif; margin: 0 1.2em; color: #222; }
h1 { font-size: 1.35em; margin: 0.6em 0 0.2em 0; }
.status { color: #555; font-size: 0.9em; margin-bottom: 0.6em; }
.filters { display: grid; grid-template-columns: repeat(6, 1fr); gap: 0.5em; margin: 0.5em 0; }
.filters label { font-size: 0.8em; color: #555; }
.buttons button { margin: 0.4em 0.4em 0.4em 0; padding: 0.25em 0.8em; }
.md table { border-collapse: collapse; font-size: 0.9em; margin: 0.6em 0; }
.md th, .md td { border: 1px solid #ccc; padding: 0.2em 0.5em; }
.md th { background: #f3f3f3; }
.warn { color: #a55; font-size: 0.85em; }
"""


def grid_row(summary: dict) -> dict:
    """A run-list row: numbers rounded for display (they stay numbers, so they sort and filter as numbers)."""
    row = dict(summary)
    for key, digits in DECIMALS.items():
        if isinstance(row.get(key), float):
            row[key] = round(row[key], digits)
    return row


def result_folders(results: Path | Sequence[Path]) -> list[Path]:
    return [Path(results)] if isinstance(results, (str, Path)) else [Path(r) for r in results]


def where(results: Path | Sequence[Path]) -> str:
    """The stores read, for titles and messages: ``results/runs + results/local/runs``."""
    return " + ".join(paths.display(f) for f in result_folders(results))


def make_app(results: Path | Sequence[Path], tables_dir: Path, refresh_s: float = REFRESH_S):
    """The Dash app over ``results`` (run JSONs) and ``tables_dir`` (``*.md`` tables)."""
    import dash_ag_grid as dag
    from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

    from snfs.report.figures_live import empty_figure, overlay_figure, run_figure

    store = RunStores(result_folders(results))
    store.refresh()  # fails here, with a clear message, when the folder does not exist
    lock = threading.Lock()

    def current() -> list[Run]:
        with lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", SkippedFile)  # each skipped file is warned about once, on the console
            return store.refresh()

    app = Dash(__name__, title="snfs runs", update_title=None)  # type: ignore[arg-type]  # None: no "Updating..."
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + CSS + "</style>")
    numeric = set(NUMBER_FORMATS) | {"seed"}
    columns = [
        {
            "field": key,
            "headerName": header,
            "filter": "agNumberColumnFilter" if key in numeric else "agTextColumnFilter",
        }
        | ({"pinned": "left", "minWidth": 380} if key == "run_id" else {})
        for key, header in SUMMARY_COLUMNS
    ]
    tables = table_files(tables_dir)
    app.layout = html.Div(
        [
            html.H1(f"snfs runs: {where(results)}"),
            html.Div(id="status", className="status"),
            dcc.Location(id="url", refresh=False),
            dcc.Interval(id="tick", interval=int(refresh_s * 1000)),
            dcc.Store(id="plotted"),
            dcc.Tabs(
                [
                    dcc.Tab(
                        label="Runs",
                        children=[
                            html.Div(
                                [
                                    html.Div(
                                        [html.Label(k), dcc.Dropdown(id=f"filter-{k}", multi=True, placeholder="any")]
                                    )
                                    for k in FILTER_KEYS
                                ],
                                className="filters",
                            ),
                            dag.AgGrid(
                                id="runs",
                                rowData=[],
                                columnDefs=columns,
                                getRowId="params.data.run_id",
                                defaultColDef={
                                    "sortable": True,
                                    "filter": True,
                                    "floatingFilter": True,
                                    "resizable": True,
                                    "minWidth": 70,
                                },
                                dashGridOptions={
                                    "rowSelection": {"mode": "multiRow", "enableClickSelection": True},
                                    "pagination": True,
                                    "paginationPageSize": PAGE_SIZE,
                                    "paginationPageSizeSelector": [PAGE_SIZE, 50, 200],
                                    "domLayout": "autoHeight",
                                    "animateRows": False,
                                    "rowHeight": 28,
                                    "headerHeight": 30,
                                    "selectionColumnDef": {"pinned": "left"},
                                },
                                columnSize="autoSize",
                                style={"height": None},
                            ),
                            html.Div(
                                [
                                    html.Button("overlay every listed run", id="select-listed"),
                                    html.Button("add the other seeds of the selected rows", id="select-seeds"),
                                    html.Button("clear the selection", id="select-none"),
                                    dcc.RadioItems(
                                        id="color-by",
                                        value="run",
                                        inline=True,
                                        options=[
                                            {"label": f"colour by {k}", "value": k}
                                            for k in ("run", "algorithm", "density", "seed", "model")
                                        ],
                                    ),
                                ],
                                className="buttons",
                            ),
                            dcc.Graph(id="curves", figure=empty_figure("select a run"), config={"displaylogo": False}),
                        ],
                    ),
                    dcc.Tab(
                        label="Tables (ours beside the paper's)",
                        children=[
                            dcc.Dropdown(
                                id="table-name",
                                options=[
                                    {"label": p.stem if p.name != "README.md" else "index", "value": p.name}
                                    for p in tables
                                ],
                                value=tables[0].name if tables else None,
                                clearable=False,
                            ),
                            html.Div(id="table-body", className="md"),
                        ],
                    ),
                ]
            ),
        ]
    )

    @app.callback(
        [Output("runs", "rowData"), Output("runs", "selectedRows"), Output("status", "children")]
        + [Output(f"filter-{k}", "options") for k in FILTER_KEYS],
        [
            Input("tick", "n_intervals"),
            Input("select-listed", "n_clicks"),
            Input("select-seeds", "n_clicks"),
            Input("select-none", "n_clicks"),
        ]
        + [Input(f"filter-{k}", "value") for k in FILTER_KEYS],
        [
            State("runs", "rowData"),
            State("runs", "selectedRows"),
            State("runs", "virtualRowData"),
            State("url", "search"),
        ],
    )
    def update_list(_tick, _listed, _seeds, _none, *args):
        filters = dict(zip(FILTER_KEYS, args[: len(FILTER_KEYS)]))
        old_data, old_selected, visible, search = args[len(FILTER_KEYS) :]
        runs = sorted(current(), key=lambda r: (r.mtime, r.run_id), reverse=True)  # newest (training) first
        summaries = [r.summary() for r in runs]
        shown = [s for s in summaries if all(not v or s[k] in v for k, v in filters.items())]
        data = [grid_row(s) for s in shown]
        selected_ids = [row["run_id"] for row in old_selected or [] if isinstance(row, dict) and "run_id" in row]
        trigger = ctx.triggered_id
        selected_out: Any = no_update
        if trigger == "select-listed":
            selected_out = {"ids": [row["run_id"] for row in (visible if visible is not None else data)]}
        elif trigger == "select-seeds":
            rows = {s["row"] for s in summaries if s["run_id"] in set(selected_ids)}
            selected_out = {"ids": [s["run_id"] for s in shown if s["row"] in rows]}
        elif trigger == "select-none":
            selected_out = {"ids": []}
        elif (
            not old_data and not selected_ids and shown
        ):  # first load: ?run=<id>&run=<id> (a link), else the newest run
            from urllib.parse import parse_qs

            wanted = [
                i for i in parse_qs((search or "").lstrip("?")).get("run", []) if i in {s["run_id"] for s in shown}
            ]
            selected_out = {"ids": wanted or [shown[0]["run_id"]]}
        data_out = no_update if trigger == "tick" and data == old_data else data
        counts: defaultdict[str, int] = defaultdict(int)
        for s in summaries:
            counts[s["status"]] += 1
        status: list[Any] = [
            f"{len(runs)} runs ("
            + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            + f"), {len(shown)} listed; "
            f"re-read every {refresh_s:g} s, last at {time.strftime('%H:%M:%S')}. Click a run for its curves; "
            f"ctrl-click or tick several to overlay them."
        ]
        if store.skipped:
            status.append(
                html.Div(
                    f"skipped {len(store.skipped)} file(s) that are not run records: "
                    + "; ".join(f"{name}: {why}" for name, why in sorted(store.skipped.items())[:5]),
                    className="warn",
                )
            )
        options = []
        for k in FILTER_KEYS:
            values = sorted({s[k] for s in summaries if s[k] is not None}, key=lambda v: (str(type(v)), v))
            options.append([{"label": fmt(k, v), "value": v} for v in values])
        return [data_out, selected_out, status] + options

    @app.callback(
        [Output("curves", "figure"), Output("plotted", "data")],
        [Input("runs", "selectedRows"), Input("color-by", "value"), Input("tick", "n_intervals")],
        State("plotted", "data"),
    )
    def update_curves(selected, color_by, _tick, plotted):
        ids = [row["run_id"] for row in selected or [] if isinstance(row, dict) and "run_id" in row]
        by_id = {r.run_id: r for r in current()}
        runs = [by_id[i] for i in ids if i in by_id]
        version = {"ids": [r.run_id for r in runs], "mtimes": [r.mtime for r in runs], "color_by": color_by}
        if ctx.triggered_id == "tick" and version == plotted:  # nothing new to draw
            return no_update, no_update
        if not runs:
            return empty_figure("select a run in the list (several runs are overlaid)"), version
        if len(runs) == 1:
            return run_figure(runs[0]), version
        return overlay_figure(runs, color_by=color_by), version

    @app.callback(Output("table-body", "children"), Input("table-name", "value"))
    def show_table(name):
        if not name:
            return html.P(f"no tables in {paths.display(tables_dir)} (make tables writes them)")
        text = (tables_dir / name).read_text()
        text = re.sub(r"\]\(([\w.-]+)\.md\)", r"](#\1)", text)  # links between tables: the dropdown shows them
        figure = table_figure(tables_dir, name)
        return [dcc.Markdown(text)] + (
            [html.Img(src=f"/table-figures/{figure.name}", style={"maxWidth": "100%"})] if figure else []
        )

    @app.server.route("/table-figures/<name>")
    def table_figures(name):
        from flask import abort, send_from_directory

        if not name.endswith(".png"):
            abort(404)
        return send_from_directory((tables_dir.parent / "figures").resolve(), name)

    return app


class BackgroundServer:
    """The app on a werkzeug server in a background thread (scripts/check_dashboard.py and the tests)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import logging

        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

        self.httpd = make_server(host, port, app.server, threaded=True)
        self.url = f"http://{host}:{self.httpd.server_port}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.thread.join(timeout=10)
        self.httpd.server_close()


def serve(results: Path | Sequence[Path], tables_dir: Path, host: str, port: int) -> None:
    import socket

    with socket.socket() as probe:  # a port in use: one line, not Flask's traceback
        if probe.connect_ex((host if host not in ("0.0.0.0", "") else "127.0.0.1", port)) == 0:
            raise OSError(f"port {port} on {host} is in use (PORT=<another> picks another)")
    app = make_app(results, tables_dir)
    print(f"dashboard of {where(results)} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    app.run(host=host, port=port, debug=False)


# --- the static report -------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
{script}<style>{css}
table.runs {{ border-collapse: collapse; font-size: 12px; }}
table.runs th, table.runs td {{ border-bottom: 1px solid #ddd; padding: 2px 6px; text-align: left; }}
table.runs th {{ background: #f3f3f3; }}
nav a {{ margin-right: 1em; }}
.filterbar {{ font-size: 0.85em; margin: 0.3em 0; }}
.filterbar a {{ margin-right: 0.5em; }}
</style></head>
<body><nav>{nav}</nav>
<h1>{title}</h1>
{body}
</body></html>
"""


NAV_LINKS = (("index", "runs"), ("compare", "overlays"), ("tables", "tables"))


def page(title: str, body: str, root: str = "", plotly: bool = False) -> str:
    script = f'<script src="{root}plotly.min.js"></script>\n' if plotly else ""
    nav = "".join(f'<a href="{root}{target}.html">{label}</a>' for target, label in NAV_LINKS)
    return PAGE.format(title=htmlmod.escape(title), script=script, css=CSS, root=root, body=body, nav=nav)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "_"


def figure_div(fig, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False})


def runs_table(runs: Sequence[Run], root: str) -> str:
    cols = [
        (k, h) for k, h in SUMMARY_COLUMNS if k != "updated"
    ]  # mtimes would change a committed report on every checkout
    head = "".join(f"<th>{htmlmod.escape(h)}</th>" for _, h in cols)
    rows = []
    for run in runs:
        s = run.summary()
        cells = []
        for k, _ in cols:
            text = htmlmod.escape(fmt(k, s[k]))
            if k == "run_id":
                text = (
                    f'<a href="{root}runs/{slug(run.run_id)}.html">{text}</a> '
                    f'(<a href="{root}rows/{s["row"]}.html">seeds</a>)'
                )
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="runs"><tr>{head}</tr>\n' + "\n".join(rows) + "</table>"


def filter_bar(runs: Sequence[Run], root: str) -> str:
    """Links to the run list filtered by one value of each filter key (static pages have no widgets)."""
    lines = []
    for k in FILTER_KEYS:
        values = sorted({r.summary()[k] for r in runs if r.summary()[k] is not None}, key=lambda v: (str(type(v)), v))
        links = " ".join(
            f'<a href="{root}filters/{k}-{slug(fmt(k, v))}.html">{htmlmod.escape(fmt(k, v))}</a>' for v in values
        )
        lines.append(f"<div><b>{k}</b>: {links}</div>")
    return '<div class="filterbar">' + "\n".join(lines) + "</div>"


def render_tables(tables_dir: Path, out: Path) -> str:
    import markdown

    parts, index = [], []
    for p in table_files(tables_dir):
        name = p.stem if p.name != "README.md" else "index"
        text = re.sub(r"\]\(([\w.-]+)\.md\)", r"](#\1)", p.read_text())
        index.append(f'<a href="#{name}">{name}</a>')
        figure = table_figure(tables_dir, p.name)
        source = htmlmod.escape(os.path.relpath(figure.resolve(), out.resolve())) if figure else ""
        image = f'<p><img src="{source}" alt="{name}" style="max-width: 100%"></p>' if figure else ""
        parts.append(
            f'<section id="{name}" class="md">'
            + markdown.markdown(text, extensions=["tables"])
            + image
            + "</section><hr>"
        )
    if not parts:
        return f"<p>no tables in {htmlmod.escape(paths.display(tables_dir))} (make tables writes them)</p>"
    return "<p>" + " · ".join(index) + "</p>" + "\n".join(parts)


def _write(path: Path, text: str, written: set[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    written.add(path)


def write_report(
    results: Path | Sequence[Path], tables_dir: Path, out: Path, progress: bool = True, description: str | None = None
) -> dict[str, int]:
    """Every page of the dashboard as static files under ``out``; returns counts of what was written.

    ``description`` replaces the stores' paths on the index page (the rebuild test's temporary store)."""
    import plotly.offline
    from tqdm.auto import tqdm

    from snfs.report.figures_live import overlay_figure, run_figure

    folder = RunStores(result_folders(results))
    runs = folder.refresh()
    out.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()
    _write(out / "plotly.min.js", plotly.offline.get_plotlyjs(), written)
    rows: dict[str, list[Run]] = defaultdict(list)
    compare: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        s = run.summary()
        rows[s["row"]].append(run)
        compare[(s["dataset"], s["model"], s["density"])].append(run)
    jobs = len(runs) + len(rows) + len(compare)
    bar = tqdm(total=jobs, desc="report", unit="page", disable=not progress)

    for run in runs:
        s = run.summary()
        facts = "".join(
            f"<li>{htmlmod.escape(h)}: {htmlmod.escape(fmt(k, s[k]))}</li>"
            for k, h in SUMMARY_COLUMNS
            if k not in ("run_id", "updated")
        )
        body = (
            f'<p><a href="../rows/{s["row"]}.html">every seed of this table row</a></p><ul>{facts}</ul>'
            + figure_div(run_figure(run), "curves")
        )
        _write(out / "runs" / f"{slug(run.run_id)}.html", page(run.run_id, body, "../", plotly=True), written)
        bar.update(1)
    for row, members in rows.items():
        s = members[0].summary()
        title = (
            f"{s['dataset']} {s['model']} {s['algorithm']} {s['variant']} "
            f"density {fmt('density', s['density'])}: {len(members)} seed(s)"
        )
        body = runs_table(members, "../") + figure_div(overlay_figure(members, title=title), "curves")
        _write(out / "rows" / f"{row}.html", page(title, body, "../", plotly=True), written)
        bar.update(1)
    compare_links = []
    for (dataset, model, density), members in sorted(compare.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        algos = sorted({r.summary()["algorithm"] for r in members})
        name = slug(f"{dataset}-{model}-d{fmt('density', density)}")
        title = f"{dataset} {model} at density {fmt('density', density)}: {', '.join(algos)}"
        body = runs_table(members, "../") + figure_div(
            overlay_figure(members, color_by="algorithm", title=title), "curves"
        )
        _write(out / "compare" / f"{name}.html", page(title, body, "../", plotly=True), written)
        compare_links.append(
            f'<li><a href="compare/{name}.html">{htmlmod.escape(title)}</a> ({len(members)} runs)</li>'
        )
        bar.update(1)
    bar.close()

    for k in FILTER_KEYS:
        for v in {r.summary()[k] for r in runs if r.summary()[k] is not None}:
            members = [r for r in runs if r.summary()[k] == v]
            title = f"runs with {k} = {fmt(k, v)}"
            _write(
                out / "filters" / f"{k}-{slug(fmt(k, v))}.html",
                page(title, filter_bar(runs, "../") + runs_table(members, "../"), "../"),
                written,
            )

    def row_words(s: dict) -> tuple:
        return s["dataset"], s["model"], s["algorithm"], s["variant"]

    row_links = []
    for row, members in sorted(rows.items(), key=lambda kv: kv[1][0].run_id):
        s = members[0].summary()
        row_links.append(
            f'<li><a href="rows/{row}.html">{htmlmod.escape(" ".join(str(x) for x in row_words(s) if x))}'
            f" density {fmt('density', s['density'])}</a> ({len(members)} seed(s))</li>"
        )
    _write(
        out / "compare.html",
        page(
            "Overlays",
            "<h2>Algorithms at one density</h2><ul>"
            + "\n".join(compare_links)
            + "</ul><h2>Seeds of one table row</h2><ul>"
            + "\n".join(row_links)
            + "</ul>",
        ),
        written,
    )
    _write(out / "tables.html", page(f"Tables: {paths.display(tables_dir)}", render_tables(tables_dir, out)), written)
    skipped = "".join(f"<li>{htmlmod.escape(n)}: {htmlmod.escape(w)}</li>" for n, w in sorted(folder.skipped.items()))
    index = (
        f"<p>{len(runs)} runs from <code>{htmlmod.escape(description or where(results))}</code>. "
        f"Each run id opens its curves; "
        f"'seeds' overlays every seed of its table row. The live version with filters and selection: "
        f"<code>make dashboard</code>.</p>"
        + (f"<p>Skipped files:</p><ul>{skipped}</ul>" if skipped else "")
        + filter_bar(runs, "")
        + runs_table(runs, "")
    )
    _write(out / "index.html", page("snfs runs", index), written)
    # pages of runs that are no longer in the store go, so a committed report matches the store
    for sub in ("runs", "rows", "compare", "filters"):
        for old in (out / sub).glob("*.html"):
            if old not in written:
                old.unlink()
    return {"runs": len(runs), "rows": len(rows), "compare": len(compare), "files": len(written)}


# --- command line ---------------------------------------------------------------------------------


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m snfs.report.dashboard", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in (("serve", "serve the dashboard"), ("report", "write it as static HTML files")):
        s = sub.add_parser(name, help=help_text)
        s.add_argument(
            "--results",
            action="append",
            default=[],
            help="a folder of run JSONs; repeat for several (default results/runs and results/local/runs; "
            "--quick: results/quick/runs)",
        )
        s.add_argument("--tables", help="folder of tables (default results/tables; --quick: results/quick/tables)")
        s.add_argument("--quick", action="store_true", help="the QUICK=1 store (results/quick/)")
        if name == "serve":
            s.add_argument("--host", default="127.0.0.1")
            s.add_argument("--port", type=int, default=8050)
        if name == "report":
            s.add_argument("--out", help="output folder (default results/local/report; --quick: results/quick/report)")
            s.add_argument(
                "--committed",
                action="store_true",
                help="the committed report: results/report from the committed store results/runs alone",
            )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    if getattr(args, "committed", False):  # built from committed records only, into the committed folder
        results, report_dir = [paths.RUNS_DIR], paths.REPORT_DIR
    elif args.results:
        results, report_dir = [Path(r) for r in args.results], paths.LOCAL_REPORT_DIR
    elif args.quick:
        results, report_dir = [paths.QUICK_RUNS_DIR], paths.QUICK_DIR / "report"
    else:  # the committed runs and the user's own; whatever is written goes under the untracked results/local/
        results, report_dir = [paths.RUNS_DIR, paths.LOCAL_RUNS_DIR], paths.LOCAL_REPORT_DIR
    tables_dir = Path(args.tables) if args.tables else (paths.QUICK_TABLES_DIR if args.quick else paths.TABLES_DIR)
    if not any(r.is_dir() for r in results):
        print(
            f"error: results folder {results[0]} does not exist (RESULTS=<folder of run JSONs>; "
            f"`make train` fills {paths.display(paths.LOCAL_RUNS_DIR)})",
            file=sys.stderr,
        )
        return 2
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    try:
        if args.command == "serve":
            serve(results, tables_dir, args.host, args.port)
        else:
            out = Path(args.out) if args.out and not args.committed else report_dir
            counts = write_report(results, tables_dir, out)
            print(
                f"report of {counts['runs']} runs ({counts['rows']} table rows, {counts['compare']} comparisons, "
                f"{counts['files']} files) in {paths.display(out)}; open {paths.display(out / 'index.html')}"
            )
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
