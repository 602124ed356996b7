"""One table per experiment preset: our runs (mean +/- standard error, n) beside the paper's number.

A table's rows are the settings of its preset's grid (``snfs.report.sweep.expand``): every grid
point is mapped to a row by ``TableSpec.rows_of`` (seeds of one setting share a row), and its
run is looked up in the results store (``snfs.report.store.RunIndex``). So a table always has
all the paper's settings, and a setting without runs shows n = 0. Ours is test error (or test
accuracy = 100 - test error where the paper reports accuracy), in percent.

``build_table`` makes a ``Table``; ``write_table`` writes ``<name>.md`` and ``<name>.csv``.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from snfs.report import reference
from snfs.report.stats import Summary, summarise
from snfs.report.store import run_machine
from snfs.report.sweep import Composer, Expansion, Job, RunGroup, expand

NAN = math.nan


@dataclass
class Paper:
    value: float
    se: float = NAN
    source: str = ""


@dataclass
class TableSpec:
    name: str
    title: str
    groups: tuple[RunGroup, ...]
    columns: tuple[tuple[str, str], ...]            # (setting key, header)
    rows_of: Callable[[dict], list[dict]]           # composed job config -> the setting(s) it belongs to
    paper_of: Callable[[dict], Paper | None]        # setting -> the paper's number
    accuracy: bool = False                          # the paper reports accuracy: ours = 100 - test error
    needs: tuple[str, ...] = ()                     # "gpu" and/or dataset names the runs need
    cost: str = ""                                  # what a full run costs, for the status line
    digits: int = 2
    extras: Callable[[list[dict]], dict] | None = None   # matched runs -> extra columns (header -> number)
    post: Callable[[list["Row"]], None] | None = None    # adds columns that compare rows
    notes: tuple[str, ...] = ()

    @property
    def metric(self) -> str:
        return "test accuracy (%)" if self.accuracy else "test error (%)"


@dataclass
class Row:
    setting: dict
    jobs: list[Job] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    ours: Summary = Summary(0, NAN, NAN)
    paper: Paper | None = None
    extra: dict = field(default_factory=dict)

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
    problem: str = ""                 # why the grid could not be composed as configured, if so
    lacking: tuple[str, ...] = ()     # what the runs need and this machine lacks
    built_at_commit: str = ""
    matched_ids: set = field(default_factory=set)  # run ids of the grid points that have a run

    @property
    def jobs(self) -> dict[str, Job]:
        return {j.run_id: j for e in self.expansions for j in e.jobs}

    @property
    def runs(self) -> list[dict]:
        seen: dict[int, dict] = {}
        for row in self.rows:
            for r in row.runs:
                seen[id(r)] = r
        return list(seen.values())

    @property
    def done(self) -> int:
        """Grid points (distinct run ids) that have a run in the store."""
        return len(self.matched_ids & set(self.jobs))

    @property
    def complete(self) -> bool:
        return not self.problem and self.done == len(self.jobs) > 0


# --- helpers for the specs -------------------------------------------------------------------


def method_of(cfg: dict) -> str:
    """The row name of a run's method: the sparse config's ``label`` if it has one (a variant), else its name."""
    name = cfg["sparse"].get("label") or cfg["sparse"]["name"]
    return "sparse_momentum" if name == "momentum" else name


# variants compared with another method's published number: DeepR as the DSR authors' code runs it
# produced the paper's DeepR numbers
PAPER_METHOD = {"deepr_dsr_code": "deepr"}


def weights_pct(cfg: dict) -> float:
    return 100.0 if cfg["sparse"]["name"] == "dense" else round(float(cfg["density"]) * 100.0, 6)


def _paper(row: dict | None, value: str, se: str | None = None, source: str = "") -> Paper | None:
    if row is None or not isinstance(row.get(value), float) or math.isnan(row[value]):
        return None
    return Paper(row[value], row.get(se, NAN) if se else NAN, source)


def _mean_extra(runs: list[dict], fn: Callable[[dict], dict]) -> dict:
    values: dict[str, list[float]] = OrderedDict()
    for r in runs:
        for k, v in fn(r).items():
            values.setdefault(k, []).append(v)
    return {k: summarise(v).mean for k, v in values.items()}


# --- the tables --------------------------------------------------------------------------------


def _mnist_compression_paper(s: dict) -> Paper | None:
    rows = reference.load(f"mnist_compression_{s['model']}")
    return _paper(reference.find(rows, method=s["method"], weights_pct=s["weights_pct"]), "test_error_pct", "se",
                  "Dettmers2019")


def _mnist_methods_paper(s: dict) -> Paper | None:
    rows = reference.load("mnist_lenet300_100_sparse_methods")
    src = "Dettmers2019" if s["method"] in ("sparse_momentum", "dense") else "Mostafa & Wang 2019 (5-run mean)"
    method = PAPER_METHOD.get(s["method"], s["method"])
    paper = _paper(reference.find(rows, method=method, weights_pct=s["weights_pct"]), "test_accuracy_pct", "se", src)
    if paper is not None and math.isnan(paper.se):
        # DSR/SET/DeepR: the standard errors the main file leaves out, from the paper's code's summary CSV
        extra = reference.find(reference.load("mnist_lenet300_100_sparse_methods_se"), method=method,
                               weights_pct=s["weights_pct"])
        if extra is not None:
            paper = Paper(paper.value, extra["se"], paper.source)
    return paper


def _cifar10_main_paper(s: dict) -> Paper | None:
    row = reference.find(reference.load("cifar10_main_partial"), model=s["model"])
    if row is None:
        return None
    source = f"{row['source']} [{row['certainty']}]"
    if s["method"] == "dense":
        return _paper(row, "dense_error_pct", None, source)
    if s["method"] == "sparse_momentum" and reference.close(row["weights_pct"], s["weights_pct"]):
        return _paper(row, "sparse_momentum_error_pct", None, source)
    return None


def _cifar10_main_extras(runs: list[dict]) -> dict:
    from snfs.report.flops import flop_speedups, timed_speedups

    out = _mean_extra(runs, flop_speedups)
    timed = _mean_extra(runs, timed_speedups)
    if any(not math.isnan(v) for v in timed.values()):
        out.update(timed)
    return {"inference FLOP speedup": out.get("inference_flop_speedup", NAN),
            "training FLOP speedup": out.get("training_flop_speedup", NAN),
            **({"est. speedup, sparse conv (paper's method)": out["speedup_sparse_conv_estimate"],
                "est. speedup, dense conv (paper's method)": out["speedup_dense_conv_estimate"]}
               if "speedup_sparse_conv_estimate" in out else {})}


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


def _wrn_paper(s: dict) -> Paper | None:
    rows = reference.load("cifar10_wrn28_2_sparse_methods")
    return _paper(reference.find(rows, method=s["method"], weights_pct=s["weights_pct"]), "test_accuracy_pct", "se",
                  "Dettmers2019 result CSVs")


def _imagenet_rows(cfg: dict) -> list[dict]:
    m, pct = method_of(cfg), weights_pct(cfg)
    if m == "dense":  # one dense run is the baseline of both settings
        return [{"setting": s, "method": m, "weights_pct": pct} for s in ("partially_dense", "fully_sparse")]
    setting = "partially_dense" if cfg["model"].get("partially_dense") else "fully_sparse"
    return [{"setting": setting, "method": m, "weights_pct": pct}]


def _imagenet_paper(s: dict) -> Paper | None:
    rows = reference.load("imagenet_resnet50")
    ref_setting = "partially_dense" if s["setting"] == "partially_dense" else "fully_sparse_tuned"
    row = reference.find(rows, setting=ref_setting, method=s["method"], weights_pct=s["weights_pct"])
    return _paper(row, "top1_pct", None, str(row["source"]) if row else "")


def _ablation_variant(cfg: dict) -> str:
    red, growth = cfg["sparse"].get("redistribution"), cfg["sparse"].get("growth")
    if (red, growth) == ("momentum", "momentum"):
        return "full"
    if (red, growth) == ("none", "momentum"):
        return "no_redistribution"
    if (red, growth) == ("momentum", "random"):
        return "random_growth"
    return f"redistribution={red}, growth={growth}"


def _ablation_post(rows: list[Row]) -> None:
    full = {r.setting["model"]: r.ours.mean for r in rows if r.setting["variant"] == "full"}
    for r in rows:
        base = full.get(r.setting["model"], NAN)
        r.extra["ours − full"] = r.ours.mean - base if r.setting["variant"] != "full" else NAN


def _sens_momentum_paper(s: dict) -> Paper | None:
    row = reference.find(reference.load("sensitivity_momentum"), model=s["model"], momentum=s["momentum"])
    key = "sparse" if s["method"] == "sparse_momentum" else "dense"
    return _paper(row, f"{key}_error_pct", f"{key}_se", "Dettmers2019 result CSVs")


def _sens_prune_paper(s: dict) -> Paper | None:
    row = reference.find(reference.load("sensitivity_prune_rate"), model=s["model"], prune_rate=s["prune_rate"],
                         decay=s["decay"])
    return _paper(row, "error_pct", "se", "Dettmers2019 result CSVs")


SEEDS_3 = "Seeds 17, 18, 19 (the paper's 17 plus two): the paper reports error bars for this table."
MNIST_COST = ("a CPU is enough (measured on 2 cores: about 2 min per LeNet-300-100 run, about 20 min per LeNet-5-Caffe run); MNIST is "
              "fetched into data.root on first use")
CIFAR_COST = "a GPU per run (250 epochs on CIFAR-10)"
CIFAR_NOTE = ("Protocol: the paper's CIFAR-10 protocol with 250 epochs (the author's recommendation; "
              "results/reference/README.md).")

TABLES: dict[str, TableSpec] = OrderedDict((s.name, s) for s in [
    TableSpec(
        name="mnist_compression",
        title="MNIST compression: LeNet-300-100 and LeNet-5-Caffe, test error vs weight %, sparse momentum",
        groups=(RunGroup("mnist_compression"),),
        columns=(("model", "model"), ("method", "method"), ("weights_pct", "weights %")),
        rows_of=lambda c: [{"model": c["model"]["name"], "method": method_of(c), "weights_pct": weights_pct(c)}],
        paper_of=_mnist_compression_paper, cost=MNIST_COST, digits=3,
        notes=(SEEDS_3, "Protocol: the paper's MNIST protocol, 100 epochs (conf/config.yaml defaults).",
               "The compression methods the paper compares with are in the figure "
               "(results/figures/mnist_compression.png) and in results/reference/mnist_compression_*.csv.",
               "LeNet-5-Caffe, 5%, seed 19 collapsed: its loss jumped to 14.8 in epoch 4 and the network stayed at "
               "chance for the remaining 96 epochs (88.65% test error). The logged result is kept; seeds 17 and 18 "
               "had loss spikes in the same epochs and recovered. Probes (README, LeNet-5-Caffe note) find this chaotic "
               "(which seeds collapse depends on the thread count) and present with the reference code's "
               "redistribution too; with lr 0.05 the two seeds that blew up trained smoothly through epoch 5."),
    ),
    TableSpec(
        name="mnist_methods",
        title="MNIST, LeNet-300-100: sparse momentum vs DSR, SET and DeepR at 1-10% of the weights",
        groups=(RunGroup("mnist_methods"), RunGroup("mnist_methods", ("sparse=dense", "density=1.0")),
                RunGroup("mnist_methods", ("sparse=static,rigl", "density=0.01,0.02,0.05,0.1")),
                RunGroup("mnist_methods", ("sparse=deepr_dsr_code", "density=0.02,0.03,0.05"))),
        columns=(("method", "method"), ("weights_pct", "weights %")),
        rows_of=lambda c: [{"method": method_of(c), "weights_pct": weights_pct(c)}],
        paper_of=_mnist_methods_paper, accuracy=True, cost=MNIST_COST,
        notes=("Seeds 17, 18, 19 for every method. The DSR/SET/DeepR numbers are 5-run means from Mostafa & Wang "
               "2019; their standard errors are not in the paper's table but are in its code's summary CSV "
               "(results/reference/mnist_lenet300_100_sparse_methods_se.csv). Several of those read exactly 0.045 "
               "(DeepR at 3, 5 and 10%, SET at 1%), so some may be placeholders; DeepR's largest is at 2%: 0.135.",
               "Each method with its conf/sparse/<name>.yaml defaults (DSR: the authors' LeNet-300-100 settings; "
               "DeepR: with the protocol's weight decay, see conf/sparse/deepr.yaml).",
               "static (a fixed random mask) and RigL are beyond the paper: no paper number. "
               "Static at 2% leaves the 10-way output layer 20 random weights, so some classes get no input "
               "weight at all and are never predicted (seeds 17/18/19: 3/2/2 such classes); its error is "
               "mostly those classes. DeepR at 1% meets the same wall (10 output weights, fixed per layer): "
               "see the DeepR note in the README for the network-wide variant (+sparse.scope=global).",
               "deepr_dsr_code (conf/sparse/deepr_dsr_code.yaml) is DeepR as the DSR authors' code runs it, the "
               "code behind the published DeepR numbers, so its paper column is DeepR's: a new connection takes "
               "the sign of its first update, and the L1 and noise terms go through the optimizer. The deepr rows "
               "follow Bellec et al.'s definition (../shared/ALGORITHMS.md)."),
    ),
    TableSpec(
        name="cifar10_main",
        title="CIFAR-10: dense vs SNIP vs sparse momentum on eight networks, with speedup estimates",
        groups=(RunGroup("cifar10_main"),),
        columns=(("model", "model"), ("method", "method"), ("weights_pct", "weights %")),
        rows_of=lambda c: [{"model": c["model"]["name"], "method": method_of(c), "weights_pct": weights_pct(c)}],
        paper_of=_cifar10_main_paper, needs=("gpu", "cifar10"), cost=CIFAR_COST, extras=_cifar10_main_extras,
        post=measured_speedup_post,
        notes=(SEEDS_3, CIFAR_NOTE,
               "Weight percentages: the paper's (SNIP's sparsity levels): AlexNet-s/b 10%, VGG-like 3%, others 5%.",
               "Speedups: FLOP ratios from each run's per-layer densities (snfs.report.flops): inference = "
               "f_D / f_S at the final mask; training = 3 f_D / (training multiply-adds per sample), sparse momentum "
               "paying 2 f_S + f_D (at most 3x). The paper's timed estimate (dense conv time x weight density x "
               "input density) comes from the runs themselves (the preset sets speedup_estimate=true; timed on the "
               "run's own device). The measured wall-clock speedup is a stopwatch reading: the dense row's median "
               "epoch time over this row's, between runs of the same machine (execution=sparse puts sparse linear "
               "layers on sparse kernels; see the README, Execution).",
               "The paper's numbers here are partial: each names its source and certainty "
               "(results/reference/cifar10_main_partial.csv). SNIP has no reference numbers."),
    ),
    TableSpec(
        name="wrn28_2_methods",
        title="CIFAR-10, WRN-28-2: sparse momentum vs DSR, SET and DeepR at 10-50% of the weights",
        groups=(RunGroup("wrn28_2_methods"),
                RunGroup("wrn28_2_methods", ("+experiment/wrn28_2_method=dense", "density=1.0"))),
        columns=(("method", "method"), ("weights_pct", "weights %")),
        rows_of=lambda c: [{"method": method_of(c), "weights_pct": weights_pct(c)}],
        paper_of=_wrn_paper, accuracy=True, needs=("gpu", "cifar10"), cost=CIFAR_COST,
        notes=(SEEDS_3, CIFAR_NOTE, "DSR with the authors' WRN-28-2 settings (N_p = 20,000; rewiring periods "
               "100/200/400/800 from epochs 0/25/80/140); the reference DSR/SET/DeepR numbers come from Mostafa & "
               "Wang's 200-epoch protocol."),
    ),
    TableSpec(
        name="imagenet_resnet50",
        title="ImageNet, ResNet-50: sparse momentum at 10% and 20% of the weights, top-1 accuracy",
        groups=(RunGroup("imagenet_resnet50"),
                # the preset's sparse.prune_rate is a sparse momentum option, which sparse=dense refuses
                RunGroup("imagenet_resnet50", ("model=resnet50", "sparse=dense", "density=1.0", "~sparse.prune_rate"))),
        columns=(("setting", "setting"), ("method", "method"), ("weights_pct", "weights %")),
        rows_of=_imagenet_rows, paper_of=_imagenet_paper, accuracy=True, needs=("gpu", "imagenet"),
        cost="multi-GPU nodes (100 ImageNet epochs per run)",
        notes=("One seed (17): the paper reports no error bars for ImageNet.",
               "Protocol: 100 epochs, batch 256, lr 0.1 x0.1 at epochs 30/60/90, weight decay 1e-4, fp16, prune rate "
               "0.2. partially_dense = model=resnet50_partial (first conv and downsample convs dense); fully_sparse = "
               "model=resnet50. One dense run is the baseline of both settings.",
               "The fully sparse reference numbers are the author's later tuned runs (fully_sparse_tuned in "
               "results/reference/imagenet_resnet50.csv), trained with other hyper-parameters than this preset."),
    ),
    TableSpec(
        name="ablation",
        title="Ablation of sparse momentum on CIFAR-10: momentum redistribution and momentum growth switched off",
        groups=(RunGroup("ablation"),),
        columns=(("model", "model"), ("weights_pct", "weights %"), ("variant", "variant")),
        rows_of=lambda c: [{"model": c["model"]["name"], "weights_pct": weights_pct(c), "variant": _ablation_variant(c)}],
        paper_of=lambda s: None, needs=("gpu", "cifar10"), cost=CIFAR_COST, post=_ablation_post,
        notes=("One seed (17) by default; add seeds with ARGS=\"seed=17,18,19\".", CIFAR_NOTE,
               "no_redistribution: sparse.redistribution=none; random_growth: sparse.growth=random; one at a time.",
               "The reference CSVs hold no ablation numbers, so the paper column is empty; `ours − full` compares "
               "each variant with the full algorithm on the same network."),
    ),
    TableSpec(
        name="sensitivity_momentum",
        title="Sensitivity to the momentum coefficient: AlexNet-s and VGG16-D on CIFAR-10, sparse momentum and dense",
        groups=(RunGroup("sensitivity_momentum"),),
        columns=(("model", "model"), ("method", "method"), ("momentum", "momentum")),
        rows_of=lambda c: [{"model": c["model"]["name"], "method": method_of(c), "momentum": float(c["optim"]["momentum"])}],
        paper_of=_sens_momentum_paper, needs=("gpu", "cifar10"), cost=CIFAR_COST,
        notes=(SEEDS_3 + " The figure shows 95% confidence intervals.", CIFAR_NOTE,
               "AlexNet-s at 10% of the weights, VGG16-D at 5%."),
    ),
    TableSpec(
        name="sensitivity_prune_rate",
        title="Sensitivity to the prune rate and its decay (cosine vs linear): AlexNet-s and VGG16-D on CIFAR-10",
        groups=(RunGroup("sensitivity_prune_rate"),),
        columns=(("model", "model"), ("prune_rate", "prune rate"), ("decay", "decay")),
        rows_of=lambda c: [{"model": c["model"]["name"], "prune_rate": float(c["sparse"]["prune_rate"]),
                            "decay": c["sparse"]["decay"]}],
        paper_of=_sens_prune_paper, needs=("gpu", "cifar10"), cost=CIFAR_COST,
        notes=(SEEDS_3 + " The figure shows 95% confidence intervals.", CIFAR_NOTE,
               "AlexNet-s at 10% of the weights, VGG16-D at 5%."),
    ),
])


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


def build_table(spec: TableSpec, index, composer: Composer, extra_overrides: Callable[[RunGroup], list[str]] | None = None,
                quick: bool = False, data_root: str | Path = "data", fallback_overrides: Callable[[RunGroup], list[str]] | None = None) -> Table:
    """Expand the spec's presets, match their runs in ``index``, summarise each row.

    When a preset cannot be composed as configured (e.g. a dataset config absent from this
    checkout), ``fallback_overrides(group)`` (e.g. generated data) is tried to list the rows, and
    the table says why it has no runs.
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
    rows: OrderedDict[tuple, Row] = OrderedDict()
    for exp in expansions:
        for job in exp.jobs:
            for setting in spec.rows_of(job.config):
                key = tuple(setting[c] for c, _ in spec.columns)
                rows.setdefault(key, Row(setting=setting)).jobs.append(job)
    matched_ids: set[str] = set()
    for row in rows.values():
        matched = [None if problem else index.match(j.run_id, j.config) for j in row.jobs]
        matched_ids.update(j.run_id for j, r in zip(row.jobs, matched) if r is not None)
        unique: dict[int, dict] = {}
        for r in matched:
            if r is not None:
                unique[id(r)] = r
        row.runs = list(unique.values())
        values = [r["test_error"] for r in row.runs if r.get("test_error") is not None]
        if spec.accuracy:
            values = [100.0 - v for v in values]
        row.ours = summarise(values)
        row.paper = spec.paper_of(row.setting)
        row.extra = dict(spec.extras(row.runs)) if spec.extras else {}
    row_list = list(rows.values())
    if spec.post:
        spec.post(row_list)
    return Table(spec=spec, rows=row_list, expansions=expansions, source=getattr(index, "description", ""),
                 quick=quick, problem=problem, lacking=lacking(spec.needs, data_root), built_at_commit=git_commit(),
                 matched_ids=matched_ids)


