"""Tables and figures: statistics on hand-made run JSONs, run matching, the wandb source (mocked
Api), figure files, the reference CSVs, and one QUICK sweep end to end."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import re
import sys

import pytest
from support import REPO
from support.report import run_json, table_of, write_runs

from snfs.report import paths as report_paths
from snfs.report import reference
from snfs.report import tables as tables_module
from snfs.report.paths import REFERENCE_DIR
from snfs.report.stats import summarise, t975
from snfs.report.store import RunIndex, load_local
from snfs.report.sweep import Composer, expand
from snfs.report.tables import TABLES, Paper, Row, Table, csv_rows, to_markdown, write_table

# --- statistics --------------------------------------------------------------------------------------


def test_mean_standard_error_and_ci():
    s = summarise([1.0, 2.0, 3.0])
    assert (s.n, s.mean) == (3, 2.0)
    assert s.se == pytest.approx(1.0 / math.sqrt(3))  # sample sd 1, over sqrt(3)
    assert s.ci95 == pytest.approx(4.303 / math.sqrt(3))
    one = summarise([1.5])
    assert one.n == 1 and one.mean == 1.5 and math.isnan(one.se) and math.isnan(one.ci95)
    assert summarise([]).n == 0 and math.isnan(summarise([float("nan")]).mean)
    assert (
        t975(1) == 12.706
        and t975(30) == 2.042
        and 1.96 < t975(1000) < 1.963
        and t975(40) == pytest.approx(2.021, abs=2e-3)
    )


def test_table_from_hand_made_runs(tmp_path, jobs):
    """3 seeds at 5% (errors 1.5, 1.6, 1.8) and 2 of 3 dense seeds (1.3, 1.4): mean, se, n, paper, diff."""
    sparse = [j for j in jobs if j.config["sparse"]["name"] == "momentum"]
    dense = [j for j in jobs if j.config["sparse"]["name"] == "dense"]
    assert [j.config["seed"] for j in sparse] == [17, 18, 19]
    write_runs(
        tmp_path,
        [run_json(j, e) for j, e in zip(sparse, (1.5, 1.6, 1.8))]
        + [run_json(j, e) for j, e in zip(dense, (1.3, 1.4))]
        + [{"status": "failed", "run_id": "x", "config": {}}],
    )
    table = table_of(load_local(tmp_path))
    by = {(r.setting["method"], r.setting["weights_pct"]): r for r in table.rows}
    assert list(by) == [("sparse_momentum", 5.0), ("dense", 100.0)]
    sm, dn = by["sparse_momentum", 5.0], by["dense", 100.0]
    assert (sm.ours.n, sm.n_expected) == (3, 3) and sm.ours.mean == pytest.approx(1.6333333)
    sd = math.sqrt(((1.5 - 1.6333333) ** 2 + (1.6 - 1.6333333) ** 2 + (1.8 - 1.6333333) ** 2) / 2)
    assert sm.ours.se == pytest.approx(sd / math.sqrt(3))
    assert (sm.paper.value, sm.paper.se) == (1.53, 0.02) and sm.diff == pytest.approx(1.6333333 - 1.53)
    assert (dn.ours.n, dn.n_expected) == (2, 3) and dn.ours.mean == pytest.approx(1.35)
    assert dn.ours.se == pytest.approx(0.05) and dn.paper.value == 1.34
    assert (table.done, len(table.jobs), table.complete) == (5, 6, False)

    md = to_markdown(table)
    # mnist_compression counts collapsed runs (none here): all runs, n, collapsed, the others, paper, diff
    assert (
        "| lenet300_100 | sparse_momentum | 5 | 1.633 ± 0.088 | 3/3 | 0 | 1.633 ± 0.088 | 1.530 ± 0.020 | +0.103 |"
        in md
    )
    assert "| lenet300_100 | dense | 100 | 1.350 ± 0.050 | 2/3 | 0 | 1.350 ± 0.050 | 1.340 ± 0.011 | +0.010 |" in md
    assert "not yet reproduced" in md and "5 of 6 runs" in md
    assert "`0123456789ab` (5 runs)" in md and "test CPU x2 threads, box (5 runs)" in md
    assert "make reproduce-table-mnist_compression" in md and "python -m snfs.train +experiment=mnist_compression" in md
    md_path, csv_path = write_table(table, tmp_path / "tables")
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["method"] for r in rows] == ["sparse_momentum", "dense"]
    assert float(rows[0]["ours_se"]) == pytest.approx(sd / math.sqrt(3), abs=1e-6)
    assert rows[0]["n"] == "3" and rows[1]["n_expected"] == "3" and float(rows[0]["paper"]) == 1.53
    assert rows[0]["status"] == "not yet reproduced" and md_path.read_text() == md


def test_accuracy_table_converts_error(tmp_path):
    with Composer() as composer:
        job = expand(composer, "mnist_methods", ["sparse=momentum", "density=0.05", "seed=17"]).jobs[0]
    write_runs(tmp_path, [run_json(job, 1.5)])
    table = table_of(load_local(tmp_path), ["sparse=momentum", "density=0.05", "seed=17"], name="mnist_methods")
    row = [r for r in table.rows if r.setting["method"] == "sparse_momentum"][0]
    assert row.ours.mean == pytest.approx(98.5) and row.paper.value == 98.53 and row.diff == pytest.approx(-0.03)
    assert "test accuracy (%)" in to_markdown(table)


def test_runs_match_by_config_when_the_run_id_differs(jobs):
    """A run made before a new default option existed (other run id, key missing) still counts;
    a run with another value of a key both configs have does not."""
    job = jobs[0]
    old = json.loads(json.dumps(run_json(job, 1.0)))
    old["run_id"] = "made-before-a-new-option"
    del old["config"]["sparse"]["prune_rate_min"]
    old["config"]["results_dir"] = "/elsewhere"  # where a run is stored does not matter
    other = json.loads(json.dumps(run_json(job, 9.0)))
    other["run_id"] = "other-lr"
    other["config"]["optim"]["lr"] = 0.05
    index = RunIndex([other, old])
    assert index.match(job.run_id, job.config) is old
    assert RunIndex([other]).match(job.run_id, job.config) is None


def test_variant_runs_and_default_runs_never_stand_in_for_each_other():
    """A run fills a row only with its identity: variants differ from the default by option values or a
    label; an option at its declared default, or absent from an old record, is the default."""
    with Composer() as composer:
        default = expand(composer, "mnist_methods", ["sparse=deepr", "density=0.02", "seed=17"]).jobs[0]
        variant = expand(composer, "mnist_methods", ["sparse=deepr_dsr_code", "density=0.02", "seed=17"]).jobs[0]
        scoped = expand(
            composer, "mnist_methods", ["sparse=deepr", "sparse.scope=global", "density=0.02", "seed=17"]
        ).jobs[0]
        explicit = expand(
            composer, "mnist_methods", ["sparse=deepr", "sparse.scope=layer", "density=0.02", "seed=17"]
        ).jobs[0]
    assert len({default.run_id, variant.run_id, scoped.run_id}) == 3 and explicit.run_id == default.run_id
    old_default = run_json(default, 2.6)
    for key in ("scope", "new_sign", "noise_and_l1", "noise_eta"):  # a record from before these options
        del old_default["config"]["sparse"][key]
    old_default["run_id"] = "an-old-style-run-id"
    assert RunIndex([old_default]).match(variant.run_id, variant.config) is None  # the row stays empty
    assert RunIndex([run_json(variant, 2.1)]).match(default.run_id, default.config) is None
    assert RunIndex([run_json(scoped, 2.4)]).match(default.run_id, default.config) is None
    assert RunIndex([old_default]).match(scoped.run_id, scoped.config) is None
    assert RunIndex([old_default]).match(explicit.run_id, explicit.config) is old_default  # layer is the default
    stray = json.loads(json.dumps(old_default))
    stray["config"]["sparse"]["some_override"] = 1  # only the run has it
    assert RunIndex([stray]).match(explicit.run_id, explicit.config) is None


def test_not_yet_reproduced_table_names_what_is_lacking(tmp_path):
    table = table_of(
        RunIndex([], "empty store"), ["+experiment/cifar10_net=alexnet_s"], name="cifar10_main", data_root=tmp_path
    )
    md = to_markdown(table)
    assert "**not yet reproduced**: 0 of 9 runs" in md
    assert "cifar10 data under data.root" in md and "make reproduce-table-cifar10_main" in md
    import torch

    assert ("a GPU" in md) == (not torch.cuda.is_available())
    assert [r.setting["method"] for r in table.rows] == ["dense", "snip", "sparse_momentum"]
    assert table.rows[0].paper.value == 12.68 and table.rows[2].paper.value == 14.5  # AlexNet-s, inferred row
    header, rows = csv_rows(table)
    assert "inference FLOP speedup" in header and len(rows) == 3


def test_cifar10_speedup_columns_from_a_run(tmp_path):
    with Composer() as composer:
        job = expand(
            composer, "cifar10_main", ["+experiment/cifar10_net=alexnet_s", "sparse=momentum", "seed=17"]
        ).jobs[0]
    from snfs.costs import layer_macs
    from snfs.models import build_model

    macs = layer_macs(build_model("alexnet_s", 10), (3, 32, 32))
    densities = {name: 0.1 for name in macs}
    run = run_json(
        job,
        14.0,
        flops_ratio=0.5,
        history=[{"epoch": 1, "layer_density": densities}],
        speedup_estimate={"speedup_sparse_conv_estimate": 3.0, "speedup_dense_conv_estimate": 1.2},
    )
    write_runs(tmp_path, [run])
    table = table_of(
        load_local(tmp_path), ["+experiment/cifar10_net=alexnet_s", "sparse=momentum", "seed=17"], name="cifar10_main"
    )
    extra = table.rows[0].extra
    assert extra["inference FLOP speedup"] == pytest.approx(10.0)
    assert extra["training FLOP speedup"] == pytest.approx(2.0)
    assert extra["est. speedup, sparse conv (paper's method)"] == 3.0


# --- figures -----------------------------------------------------------------------------------------------


def test_sensitivity_figures_with_confidence_intervals(tmp_path):
    from snfs.report import figures

    spec = TABLES["sensitivity_momentum"]
    rows = []
    for model in ("alexnet_s", "vgg16_d"):
        for method in ("sparse_momentum", "dense"):
            for m in (0.5, 0.9, 0.99):
                setting = {"model": model, "method": method, "momentum": m}
                row = Row(setting=setting, ours=summarise([14.0 + m, 14.2 + m, 14.1 + m]), paper=spec.paper_of(setting))
                rows.append(row)
    table = Table(spec=spec, rows=rows, expansions=[], source="test")
    path = figures.draw_table_figure(table, tmp_path)
    assert path.name == "sensitivity_momentum.png" and path.read_bytes()[:4] == b"\x89PNG"
    spec = TABLES["sensitivity_prune_rate"]
    rows = [
        Row(setting=s, ours=summarise([6.5, 6.6]), paper=spec.paper_of(s))
        for s in ({"model": "vgg16_d", "prune_rate": p, "decay": d} for p in (0.2, 0.5) for d in ("cosine", "linear"))
    ]
    assert figures.draw_table_figure(Table(spec=spec, rows=rows, expansions=[], source="t"), tmp_path).exists()
    assert rows[0].paper == Paper(6.39, 0.04, "Dettmers2019 result CSVs")


def test_layer_density_figure_picks_a_sparse_momentum_run(tmp_path):
    from snfs.report.figures import draw_layer_density_figures, pick_layer_density_runs

    def run(seed, density, algorithm="momentum"):
        hist = [
            {
                "epoch": e,
                "density": density,
                "layer_density": {"fc1.weight": density * (1 - 0.1 * e), "fc2.weight": density * (1 + 0.5 * e)},
            }
            for e in (1, 2, 3)
        ]
        return {
            "run_id": f"r{seed}{density}{algorithm}",
            "dataset": "mnist",
            "model": "lenet300_100",
            "algorithm": algorithm,
            "density": density,
            "seed": seed,
            "epochs": 3,
            "history": hist,
            "config": {"sparse": {"name": algorithm, "redistribution": "momentum", "growth": "momentum"}},
        }

    runs = [run(18, 0.05), run(17, 0.02), run(17, 0.05), run(17, 0.05, "set")]
    assert pick_layer_density_runs(runs) == [runs[2]]
    paths = draw_layer_density_figures(runs, tmp_path)
    assert [p.name for p in paths] == ["layer_density_mnist_lenet300_100.png"]


# --- reference CSVs ------------------------------------------------------------------------------------------


def test_reference_csvs_are_documented_and_load():
    readme = (REFERENCE_DIR / "README.md").read_text()
    names = reference.files()
    # every CSV is documented and every documented CSV is there
    assert set(re.findall(r"`([\w-]+)\.csv`", readme)) == set(names) != set()
    for name in names:
        assert reference.load(name)
    shared = REPO.parent / "shared" / "reference"
    if shared.is_dir():
        for p in shared.glob("*.csv"):
            assert (REFERENCE_DIR / p.name).read_bytes() == p.read_bytes(), p.name
    assert (
        reference.find(reference.load("mnist_compression_lenet5_caffe"), method="sparse_momentum", weights_pct=0.9)[
            "test_error_pct"
        ]
        == 0.894
    )


def test_mnist_methods_paper_se_comes_from_the_supplement_only_where_the_main_file_has_none():
    from snfs.report.reference import PAPER_LOOKUPS

    _mnist_methods_paper = PAPER_LOOKUPS["mnist_methods"]

    deepr = _mnist_methods_paper({"method": "deepr_dsr_code", "weights_pct": 2.0})
    assert (deepr.value, deepr.se) == (98.21, 0.135)
    momentum = _mnist_methods_paper({"method": "sparse_momentum", "weights_pct": 2.0})
    assert (momentum.value, momentum.se) == (98.20, 0.018)
    assert math.isnan(_mnist_methods_paper({"method": "set", "weights_pct": 5.0}).se)  # blank in the source too


def test_importing_the_tables_module_reads_no_table_file(tmp_path, monkeypatch):
    """Specs are read on first use: a broken table file fails where tables are used, not every import."""
    (tmp_path / "broken.yaml").write_text("defaults: []\n")
    (tmp_path / "broken.md").write_text("no front matter here\n")
    monkeypatch.setattr(report_paths, "EXPERIMENT_DIR", tmp_path)
    spec = importlib.util.spec_from_file_location("fresh_tables", tables_module.__file__)
    fresh = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fresh_tables", fresh)  # its dataclasses look their module up there
    spec.loader.exec_module(fresh)  # the module's TABLES points at the broken folder, unread
    with pytest.raises(ValueError, match="front matter"):
        list(fresh.TABLES)
