"""One table per experiment preset: our runs (mean +/- standard error, n) beside the paper's number.

A table is ``conf/experiment/<name>.yaml`` (the Hydra preset; its grid, plus ``# @block:`` lines,
``snfs.report.sweep.preset_blocks``) and ``conf/experiment/<name>.md`` (front matter: columns,
paper, metric, figure, cost; then notes copied into the table). Every grid point becomes a row by
its ``columns`` (seeds of one setting share a row) and its run is looked up in the results store
(``snfs.report.store.RunIndex``), so a setting without runs shows n = 0. A preset run on another
dataset is its own table ``<name>-<dataset>``, without paper numbers. ``build_table`` makes a
``Table``; ``write_table`` writes ``<stem>.md`` and ``.csv`` when their content changed. Every key:
docs/tables.md.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from snfs.report.paths import EXPERIMENT_DIR
from snfs.report.reference import PAPER_LOOKUPS, Paper, csv_paper
from snfs.report.stats import Summary, summarise
from snfs.report.store import run_machine
from snfs.report.sweep import Composer, Expansion, Job, RunGroup, expand, preset_blocks, preset_dataset
from snfs.results import is_dense

NAN = math.nan

# how titles and figures name a dataset (a dataset config's `name` otherwise)
DATASET_NAMES = {
    "mnist": "MNIST",
    "kmnist": "KMNIST",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "imagenet": "ImageNet",
    "fake": "generated data",
}


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


@dataclass
class TableSpec:
    name: str
    title: str  # may name {dataset}
    groups: tuple[RunGroup, ...]
    columns: tuple[tuple[str, str], ...]  # (setting key, header)
    rows_of: Callable[[dict], list[dict]]  # composed job config -> the setting(s) it belongs to
    paper_of: Callable[[dict], Paper | None]  # setting -> the paper's number
    accuracy: bool = False  # the paper reports accuracy: ours = 100 - test error
    needs: tuple[str, ...] = ()  # "gpu" and/or dataset names the runs need
    cost: str = ""  # what a full run costs, for the status line
    digits: int = 2
    hooks: tuple[Callable[[list[Row]], None], ...] = ()  # add columns (row.extra) once the rows have runs
    notes: str = ""  # markdown, from conf/experiment/<name>.md
    dataset: str = ""  # the dataset the preset trains on (the paper's)
    collapsed_above: float | None = None  # test error (%) above which a run counts as collapsed
    figure: dict = field(default_factory=dict)  # snfs.report.figures: {kind: ..., options}
    layer_density: bool = False  # `run` draws the per-layer density figures too
    help: str = ""  # one line for `make help`

    @property
    def metric(self) -> str:
        return "test accuracy (%)" if self.accuracy else "test error (%)"

    def title_on(self, dataset: str = "") -> str:
        return self.title.format(dataset=dataset_name(dataset or self.dataset))


@dataclass
class Row:
    setting: dict
    jobs: list[Job] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    ours: Summary = Summary(0, NAN, NAN)
    paper: Paper | None = None
    extra: dict = field(default_factory=dict)
    collapsed: list[float] = field(default_factory=list)  # test errors of the collapsed runs
    ours_ok: Summary = Summary(0, NAN, NAN)  # ours over the runs that did not collapse
    diverged: list[dict] = field(default_factory=list)  # runs whose loss became non-finite: no test error

    @property
    def outcomes(self) -> list[dict]:
        """Every run of the row: finished and diverged."""
        return self.runs + self.diverged

    @property
    def diff(self) -> float:
        if self.paper is None or math.isnan(self.ours.mean) or math.isnan(self.paper.value):
            return NAN
        return self.ours.mean - self.paper.value

    @property
    def n_expected(self) -> int:
        return len({j.run_id for j in self.jobs})


@dataclass
class Table:
    spec: TableSpec
    rows: list[Row]
    expansions: list[Expansion]
    source: str
    quick: bool = False
    problem: str = ""  # why the grid could not be composed as configured, if so
    lacking: tuple[str, ...] = ()  # what the runs need and this machine lacks
    built_at_commit: str = ""
    matched_ids: set = field(default_factory=set)  # run ids of the grid points that have a run
    dataset: str = ""  # the dataset of this table's runs ("" = the preset's own)

    @property
    def on_paper_dataset(self) -> bool:
        return not self.dataset or self.dataset == self.spec.dataset

    @property
    def stem(self) -> str:
        """File name: ``<name>`` on the preset's dataset, ``<name>-<dataset>`` on another."""
        return self.spec.name if self.on_paper_dataset else f"{self.spec.name}-{self.dataset}"

    @property
    def title(self) -> str:
        return self.spec.title_on(self.dataset)

    @property
    def jobs(self) -> dict[str, Job]:
        return {j.run_id: j for e in self.expansions for j in e.jobs}

    @property
    def runs(self) -> list[dict]:
        """The finished runs of the table."""
        return self._unique(lambda row: row.runs)

    @property
    def outcomes(self) -> list[dict]:
        """The finished and the diverged runs of the table."""
        return self._unique(lambda row: row.outcomes)

    def _unique(self, of: Callable[[Row], list[dict]]) -> list[dict]:
        seen: dict[int, dict] = {}
        for row in self.rows:
            for r in of(row):
                seen[id(r)] = r
        return list(seen.values())

    @property
    def done(self) -> int:
        """Grid points (distinct run ids) that have a run in the store."""
        return len(self.matched_ids & set(self.jobs))

    @property
    def complete(self) -> bool:
        return not self.problem and self.done == len(self.jobs) > 0

    @property
    def status(self) -> str:
        """One word for the index and the CSV; a QUICK table is a smoke test, never a reproduction."""
        if self.quick:
            return "smoke test (QUICK)"
        return "reproduced" if self.complete else "not yet reproduced"