# --- writing ------------------------------------------------------------------------------------


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
    if table.complete:
        return f"**reproduced**: all {total} runs of the grid are in the results store."
    why = []
    if table.problem:
        why.append(table.problem)
    if table.lacking:
        why.append("its runs need " + " and ".join(table.lacking) + ", which this machine lacks")
    return (f"**not yet reproduced**: {done} of {total} runs are in the results store"
            + (f"; {'; '.join(why)}" if why else "") + ".")


def commands(table: Table) -> list[str]:
    name = table.spec.name
    out = [f"make reproduce-table-{name}" + (" QUICK=1" if table.quick else "")
           + ("   # CPU-only machine: LAUNCHER=slurm on a GPU cluster" if "gpu" in table.spec.needs else "")]
    out += [g.command() for g in table.spec.groups]
    return out


def to_markdown(table: Table) -> str:
    spec, d = table.spec, table.spec.digits
    runs = table.runs
    out = io.StringIO()
    w = out.write
    w(f"# {'QUICK — ' if table.quick else ''}{spec.title}\n\n")
    if table.quick:
        w("> **QUICK smoke run** (`QUICK=1`): 2 epochs, at most 2 batches per epoch, seed 17 only, generated data "
          "where the real data is absent. These numbers test the pipeline; they say nothing about the paper.\n\n")
    w(f"- Status: {status_line(table)}\n")
    if not table.complete:
        w(f"- Cost: {spec.cost}. Reproduce with `{commands(table)[0].split('   #')[0]}` (commands below).\n")
    w(f"- Runs from: {table.source}; {len(runs)} matched.\n")
    commits = Counter(short_commit(r.get("git_commit")) for r in runs)
    w(f"- Commits of the runs: {_counter_line(commits, lambda c: f'`{c}`')}\n")
    w(f"- Machines of the runs: {_counter_line(Counter(run_machine(r) for r in runs))}\n")
    datasets = Counter(str(r.get("dataset")) + (" (generated)" if r.get("dataset") == "fake" else "") for r in runs)
    w(f"- Data of the runs: {_counter_line(datasets)}\n")
    w(f"- Table built by `scripts/reproduce.py` at commit `{table.built_at_commit[:12]}`"
      f"{' (+ uncommitted changes)' if table.built_at_commit.endswith('+dirty') else ''}.\n\n")

    extra_headers = list(OrderedDict.fromkeys(k for r in table.rows for k in r.extra))
    headers = [h for _, h in spec.columns] + [f"ours: {spec.metric}", "n", "paper", "ours − paper"]
    show_source = len({r.paper.source for r in table.rows if r.paper}) > 1
    if show_source:
        headers.append("paper source")
    headers += extra_headers
    w("| " + " | ".join(headers) + " |\n")
    w("|" + "|".join("---" if i < len(spec.columns) or h == "paper source" else "---:"
                     for i, h in enumerate(headers)) + "|\n")
    for r in table.rows:
        cells = [_setting_cell(r.setting[c]) for c, _ in spec.columns]
        cells.append(_pm(r.ours.mean, r.ours.se, d))
        cells.append(f"{r.ours.n}/{r.n_expected}")
        cells.append(_pm(r.paper.value, r.paper.se, d) if r.paper else "—")
        cells.append(("+" if r.diff > 0 else "") + _num(r.diff, d) if not math.isnan(r.diff) else "—")
        if show_source:
            cells.append(r.paper.source if r.paper else "")
        cells += [_num(r.extra.get(h, NAN), 2) for h in extra_headers]
        w("| " + " | ".join(cells) + " |\n")
    w("\n")
    w(f"Ours: mean ± standard error over seeds (sample standard deviation / sqrt(n)); n = runs found / runs in "
      f"the grid for that row. Paper: its number ± the standard error it reports. ours − paper in percentage points.\n\n")
    w("Notes:\n\n")
    for note in spec.notes:
        w(f"- {note}\n")
    paper_sources = sorted({r.paper.source for r in table.rows if r.paper and r.paper.source})
    if paper_sources and not show_source:
        w(f"- Paper numbers: {', '.join(paper_sources)} (results/reference/, sources in its README).\n")
    w("\nCommands (the runs behind this table; `make` skips runs already in the results store):\n\n")
    for c in commands(table):
        w(f"    {c}\n")
    return out.getvalue()


