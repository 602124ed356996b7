"""The paper's figures, redrawn with our runs beside its numbers (matplotlib, Agg backend, PNG).

A table gets the figure its notes file names (``figure:`` in conf/experiment/<name>.md, a kind of
``FIGURES`` with its options), saved as ``<table stem>.png``:

* ``compression`` (mnist_compression): test error vs weight %, sparse momentum (paper and ours; our
  collapsed runs marked apart) and the compression methods the paper compares with
  (results/reference/mnist_compression_*.csv);
* ``methods`` (mnist_methods, wrn28_2_methods): accuracy vs weight % per sparse method;
* ``sensitivity`` (sensitivity_momentum, sensitivity_prune_rate): error vs the hyper-parameter with
  95% confidence intervals (ours: Student's t over seeds; paper: 1.96 x its standard error);
* ``layer_density_<dataset>_<model>.png``: the per-layer density of a sparse momentum run over
  training (its history's ``layer_density``): momentum redistribution at work.

Every function takes a built ``snfs.report.tables.Table`` (or a run) and an output path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

from snfs.report import reference
from snfs.report.stats import Z975

OURS_STYLE = {"linestyle": "-", "marker": "o", "markersize": 6, "capsize": 3, "zorder": 3}
PAPER_STYLE = {"linestyle": "--", "marker": "s", "markersize": 4, "capsize": 3, "alpha": 0.8}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _nan0(x: float) -> float:
    return 0.0 if not _finite(x) else x


def _title(table, text: str) -> str:
    return ("QUICK smoke run (meaningless numbers): " if table.quick else "") + text


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return path


def _dataset(table) -> str:
    from snfs.report.tables import dataset_name

    return dataset_name(table.dataset or table.spec.dataset)


def _ours_series(rows, key: str, ci: bool = False, ok: bool = False):
    """x-sorted (x, mean, bar) of the rows that have runs; bar = se, or the 95% CI half-width;
    ``ok``: over the runs that did not collapse."""
    pick = (lambda r: r.ours_ok) if ok else (lambda r: r.ours)
    pts = sorted(
        (float(r.setting[key]), pick(r).mean, _nan0(pick(r).ci95 if ci else pick(r).se)) for r in rows if pick(r).n
    )
    return [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]


def _paper_series(rows, key: str, scale: float = 1.0):
    pts = sorted((float(r.setting[key]), r.paper.value, _nan0(r.paper.se) * scale) for r in rows if r.paper is not None)
    return [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]


def _no_runs_note(ax, rows) -> None:
    if not any(r.ours.n for r in rows):
        ax.text(
            0.5, 0.02, "ours: no runs yet", transform=ax.transAxes, ha="center", va="bottom", fontsize=8, color="gray"
        )


# --- MNIST compression -------------------------------------------------------------------------


def _collapsed_marks(ax, rows, key: str) -> None:
    """Collapsed runs (``Row.collapsed``, and diverged ones) as triangles on the top edge, each labelled with
    how many runs collapsed there: at chance they would squash every other point into the bottom of the
    panel, and averaged in they would move the curve (the table gives both means and each test error)."""
    counts = {float(r.setting[key]): len(r.collapsed) + len(getattr(r, "diverged", [])) for r in rows}
    xs = sorted(x for x, n in counts.items() if n)
    if not xs:
        return
    ax.scatter(
        xs,
        [1.0] * len(xs),
        transform=ax.get_xaxis_transform(),
        marker="^",
        s=60,
        color="black",
        clip_on=False,
        zorder=4,
        label="ours: collapsed or diverged runs (how many on the mark)",
    )
    for i, x in enumerate(xs):  # neighbouring weight %s alternate heights, so their labels do not overlap
        ax.annotate(
            str(counts[x]),
            (x, 1.0),
            xycoords=ax.get_xaxis_transform(),
            xytext=(0, -12 - 9 * (i % 2)),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )


def figure_mnist_compression(table, path: str | Path) -> Path:
    """One panel per network: every paper point from the reference CSV, ours from the table (runs that
    collapsed marked apart, not averaged into the curve)."""
    plt = _plt()
    models = list(dict.fromkeys(r.setting["model"] for r in table.rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 6.4), squeeze=False)
    markers = "v^<>PXD*hp"
    collapse = table.spec.collapsed_above is not None
    for ax, model in zip(axes[0], models):
        rows = [r for r in table.rows if r.setting["model"] == model]
        sparse = [r for r in rows if r.setting["method"] == "sparse_momentum"]
        dense = [r for r in rows if r.setting["method"] == "dense"]
        ref = reference.load(f"mnist_compression_{model}") if table.on_paper_dataset else []
        others = [x for x in ref if x["method"] not in ("sparse_momentum", "dense")]
        for i, method in enumerate(dict.fromkeys(x["method"] for x in others)):
            pts = [x for x in others if x["method"] == method]
            ax.scatter(
                [p["weights_pct"] for p in pts],
                [p["test_error_pct"] for p in pts],
                marker=markers[i % len(markers)],
                s=36,
                label=f"{method.replace('_', ' ')} ({pts[0]['source']}, paper)",
                alpha=0.8,
            )
        paper_points = sorted(
            (x["weights_pct"], x["test_error_pct"], _nan0(x["se"])) for x in ref if x["method"] == "sparse_momentum"
        )
        ax.errorbar(
            [p[0] for p in paper_points],
            [p[1] for p in paper_points],
            yerr=[p[2] for p in paper_points],
            color="tab:blue",
            label="sparse momentum (paper, ± se)",
            **PAPER_STYLE,
        )
        x, y, e = _ours_series(sparse, "weights_pct", ok=collapse)
        if x:
            ax.errorbar(
                x,
                y,
                yerr=e,
                color="tab:red",
                **OURS_STYLE,
                label="sparse momentum (ours, ± se" + (", not collapsed)" if collapse else ")"),
            )
        for x_ in ref:
            if x_["method"] == "dense":
                ax.axhline(x_["test_error_pct"], color="tab:blue", linestyle=":", linewidth=1, label="dense (paper)")
        for r in dense:
            s = r.ours_ok if collapse else r.ours
            if s.n:
                ax.axhline(s.mean, color="tab:red", linestyle=":", linewidth=1, label="dense (ours)")
        _collapsed_marks(ax, rows, "weights_pct")
        _no_runs_note(ax, sparse + dense)
        ax.set_xlabel("weights (%)")
        ax.set_ylabel("test error (%)")
        ax.set_title(
            _title(table, f"{model}, {_dataset(table)}"),
            fontsize=10,
            pad=16 if any(r.collapsed or r.diverged for r in rows) else 6,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    return _save(fig, path)


# --- sparse methods (MNIST LeNet-300-100, CIFAR-10 WRN-28-2) ----------------------------------------


def figure_methods(table, path: str | Path, title: str) -> Path:
    """Every method's accuracy vs weight %, ours and the paper's: the full range, and a zoom on the top."""
    plt = _plt()
    fig, (full, zoom) = plt.subplots(1, 2, figsize=(13.5, 4.8))
    rows = table.rows
    ys = _draw_methods(full, rows)
    _draw_methods(zoom, rows)
    for ax in (full, zoom):
        _no_runs_note(ax, rows)
        ax.set_xlabel("weights (%)")
        ax.set_ylabel(table.spec.metric)
        ax.grid(alpha=0.3)
    full.set_title(_title(table, title), fontsize=10)
    top = sorted(ys)[len(ys) // 4 :]  # the upper three quarters of all points
    if top:
        zoom.set_ylim(min(top) - 0.5, max(top) + 0.2)
        zoom.set_title("zoom (points below the axis are off the chart)", fontsize=9)
    zoom.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def _draw_methods(ax, rows) -> list[float]:
    """Draw each method's paper and our series on ``ax``; return the plotted y values."""
    colors = {
        "sparse_momentum": "tab:red",
        "dsr": "tab:green",
        "set": "tab:orange",
        "deepr": "tab:purple",
        "static": "tab:gray",
        "rigl": "tab:brown",
        "dense": "black",
        "deepr_dsr_code": "tab:pink",
    }
    drawn_paper: set = set()  # (x, y) points; a variant shares another method's published numbers: draw once
    ys: list[float] = []
    for method in dict.fromkeys(r.setting["method"] for r in rows):
        mrows = [r for r in rows if r.setting["method"] == method]
        color = colors.get(method)
        if method == "dense":
            for r in mrows:
                if r.paper:
                    ax.axhline(r.paper.value, color="gray", linestyle=":", linewidth=1, label="dense (paper)")
                    ys.append(r.paper.value)
                if r.ours.n:
                    ax.axhline(r.ours.mean, color="black", linestyle=":", linewidth=1, label="dense (ours)")
                    ys.append(r.ours.mean)
            continue
        x, y, e = _paper_series(mrows, "weights_pct")
        if x and not set(zip(x, y)) <= drawn_paper:
            drawn_paper.update(zip(x, y))
            ax.errorbar(x, y, yerr=e, color=color, label=f"{method} (paper)", **PAPER_STYLE)
            ys.extend(y)
        x, y, e = _ours_series(mrows, "weights_pct")
        if x:
            ax.errorbar(x, y, yerr=e, color=color, label=f"{method} (ours, ± se)", **OURS_STYLE)
            ys.extend(y)
    return ys