# --- row keys: how a run's config becomes a table column ----------------------------------------


def method_of(cfg: dict) -> str:
    """The row name of a run's method: the sparse config's ``label`` if it has one (a variant), else its name."""
    name = cfg["sparse"].get("label") or cfg["sparse"]["name"]
    return "sparse_momentum" if name == "momentum" else name


def weights_pct(cfg: dict) -> float:
    return 100.0 if is_dense(cfg["sparse"]["name"], cfg.get("density")) else round(float(cfg["density"]) * 100.0, 6)


def _ablation_variant(cfg: dict) -> str:
    red, growth = cfg["sparse"].get("redistribution"), cfg["sparse"].get("growth")
    if (red, growth) == ("momentum", "momentum"):
        return "full"
    if (red, growth) == ("none", "momentum"):
        return "no_redistribution"
    if (red, growth) == ("momentum", "random"):
        return "random_growth"
    return f"redistribution={red}, growth={growth}"


def _imagenet_setting(cfg: dict) -> list[str]:
    if cfg["sparse"]["name"] == "dense":  # one dense run is the baseline of both settings
        return ["partially_dense", "fully_sparse"]
    return ["partially_dense" if cfg["model"].get("partially_dense") else "fully_sparse"]


# a column is one of these names, or a dotted config key (``optim.momentum``: column ``momentum``)
COLUMNS: dict[str, Callable[[dict], object]] = {
    "model": lambda c: c["model"]["name"],
    "method": method_of,
    "weights_pct": weights_pct,
    "variant": _ablation_variant,
    "setting": _imagenet_setting,  # a list: the run belongs to several rows
}


def _config_value(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"column {dotted!r}: the config has no key {dotted!r}")
        node = node[part]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else node


def column_key(column: str) -> str:
    return column.rsplit(".", 1)[-1]


def column_header(key: str) -> str:
    return key.replace("_pct", " %").replace("_", " ")