def csv_rows(table: Table) -> tuple[list[str], list[list]]:
    spec = table.spec
    extra_headers = list(OrderedDict.fromkeys(k for r in table.rows for k in r.extra))
    header = [c for c, _ in spec.columns] + ["metric", "ours_mean", "ours_se", "ours_ci95", "n", "n_expected",
                                             "paper", "paper_se", "diff", "paper_source"] + extra_headers + \
             ["status", "quick", "git_commits", "machines", "run_ids"]
    status = "reproduced" if table.complete else "not yet reproduced"

    def f(x):
        return "" if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)

    out = []
    for r in table.rows:
        out.append([r.setting[c] for c, _ in spec.columns] + [
            "test_accuracy_pct" if spec.accuracy else "test_error_pct", f(r.ours.mean), f(r.ours.se), f(r.ours.ci95),
            r.ours.n, r.n_expected, f(r.paper.value) if r.paper else "", f(r.paper.se) if r.paper else "", f(r.diff),
            r.paper.source if r.paper else ""] + [f(r.extra.get(h, NAN)) for h in extra_headers] + [
            status, int(table.quick), ";".join(sorted({str(x.get("git_commit", "unknown")) for x in r.runs})),
            ";".join(sorted({run_machine(x) for x in r.runs})), ";".join(sorted(x.get("run_id", "") for x in r.runs))])
    return header, out


