"""Plotly figures of logged runs, shared by the dashboard (``make dashboard``) and the static report.

``run_figure`` draws one run: losses, errors, learning rate, prune rate (or the algorithm's own
schedule: SET's zeta, RigL's drop fraction, DSR's target, DeepR's temperature), per-layer density
and the weights pruned/regrown at each mask update, all against the epoch. ``overlay_figure``
draws several runs on shared panels, one line per run, coloured by a chosen key.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from snfs.report.runlog import Run

SCHEDULE_LABELS = {
    "prune_rate": "prune rate",
    "zeta": "prune rate (SET zeta)",
    "drop_fraction": "drop fraction (RigL)",
    "target_prune": "target pruned (DSR)",
    "temperature": "temperature (DeepR)",
    "threshold": "threshold (DSR)",
}
PALETTE = qualitative.Plotly + qualitative.D3 + qualitative.Dark24


_AXIS = dict(gridcolor="#e5ecf6", linecolor="#e5ecf6", zerolinecolor="#e5ecf6", automargin=True)
# A small template: plotly_white's own is about 6 kB in every figure, a quarter of a static run page.
TEMPLATE = go.layout.Template(
    layout=dict(
        paper_bgcolor="white",
        plot_bgcolor="white",
        font=dict(color="#2a3f5f"),
        colorway=qualitative.Plotly,
        xaxis=_AXIS,
        yaxis=_AXIS,
    )
)


def _xy(series: tuple[list[float], list[float]]) -> dict:
    """x and y as float32 arrays, which Plotly stores base64-encoded: a static page much smaller than lists."""
    x, y = series
    return {"x": np.asarray(x, dtype=np.float32), "y": np.asarray(y, dtype=np.float32)}


def _finish(fig: go.Figure, title: str, height: int, uirevision: str) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0.01, font=dict(size=15)),
        height=height,
        template=TEMPLATE,
        margin=dict(l=60, r=20, t=70, b=40),
        legend=dict(font=dict(size=11)),
        uirevision=uirevision,
        hovermode="x unified",
    )
    fig.update_xaxes(title_text="epoch", title_standoff=4)
    fig.update_traces(hovertemplate="%{y:.5g}", selector=lambda t: t.hovertemplate is None)
    return fig


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=14), x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(template=TEMPLATE, height=300, xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


def run_figure(run: Run) -> go.Figure:
    """One run, six panels against the epoch."""
    schedule = run.schedule_key()
    fig = make_subplots(
        rows=3,
        cols=2,
        vertical_spacing=0.09,
        horizontal_spacing=0.08,
        subplot_titles=(
            "loss",
            "error (%)",
            "learning rate",
            SCHEDULE_LABELS.get(schedule, "prune rate") if schedule else "prune rate (not logged)",
            "density per layer",
            "weights pruned / regrown at each mask update",
        ),
    )
    for key, name, color, dash in (
        ("train_loss", "train loss", "#1f77b4", None),
        ("val_loss", "val loss", "#ff7f0e", None),
    ):
        xy = _xy(run.series(key))
        fig.add_trace(
            go.Scatter(**xy, name=name, mode="lines", line=dict(color=color, dash=dash), legendgroup="loss"), 1, 1
        )
    for key, name, color in (("train_error", "train error", "#1f77b4"), ("val_error", "val error", "#ff7f0e")):
        xy = _xy(run.series(key))
        fig.add_trace(go.Scatter(**xy, name=name, mode="lines", line=dict(color=color), legendgroup="error"), 1, 2)
    test = run.summary()["test_error"]
    if test is not None and run.history:
        last = run.series("train_loss")[0] or [len(run.history)]
        fig.add_trace(
            go.Scatter(
                x=[last[-1]],
                y=[test],
                name=f"test error {test:.2f}",
                mode="markers",
                marker=dict(color="#d62728", size=9, symbol="diamond"),
            ),
            1,
            2,
        )
    xy = _xy(run.series("lr"))
    fig.add_trace(go.Scatter(**xy, name="lr", mode="lines", line=dict(color="#2ca02c", shape="hv")), 2, 1)
    if schedule:
        xy = _xy(run.series(schedule))
        fig.add_trace(
            go.Scatter(**xy, name=SCHEDULE_LABELS.get(schedule, schedule), mode="lines", line=dict(color="#9467bd")),
            2,
            2,
        )
    for i, layer in enumerate(run.layers()):
        xy = _xy(run.layer_series(layer))
        fig.add_trace(
            go.Scatter(
                **xy, name=layer, mode="lines", line=dict(color=PALETTE[i % len(PALETTE)]), legendgroup="layers"
            ),
            3,
            1,
        )
    xy = _xy(run.series("density"))
    fig.add_trace(go.Scatter(**xy, name="all sparse layers", mode="lines", line=dict(color="black", dash="dash")), 3, 1)
    for key, color in (("pruned", "#d62728"), ("regrown", "#2ca02c")):
        xy = _xy(run.series(key))
        fig.add_trace(go.Bar(**xy, name=key, marker_color=color, opacity=0.75), 3, 2)
    fig.update_layout(barmode="group")
    for row, col in ((1, 1), (2, 1)):  # losses and lr span decades (errors stay linear: 0% has no log)
        fig.update_yaxes(type="log", row=row, col=col)
    fig.update_yaxes(range=[0, 1.05], row=3, col=1)  # a layer's density is a fraction; constant lines need a range
    return _finish(fig, f"{run.run_id} ({run.status}, {len(run.history)} epochs)", 980, run.run_id)


LABEL_KEYS = ("dataset", "model", "algorithm", "variant", "density", "seed")


def labels(runs: Sequence[Run]) -> dict[str, str]:
    """A short legend label per run: the summary fields that differ between the runs."""
    varying = [k for k in LABEL_KEYS if len({str(r.summary()[k]) for r in runs}) > 1]
    if not varying:
        return {r.run_id: r.run_id for r in runs}
    out = {}
    for r in runs:
        s = r.summary()
        parts = [
            f"d={s[k]:g}" if k == "density" and s[k] is not None else (f"seed {s[k]}" if k == "seed" else str(s[k]))
            for k in varying
            if s[k] not in (None, "")
        ]
        out[r.run_id] = " ".join(parts) or r.run_id
    if len(set(out.values())) < len(out):  # two runs of the same fields (e.g. variants): fall back to ids
        return {r.run_id: r.run_id for r in runs}
    return out


FRACTION_KEYS = ("prune_rate", "zeta", "drop_fraction")
OVERLAY_PANELS = (
    ("val_error", "validation error (%)"),
    ("train_loss", "training loss"),
    ("lr", "learning rate"),
    ("_schedule", "prune rate (SET: zeta, RigL: drop fraction)"),
    ("density", "density (sparse layers)"),
    ("pruned", "weights pruned per mask update"),
)


def overlay_figure(runs: Sequence[Run], color_by: str = "run", title: str | None = None) -> go.Figure:
    """Several runs on six shared panels; one colour per run, or per value of ``color_by`` (e.g. algorithm)."""
    if not runs:
        return empty_figure("no runs selected")
    names = labels(runs)
    groups: dict[str, str] = {}
    fig = make_subplots(
        rows=3, cols=2, vertical_spacing=0.09, horizontal_spacing=0.08, subplot_titles=[t for _, t in OVERLAY_PANELS]
    )
    for i, run in enumerate(runs):
        group = run.run_id if color_by == "run" else str(run.summary().get(color_by))
        color = groups.setdefault(group, PALETTE[len(groups) % len(PALETTE)])
        legend_name = names[run.run_id] if color_by == "run" else group
        first_of_group = color_by == "run" or sum(1 for r in runs[:i] if str(r.summary().get(color_by)) == group) == 0
        for p, (key, _) in enumerate(OVERLAY_PANELS):
            if key == "_schedule":  # fractions only: DSR's target count or DeepR's temperature would swamp the axis
                key = next((k for k in FRACTION_KEYS if run.series(k)[0]), "prune_rate")
            xy = _xy(run.series(key))
            fig.add_trace(
                go.Scatter(
                    **xy,
                    mode="lines",
                    line=dict(color=color, width=1.6),
                    name=legend_name,
                    legendgroup=group,
                    showlegend=first_of_group and p == 0,
                    hovertemplate=f"{names[run.run_id]}: %{{y:.4g}}<extra></extra>",
                ),
                p // 2 + 1,
                p % 2 + 1,
            )
    for row, col in ((1, 2), (2, 1)):  # training loss and lr span decades (errors stay linear: 0% has no log)
        fig.update_yaxes(type="log", row=row, col=col)
    densest = max((y for r in runs for y in r.series("density")[1]), default=1.0)
    fig.update_yaxes(range=[0, min(1.05, densest * 1.25) or 1.0], row=3, col=1)  # constant densities: a range from 0
    return _finish(fig, title or f"{len(runs)} runs overlaid", 980, "|".join(r.run_id for r in runs))