def make_rows_of(columns: Sequence[str]) -> Callable[[dict], list[dict]]:
    def rows_of(cfg: dict) -> list[dict]:
        values = []
        for col in columns:
            v = COLUMNS[col](cfg) if col in COLUMNS else _config_value(cfg, col)
            values.append(v if isinstance(v, list) else [v])
        return [dict(zip((column_key(c) for c in columns), combo)) for combo in itertools.product(*values)]

    return rows_of


# --- hooks: columns computed from a row's runs or from other rows ---------------------------------


def _mean_extra(runs: list[dict], fn: Callable[[dict], dict]) -> dict:
    values: dict[str, list[float]] = OrderedDict()
    for r in runs:
        for k, v in fn(r).items():
            values.setdefault(k, []).append(v)
    return {k: summarise(v).mean for k, v in values.items()}


def flop_speedups_hook(rows: list[Row]) -> None:
    """FLOP ratios from each run's per-layer densities, and the paper's timed estimate where runs made it."""
    from snfs.report.flops import flop_speedups, timed_speedups

    for row in rows:
        out = _mean_extra(row.runs, flop_speedups)
        timed = _mean_extra(row.runs, timed_speedups)
        if any(not math.isnan(v) for v in timed.values()):
            out.update(timed)
        row.extra.update(
            {
                "inference FLOP speedup": out.get("inference_flop_speedup", NAN),
                "training FLOP speedup": out.get("training_flop_speedup", NAN),
                **(
                    {
                        "est. speedup, sparse conv (paper's method)": out["speedup_sparse_conv_estimate"],
                        "est. speedup, dense conv (paper's method)": out["speedup_dense_conv_estimate"],
                    }
                    if "speedup_sparse_conv_estimate" in out
                    else {}
                ),
            }
        )


def measured_speedup_post(rows: list[Row]) -> None:
    """Measured wall-clock speedup: the dense row's median epoch time / this row's, runs of one machine only.

    Unlike the FLOP ratios and the paper's estimate this is a stopwatch reading of whole training
    epochs as they ran (``median_epoch_time_s`` of each run, under its ``execution``), so it is only
    comparable between runs of the same machine; a row with no machine in common gets no number.
    """

    def times(row: Row) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for r in row.runs:
            if r.get("median_epoch_time_s"):
                out.setdefault(str(r.get("machine")), []).append(float(r["median_epoch_time_s"]))
        return out

    dense = {r.setting.get("model"): times(r) for r in rows if r.setting.get("method") == "dense"}
    for row in rows:
        base, mine = dense.get(row.setting.get("model"), {}), times(row)
        ratios = [summarise(base[m]).mean / summarise(mine[m]).mean for m in mine if m in base]
        row.extra["wall-clock speedup (measured)"] = summarise(ratios).mean if ratios else NAN


def _ablation_post(rows: list[Row]) -> None:
    full = {r.setting["model"]: r.ours.mean for r in rows if r.setting["variant"] == "full"}
    for r in rows:
        base = full.get(r.setting["model"], NAN)
        r.extra["ours − full"] = r.ours.mean - base if r.setting["variant"] != "full" else NAN


HOOKS: dict[str, Callable[[list[Row]], None]] = {
    "flop_speedups": flop_speedups_hook,
    "measured_speedup": measured_speedup_post,
    "ablation_diff": _ablation_post,
}


# --- the specs: conf/experiment/<name>.yaml + <name>.md -------------------------------------------

FRONT_MATTER_KEYS = {
    "title",
    "columns",
    "metric",
    "digits",
    "needs",
    "cost",
    "paper",
    "hooks",
    "collapsed_above",
    "figure",
    "layer_density",
    "help",
}


def _choice(value, choices, key: str, path: Path):
    if value not in choices:
        raise ValueError(
            f"{path}: {key}: {value!r} is not a valid choice; valid choices: {', '.join(map(str, choices))}"
        )
    return value