def write_index(tables: Sequence[Table], out_dir: str | Path) -> Path:
    """``<out_dir>/README.md``: every table with its status, one line each."""
    from snfs.results import atomic_write_bytes

    quick = any(t.quick for t in tables)
    lines = [f"# {'QUICK smoke-run tables' if quick else 'Tables'}: our runs beside the paper's numbers", "",
             "Generated by `make tables` (scripts/reproduce.py) from the results store; each table states the commits "
             "and machines of its runs and the commands that reproduce it. The paper's numbers: results/reference/.", "",
             "| table | what | status | runs |", "|---|---|---|---:|"]
    for t in tables:
        status = "reproduced" if t.complete else "not yet reproduced"
        lines.append(f"| [{t.spec.name}]({t.spec.name}.md) | {t.spec.title} | {status} | {t.done}/{len(t.jobs)} |")
    path = Path(out_dir) / "README.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def write_table(table: Table, out_dir: str | Path) -> tuple[Path, Path]:
    from snfs.results import atomic_write_bytes

    out_dir = Path(out_dir)
    md = out_dir / f"{table.spec.name}.md"
    atomic_write_bytes(md, to_markdown(table).encode())
    header, rows = csv_rows(table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path_csv = out_dir / f"{table.spec.name}.csv"
    atomic_write_bytes(path_csv, buf.getvalue().encode())
    return md, path_csv