# --- sensitivity --------------------------------------------------------------------------------


def _sensitivity(table, path, x_key: str, series_key: str, x_label: str, what: str) -> Path:
    plt = _plt()
    models = list(dict.fromkeys(r.setting["model"] for r in table.rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.4), squeeze=False)
    palette = ["tab:red", "tab:blue", "tab:green", "tab:purple"]
    for ax, model in zip(axes[0], models):
        rows = [r for r in table.rows if r.setting["model"] == model]
        for i, series in enumerate(dict.fromkeys(r.setting[series_key] for r in rows)):
            srows = [r for r in rows if r.setting[series_key] == series]
            color = palette[i % len(palette)]
            x, y, e = _paper_series(srows, x_key, scale=Z975)
            if x:
                ax.errorbar(x, y, yerr=e, color=color, label=f"{series} (paper, 95% CI)", **PAPER_STYLE)
            x, y, e = _ours_series(srows, x_key, ci=True)
            if x:
                ax.errorbar(x, y, yerr=e, color=color, label=f"{series} (ours, 95% CI)", **OURS_STYLE)
        _no_runs_note(ax, rows)
        ax.set_xlabel(x_label)
        ax.set_ylabel("test error (%)")
        ax.set_title(_title(table, f"{model}, {_dataset(table)}: {what}"), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


# --- per-layer density over training ---------------------------------------------------------------


def figure_layer_density(run: dict, path: str | Path, quick: bool = False) -> Path:
    """Per-layer density after each epoch's mask update, for one sparse momentum run."""
    from snfs.report.store import history

    plt = _plt()
    hist = [h for h in history(run) if h.get("layer_density")]
    if not hist:
        raise ValueError(f"run {run.get('run_id')} has no per-epoch layer_density history")
    layers = list(hist[0]["layer_density"])
    epochs = [h["epoch"] for h in hist]
    fig, ax = plt.subplots(figsize=(7.5 + (3.5 if len(layers) > 12 else 2.0) * (len(layers) <= 24), 4.6))
    cmap = plt.get_cmap("viridis")
    for i, layer in enumerate(layers):
        ax.plot(
            epochs,
            [100 * h["layer_density"].get(layer, math.nan) for h in hist],
            marker="." if len(epochs) < 30 else None,
            color=cmap(i / max(1, len(layers) - 1)),
            label=layer,
            linewidth=1.2,
        )
    overall = [100 * h["density"] for h in hist if "density" in h]
    if len(overall) == len(epochs):
        ax.plot(epochs, overall, color="black", linestyle="--", linewidth=1.5, label="all sparse layers")
    ax.set_xlabel("epoch (densities after that epoch's mask update)")
    ax.set_ylabel("weights kept (%)")
    cfg = run.get("config") or {}
    ax.set_title(
        ("QUICK smoke run: " if quick else "")
        + f"{run.get('model')} on {run.get('dataset')}, sparse momentum at {100 * float(run.get('density', 0)):g}% "
        f"weights, seed {run.get('seed')}\nper-layer density over training (momentum redistribution)",
        fontsize=9,
    )
    if cfg.get("sparse", {}).get("redistribution") not in (None, "momentum"):
        ax.text(
            0.01,
            0.98,
            f"redistribution={cfg['sparse']['redistribution']}",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
        )
    ax.grid(alpha=0.3, which="both")
    values = [v for h in hist for v in h["layer_density"].values() if v and v > 0]
    if values and max(values) / min(values) > 20:
        ax.set_yscale("log")
    if len(layers) <= 24:
        ax.legend(
            fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=2 if len(layers) > 12 else 1, frameon=False
        )
    return _save(fig, path)


def pick_layer_density_runs(runs: Iterable[dict]) -> list[dict]:
    """One sparse momentum run per (dataset, model): seed 17 first, then density nearest the paper's
    default 5%, then the longest, then the run id (deterministic)."""
    best: dict[tuple, dict] = {}

    def rank(r):
        return (
            r.get("seed") != 17,
            abs(float(r.get("density") or 0) - 0.05),
            -int(r.get("epochs") or 0),
            str(r.get("run_id")),
        )

    for r in runs:
        cfg = r.get("config") or {}
        sparse = cfg.get("sparse", {})
        if (
            r.get("algorithm") != "momentum"
            or sparse.get("redistribution", "momentum") != "momentum"
            or sparse.get("growth", "momentum") != "momentum"
        ):
            continue
        key = (r.get("dataset"), r.get("model"))
        if key not in best or rank(r) < rank(best[key]):
            best[key] = r
    return [best[k] for k in sorted(best, key=str)]


# a table's `figure:` (conf/experiment/<name>.md): kind -> how to draw it, given the table, the path and
# the options beside the kind
FIGURES: dict[str, Callable[..., Path]] = {
    "compression": lambda t, p: figure_mnist_compression(t, p),
    "methods": lambda t, p, title: figure_methods(t, p, title.format(dataset=_dataset(t))),
    "sensitivity": lambda t, p, x, series, x_label, what: _sensitivity(t, p, x, series, x_label, what),
}


def draw_table_figure(table, out_dir: str | Path) -> Path | None:
    """``<out_dir>/<table stem>.png`` as the table's ``figure:`` says; None for a table without one."""
    options = dict(table.spec.figure)
    kind = options.pop("kind", None)
    if kind is None:
        return None
    if kind not in FIGURES:
        raise ValueError(
            f"{table.spec.name}: figure kind {kind!r} is not a valid choice; valid choices: {', '.join(FIGURES)}"
        )
    return FIGURES[kind](table, Path(out_dir) / f"{table.stem}.png", **options)


def draw_layer_density_figures(runs: Iterable[dict], out_dir: str | Path, quick: bool = False) -> list[Path]:
    out = []
    for run in pick_layer_density_runs(runs):
        name = f"layer_density_{run.get('dataset')}_{run.get('model')}.png"
        try:
            out.append(figure_layer_density(run, Path(out_dir) / name, quick=quick))
        except ValueError:
            continue
    return out