def read_notes_file(path: Path) -> tuple[dict, str]:
    """(front matter, markdown body) of a table's notes file."""
    text = path.read_text()
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise ValueError(f"{path}: a table's notes file starts with a YAML front matter between two '---' lines")
    head, body = text[4:].split("\n---\n", 1)
    meta = yaml.safe_load(head) or {}
    unknown = sorted(set(meta) - FRONT_MATTER_KEYS)
    if unknown:
        raise ValueError(
            f"{path}: {unknown[0]} is not a front matter key; valid keys: {', '.join(sorted(FRONT_MATTER_KEYS))}"
        )
    return meta, body.strip("\n")


def load_spec(name: str, experiment_dir: str | Path = EXPERIMENT_DIR) -> TableSpec:
    """The table of preset ``name``: ``<name>.yaml`` (its grid) and ``<name>.md`` (how to show it)."""
    preset = Path(experiment_dir) / f"{name}.yaml"
    notes = preset.with_suffix(".md")
    if not notes.is_file():
        raise ValueError(
            f"{preset} has no notes file {notes.name} beside it (a table is a preset and its notes file; "
            "see README, Add a table)"
        )
    meta, body = read_notes_file(notes)
    for key in ("title", "columns"):
        if key not in meta:
            raise ValueError(f"{notes}: the front matter has no {key!r}")
    columns = [str(c) for c in meta["columns"]]
    for col in columns:
        if col not in COLUMNS and "." not in col:
            raise ValueError(
                f"{notes}: column {col!r} is not a valid choice; valid choices: {', '.join(COLUMNS)}, "
                "or a dotted config key (optim.momentum)"
            )
    paper = meta.get("paper")
    paper_of: Callable[[dict], Paper | None]
    if paper is None:
        paper_of = lambda s: None  # noqa: E731 - no paper numbers for this table
    elif isinstance(paper, str):
        paper_of = PAPER_LOOKUPS[_choice(paper, list(PAPER_LOOKUPS), "paper", notes)]
    else:
        missing = {"csv", "match", "value"} - set(paper)
        if missing:
            raise ValueError(
                f"{notes}: paper needs {', '.join(sorted(missing))} (or the name of a lookup: "
                f"{', '.join(PAPER_LOOKUPS)})"
            )
        paper_of = csv_paper(paper["csv"], paper["match"], paper["value"], paper.get("se"), paper.get("source", ""))
    metric = _choice(meta.get("metric", "error"), ["error", "accuracy"], "metric", notes)
    hooks = tuple(HOOKS[_choice(h, list(HOOKS), "hooks", notes)] for h in meta.get("hooks", []))
    figure = meta.get("figure") or {}
    return TableSpec(
        name=name,
        title=str(meta["title"]),
        groups=tuple(RunGroup(name, tuple(block)) for block in preset_blocks(preset)),
        columns=tuple((column_key(c), column_header(column_key(c))) for c in columns),
        rows_of=make_rows_of(columns),
        paper_of=paper_of,
        accuracy=metric == "accuracy",
        needs=tuple(meta.get("needs", [])),
        cost=str(meta.get("cost", "")),
        digits=int(meta.get("digits", 2)),
        hooks=hooks,
        notes=body,
        dataset=preset_dataset(name, experiment_dir=experiment_dir),
        collapsed_above=meta.get("collapsed_above"),
        figure={"kind": figure} if isinstance(figure, str) else dict(figure),
        layer_density=bool(meta.get("layer_density", False)),
        help=str(meta.get("help", "")),
    )


def load_specs(experiment_dir: str | Path = EXPERIMENT_DIR) -> OrderedDict[str, TableSpec]:
    """Every preset's table, in the order of ``conf/experiment/*.yaml`` names."""
    names = sorted(p.stem for p in Path(experiment_dir).glob("*.yaml"))
    return OrderedDict((n, load_spec(n, experiment_dir)) for n in names)


class TableSpecs(Mapping[str, TableSpec]):
    """Every preset's table (``load_specs``), read on first use: importing this module reads no file."""

    def __init__(self, experiment_dir: str | Path = EXPERIMENT_DIR):
        self.experiment_dir = Path(experiment_dir)
        self._specs: OrderedDict[str, TableSpec] | None = None

    def _loaded(self) -> OrderedDict[str, TableSpec]:
        if self._specs is None:
            self._specs = load_specs(self.experiment_dir)
        return self._specs

    def __getitem__(self, name: str) -> TableSpec:
        return self._loaded()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


TABLES = TableSpecs()


# --- building -----------------------------------------------------------------------------------


def lacking(needs: Sequence[str], data_root: str | Path) -> tuple[str, ...]:
    """The needs this machine does not meet: "a GPU", "<dataset> data under data.root"."""
    from snfs.report.quick import real_data_present

    out = []
    for need in needs:
        if need == "gpu":
            import torch

            if not torch.cuda.is_available():
                out.append("a GPU")
        elif not real_data_present(need, data_root):
            out.append(f"{need} data under data.root ({data_root})")
    return tuple(out)


def build_table(
    spec: TableSpec,
    index,
    composer: Composer,
    extra_overrides: Callable[[RunGroup], list[str]] | None = None,
    quick: bool = False,
    data_root: str | Path = "data",
    fallback_overrides: Callable[[RunGroup], list[str]] | None = None,
    dataset: str = "",
) -> Table:
    """Expand the spec's presets, match their runs in ``index``, summarise each row.

    When a preset cannot be composed as configured (e.g. a dataset config absent from this
    checkout), ``fallback_overrides(group)`` (e.g. generated data) is tried to list the rows, and
    the table says why it has no runs. ``dataset``: the dataset the runs were asked for when it is
    not the preset's own (``extra_overrides`` carries the ``dataset=`` override itself); such a
    table has no paper numbers.
    """
    from snfs.results import git_commit

    expansions, problem = [], ""
    for group in spec.groups:
        # the group's own overrides come last: they define the group (e.g. the dense baseline row)
        overrides = list(extra_overrides(group) if extra_overrides else []) + list(group.overrides)
        try:
            expansions.append(expand(composer, group.preset, overrides, group=group))
        except Exception as exc:  # noqa: BLE001 - reported in the table
            problem = f"the preset does not compose here ({type(exc).__name__}: {exc})".replace("\n", " ")
            if fallback_overrides is None:
                raise
            expansions.append(expand(composer, group.preset, overrides + fallback_overrides(group), group=group))
    table = Table(
        spec=spec,
        rows=[],
        expansions=expansions,
        source=getattr(index, "description", ""),
        quick=quick,
        problem=problem,
        lacking=lacking(spec.needs, data_root),
        built_at_commit=git_commit(),
        dataset="" if dataset == spec.dataset else dataset,
    )
    rows: OrderedDict[tuple, Row] = OrderedDict()
    for exp in expansions:
        for job in exp.jobs:
            for setting in spec.rows_of(job.config):
                key = tuple(setting[c] for c, _ in spec.columns)
                rows.setdefault(key, Row(setting=setting)).jobs.append(job)
    for row in rows.values():
        matched = [None if problem else index.match(j.run_id, j.config) for j in row.jobs]
        diverged = [
            None if problem or m is not None else index.match_diverged(j.run_id, j.config)
            for j, m in zip(row.jobs, matched)
        ]
        table.matched_ids.update(
            j.run_id for j, r, dv in zip(row.jobs, matched, diverged) if r is not None or dv is not None
        )
        row.runs = list({id(r): r for r in matched if r is not None}.values())
        row.diverged = list({id(r): r for r in diverged if r is not None}.values())
        errors = [float(r["test_error"]) for r in row.runs if r.get("test_error") is not None]
        as_metric = (lambda es: [100.0 - e for e in es]) if spec.accuracy else list
        row.ours = summarise(as_metric(errors))
        if spec.collapsed_above is not None:
            row.collapsed = [e for e in errors if e > spec.collapsed_above]
            row.ours_ok = summarise(as_metric([e for e in errors if e <= spec.collapsed_above]))
        row.paper = spec.paper_of(row.setting) if table.on_paper_dataset else None
    table.rows = list(rows.values())
    for hook in spec.hooks:
        hook(table.rows)
    return table


# --- writing ------------------------------------------------------------------------------------

BUILD_LINE = "- Table built by `scripts/reproduce.py` at commit"


def _num(x: float, digits: int) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _pm(mean: float, se: float, digits: int) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" + ("" if math.isnan(se) else f" ± {se:.{digits}f}")


def _setting_cell(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def short_commit(commit) -> str:
    commit = str(commit or "unknown")
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def _counter_line(counter: Counter, fmt=str) -> str:
    return ", ".join(f"{fmt(k)} ({n} run{'s' if n != 1 else ''})" for k, n in counter.most_common()) or "none"


def status_line(table: Table) -> str:
    total, done = len(table.jobs), table.done
    if table.quick:
        return (
            f"**smoke test** (QUICK): {done} of {total} cut-down runs are in the QUICK store; they check the "
            "pipeline and reproduce nothing."
        )
    if table.complete:
        return f"**reproduced**: all {total} runs of the grid are in the results store."
    why = []
    if table.problem:
        why.append(table.problem)
    if table.lacking:
        why.append("its runs need " + " and ".join(table.lacking) + ", which this machine lacks")
    return (
        f"**not yet reproduced**: {done} of {total} runs are in the results store"
        + (f"; {'; '.join(why)}" if why else "")
        + "."
    )


def commands(table: Table) -> list[str]:
    name = table.spec.name
    on = [] if table.on_paper_dataset else [f"dataset={table.dataset}"]
    out = [
        f"make reproduce-table-{name}"
        + (" QUICK=1" if table.quick else "")
        + (f" ARGS={on[0]}" if on else "")
        + ("   # CPU-only machine: LAUNCHER=slurm on a GPU cluster" if "gpu" in table.spec.needs else "")
    ]
    out += [" ".join([RunGroup(g.preset).command(), *on, *g.overrides]) for g in table.spec.groups]
    return out


def _collapse_label(spec: TableSpec) -> str:
    return f"collapsed (test error > {spec.collapsed_above:g}%)"


def to_markdown(table: Table) -> str:
    spec, d = table.spec, table.spec.digits
    runs, n_diverged = table.outcomes, len(table.outcomes) - len(table.runs)
    paper = table.on_paper_dataset
    collapse = spec.collapsed_above is not None
    out = io.StringIO()
    w = out.write
    w(f"# {'QUICK — ' if table.quick else ''}{table.title}\n\n")
    if table.quick:
        w(
            "> **QUICK smoke run** (`QUICK=1`): 2 epochs, at most 2 batches per epoch, seed 17 only, generated data "
            "where the real data is absent. These numbers test the pipeline; they say nothing about the paper.\n\n"
        )
    w(f"- Status: {status_line(table)}\n")
    if not table.complete or table.quick:
        w(f"- Cost: {spec.cost}. Reproduce with `{commands(table)[0].split('   #')[0]}` (commands below).\n")
    w(f"- Runs from: {table.source}; {len(runs)} matched" + (f" ({n_diverged} diverged)" if n_diverged else "") + ".\n")
    commits = Counter(short_commit(r.get("git_commit")) for r in runs)
    w(f"- Commits of the runs: {_counter_line(commits, lambda c: f'`{c}`')}\n")
    w(f"- Machines of the runs: {_counter_line(Counter(run_machine(r) for r in runs))}\n")
    datasets = Counter(str(r.get("dataset")) + (" (generated)" if r.get("dataset") == "fake" else "") for r in runs)
    w(f"- Data of the runs: {_counter_line(datasets)}\n")
    w(
        f"{BUILD_LINE} `{table.built_at_commit[:12]}`"
        f"{' (+ uncommitted changes)' if table.built_at_commit.endswith('+dirty') else ''}.\n\n"
    )

    extra_headers = list(OrderedDict.fromkeys(k for r in table.rows for k in r.extra))
    headers = [h for _, h in spec.columns] + [f"ours: {spec.metric}" + (", all runs" if collapse else ""), "n"]
    if collapse:
        headers += [_collapse_label(spec), f"ours: {spec.metric}, runs that did not collapse"]
    if paper:
        headers += ["paper", "ours − paper"]
    show_source = paper and len({r.paper.source for r in table.rows if r.paper}) > 1
    if show_source:
        headers.append("paper source")
    headers += extra_headers
    w("| " + " | ".join(headers) + " |\n")
    w(
        "|"
        + "|".join("---" if i < len(spec.columns) or h == "paper source" else "---:" for i, h in enumerate(headers))
        + "|\n"
    )
    for r in table.rows:
        cells = [_setting_cell(r.setting[c]) for c, _ in spec.columns]
        cells.append(_pm(r.ours.mean, r.ours.se, d))
        cells.append(
            f"{len(r.outcomes)}/{r.n_expected}"
            + (f" ({len(r.diverged)} diverged)" if r.diverged and not collapse else "")
        )
        if collapse:
            lost = [f"{e:.2f}" for e in r.collapsed] + ["diverged"] * len(r.diverged)
            cells.append(f"{len(lost)}" + (f" ({', '.join(lost)})" if lost else "") if r.outcomes else "—")
            cells.append(_pm(r.ours_ok.mean, r.ours_ok.se, d) + (f" (n = {r.ours_ok.n})" if lost else ""))
        if paper:
            cells.append(_pm(r.paper.value, r.paper.se, d) if r.paper else "—")
            cells.append(("+" if r.diff > 0 else "") + _num(r.diff, d) if not math.isnan(r.diff) else "—")
        if show_source:
            cells.append(r.paper.source if r.paper else "")
        cells += [_num(r.extra.get(h, NAN), 2) for h in extra_headers]
        w("| " + " | ".join(cells) + " |\n")
    w("\n")
    w(
        "Ours: mean ± standard error over seeds (sample standard deviation / sqrt(n)); n = runs found / runs in "
        "the grid for that row. "
    )
    if collapse:
        w(
            f"A run counts as collapsed when its test error is above {spec.collapsed_above:g}% (chance is 90%); the "
            "collapsed column gives their number (and test errors), the next one the mean ± standard error over the "
            "other runs. "
        )
    if n_diverged:
        w(
            "A diverged run (its training loss became non-finite, so training stopped) has no test error: "
            "it counts in n" + (" and among the collapsed runs" if collapse else "") + ", and in no mean. "
        )
    if paper:
        w("Paper: its number ± the standard error it reports. ours − paper in percentage points.\n\n")
    else:
        w(
            f"No paper column: the paper reports no numbers for {dataset_name(table.dataset)} (this table is the "
            f"{spec.name} preset run with dataset={table.dataset}; results/tables/{spec.name}.md is the paper's).\n\n"
        )
    if paper:
        w("Notes:\n\n")
    elif spec.notes:
        # the notes file is written about the preset's own runs; here it would read as if about these
        w(
            f"Notes on the {dataset_name(spec.dataset)} table, kept for context: their figures, run counts and "
            f"paper numbers are about {dataset_name(spec.dataset)}, not {dataset_name(table.dataset)}:\n\n"
        )
    if spec.notes:
        w(spec.notes + "\n")
    paper_sources = sorted({r.paper.source for r in table.rows if r.paper and r.paper.source})
    if paper_sources and not show_source:
        w(f"- Paper numbers: {', '.join(paper_sources)} (results/reference/, sources in its README).\n")
    w("\nCommands (the runs behind this table; `make` skips runs already in the results store):\n\n")
    for c in commands(table):
        w(f"    {c}\n")
    return out.getvalue()


def csv_rows(table: Table) -> tuple[list[str], list[list]]:
    spec = table.spec
    paper, collapse = table.on_paper_dataset, spec.collapsed_above is not None
    extra_headers = list(OrderedDict.fromkeys(k for r in table.rows for k in r.extra))
    header = (
        [c for c, _ in spec.columns]
        + ["metric", "ours_mean", "ours_se", "ours_ci95", "n", "n_expected"]
        + (["n_collapsed", "n_diverged", "ours_mean_not_collapsed", "ours_se_not_collapsed"] if collapse else [])
        + (["paper", "paper_se", "diff", "paper_source"] if paper else [])
        + extra_headers
        + ["status", "quick", "git_commits", "machines", "run_ids"]
    )

    def f(x):
        return "" if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)

    out = []
    for r in table.rows:
        row = [r.setting[c] for c, _ in spec.columns] + [
            "test_accuracy_pct" if spec.accuracy else "test_error_pct",
            f(r.ours.mean),
            f(r.ours.se),
            f(r.ours.ci95),
            r.ours.n,
            r.n_expected,
        ]
        if collapse:
            row += [
                len(r.collapsed) + len(r.diverged) if r.outcomes else "",
                len(r.diverged) if r.outcomes else "",
                f(r.ours_ok.mean),
                f(r.ours_ok.se),
            ]
        if paper:
            row += [
                f(r.paper.value) if r.paper else "",
                f(r.paper.se) if r.paper else "",
                f(r.diff),
                r.paper.source if r.paper else "",
            ]
        row += [f(r.extra.get(h, NAN)) for h in extra_headers] + [
            table.status,
            int(table.quick),
            ";".join(sorted({str(x.get("git_commit", "unknown")) for x in r.outcomes})),
            ";".join(sorted({run_machine(x) for x in r.outcomes})),
            ";".join(sorted(x.get("run_id", "") for x in r.outcomes)),
        ]
        out.append(row)
    return header, out


def _same_content(path: Path, text: str) -> bool:
    """Whether ``path`` already holds ``text``, the line with the build commit aside."""
    if not path.is_file():
        return False
    keep = lambda t: [line for line in t.splitlines() if not line.startswith(BUILD_LINE)]  # noqa: E731
    return keep(path.read_text()) == keep(text)


def _write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` unless only its build-commit line would change; returns whether it wrote."""
    from snfs.results import atomic_write_bytes

    if _same_content(path, text):
        return False
    atomic_write_bytes(path, text.encode())
    return True


def index_markdown(tables: Sequence[Table]) -> str:
    quick = any(t.quick for t in tables)
    lines = [
        f"# {'QUICK smoke-run tables' if quick else 'Tables'}: our runs beside the paper's numbers",
        "",
        "Generated by `make tables` (scripts/reproduce.py) from the results store, one table per preset "
        "(conf/experiment/<name>.yaml and its notes <name>.md); each table states the commits and machines of "
        "its runs and the commands that reproduce it. The paper's numbers: results/reference/. A preset run on "
        "another dataset is the table <name>-<dataset>, without paper numbers.",
        "",
        "| table | what | status | runs |",
        "|---|---|---|---:|",
    ]
    for t in tables:
        lines.append(f"| [{t.stem}]({t.stem}.md) | {t.title} | {t.status} | {t.done}/{len(t.jobs)} |")
    return "\n".join(lines) + "\n"


def write_index(tables: Sequence[Table], out_dir: str | Path) -> Path:
    """``<out_dir>/README.md``: every table with its status, one line each (rewritten only when it changes)."""
    path = Path(out_dir) / "README.md"
    _write_if_changed(path, index_markdown(tables))
    return path


def write_table(table: Table, out_dir: str | Path) -> tuple[Path, Path]:
    """``<out_dir>/<stem>.md`` and ``.csv``; a file whose content would not change (the build-commit line
    aside) is left as it is, so `make tables` changes only the tables whose runs or code changed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{table.stem}.md"
    _write_if_changed(md, to_markdown(table))
    header, rows = csv_rows(table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path_csv = out_dir / f"{table.stem}.csv"
    _write_if_changed(path_csv, buf.getvalue())
    return md, path_csv
