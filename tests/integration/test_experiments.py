"""Experiment presets (conf/experiment/*.yaml): they compose, their grids are the paper's settings,
their jobs pass the training entry's config checks, and the sweep/skip/launch machinery is right."""

from __future__ import annotations

import json
import re

import pytest

from snfs.report import reference
from snfs.report.paths import presets
from snfs.report.quick import fake_overrides, quick_overrides
from snfs.report.sweep import Composer, block_command, expand

PRESETS = presets()


@pytest.fixture(scope="module")
def grids():
    """Every preset expanded with one seed (each job composed and validated by snfs.config.validate_config)."""
    out = {}
    with Composer() as composer:
        for name in PRESETS:
            out[name] = expand(composer, name, ["seed=17"])
        out["mnist_methods_dense"] = expand(composer, "mnist_methods", ["seed=17", "sparse=dense", "density=1.0"])
        out["seeds"] = expand(composer, "mnist_methods", ["sparse=momentum", "density=0.05"])
    return out


def configs(exp):
    return [j.config for j in exp.jobs]


def pcts(cfgs, **where):
    return sorted(
        {
            round(c["density"] * 100, 6)
            for c in cfgs
            if all(c[k.split("__")[0]][k.split("__")[1]] == v for k, v in where.items())
        }
    )


def ref_pcts(rows, method, **where):
    return sorted(
        {r["weights_pct"] for r in rows if r["method"] == method and all(r[k] == v for k, v in where.items())}
    )


def test_every_job_of_every_preset_composes_and_validates(grids):
    for name in PRESETS:
        exp = grids[name]
        assert exp.jobs, name
        ids = [j.run_id for j in exp.jobs]
        assert len(ids) == len(set(ids)), f"{name}: two grid points share a run id"


def test_compose_job_equals_hydra_compose(grids):
    """The fast path (groups composed once, values applied after) gives Hydra's own config."""
    from omegaconf import OmegaConf

    with Composer() as composer:
        for name in ("mnist_compression", "sensitivity_prune_rate", "imagenet_resnet50"):
            for job in grids[name].jobs[::5]:
                assert OmegaConf.to_container(composer.compose(job.overrides), resolve=True) == job.config


# --- the grids are the paper's settings -----------------------------------------------------------


def test_mnist_compression_grid(grids):
    cfgs = configs(grids["mnist_compression"])
    assert {c["dataset"]["name"] for c in cfgs} == {"mnist"}
    for model in ("lenet300_100", "lenet5_caffe"):
        rows = reference.load(f"mnist_compression_{model}")
        assert pcts(cfgs, model__name=model, sparse__name="momentum") == ref_pcts(rows, "sparse_momentum")
        assert any(c["model"]["name"] == model and c["sparse"]["name"] == "dense" for c in cfgs)
    assert {c["epochs"] for c in cfgs} == {100}
    assert grids["mnist_compression"].values[grids["mnist_compression"].keys.index("seed")] == ["17"]


def test_seeds_are_17_18_19_where_the_paper_has_error_bars(grids):
    assert [j.config["seed"] for j in grids["seeds"].jobs] == [17, 18, 19]
    with Composer() as composer:
        for name in PRESETS:
            params = composer.compose([f"+experiment={name}"], hydra_config=True).hydra.sweeper.params
            expected = "17" if name in ("imagenet_resnet50", "ablation") else "17,18,19"
            assert str(params["seed"]) == expected, name


def test_mnist_methods_grid(grids):
    cfgs = configs(grids["mnist_methods"])
    rows = reference.load("mnist_lenet300_100_sparse_methods")
    assert {c["model"]["name"] for c in cfgs} == {"lenet300_100"}
    for algo, method in (("momentum", "sparse_momentum"), ("dsr", "dsr"), ("set", "set"), ("deepr", "deepr")):
        assert pcts(cfgs, sparse__name=algo) == ref_pcts(rows, method)
    dense = configs(grids["mnist_methods_dense"])
    assert [c["sparse"]["name"] for c in dense] == ["dense"]


def test_dense_baselines_and_ablation_share_runs(grids):
    """Identical configs reached from two presets have one run id, so the run is made once."""
    dense_from_methods = {j.run_id for j in grids["mnist_methods_dense"].jobs}
    dense_from_compression = {j.run_id for j in grids["mnist_compression"].jobs if "lenet300_100-dense" in j.run_id}
    assert dense_from_methods == dense_from_compression
    full = {
        j.run_id
        for j in grids["ablation"].jobs
        if j.config["sparse"]["redistribution"] == "momentum" and j.config["sparse"]["growth"] == "momentum"
    }
    main = {j.run_id for j in grids["cifar10_main"].jobs if j.config["sparse"]["name"] == "momentum"}
    assert full == main and len(full) == 8


def test_cifar10_main_grid(grids):
    cfgs = configs(grids["cifar10_main"])
    nets = {
        "alexnet_s": 10,
        "alexnet_b": 10,
        "vgg16_c": 5,
        "vgg16_d": 5,
        "vgg_like": 3,
        "wrn16_8": 5,
        "wrn16_10": 5,
        "wrn22_8": 5,
    }
    assert {(c["model"]["name"], round(c["density"] * 100, 6)) for c in cfgs} == set(nets.items())
    assert {c["sparse"]["name"] for c in cfgs} == {"dense", "snip", "momentum"}
    assert {c["dataset"]["name"] for c in cfgs} == {"cifar10"} and {c["epochs"] for c in cfgs} == {250}
    assert all(c["speedup_estimate"] for c in cfgs)
    for row in reference.load("cifar10_main_partial"):
        if row["model"] in nets:
            assert nets[row["model"]] == row["weights_pct"], row["model"]


def test_wrn28_2_grid(grids):
    cfgs = configs(grids["wrn28_2_methods"])
    rows = reference.load("cifar10_wrn28_2_sparse_methods")
    for algo, method in (("momentum", "sparse_momentum"), ("dsr", "dsr"), ("set", "set"), ("deepr", "deepr")):
        assert pcts(cfgs, sparse__name=algo) == ref_pcts(rows, method)
    dsr = [c for c in cfgs if c["sparse"]["name"] == "dsr"][0]["sparse"]
    assert dsr["target_prune"] == 20000 and dsr["rewire_periods"] == [[0, 100], [25, 200], [80, 400], [140, 800]]


def test_imagenet_grid(grids):
    cfgs = configs(grids["imagenet_resnet50"])
    assert {(c["model"]["name"], c["model"]["partially_dense"], c["density"]) for c in cfgs} == {
        ("resnet50", False, 0.1),
        ("resnet50", False, 0.2),
        ("resnet50", True, 0.1),
        ("resnet50", True, 0.2),
    }
    for c in cfgs:
        assert (c["epochs"], c["batch_size"], c["precision"]) == (100, 256, "fp16")
        assert c["optim"]["weight_decay"] == 1e-4 and c["optim"]["lr"] == 0.1 and c["optim"]["nesterov"]
        assert c["optim"]["schedule"]["name"] == "multistep" and c["optim"]["schedule"]["milestones"] == [30, 60, 90]
        assert c["sparse"]["prune_rate"] == 0.2 and c["sparse"]["name"] == "momentum"
    ref = reference.load("imagenet_resnet50")
    assert {
        r["weights_pct"] for r in ref if r["setting"] == "partially_dense" and r["method"] == "sparse_momentum"
    } == {10.0, 20.0}


def test_ablation_grid(grids):
    cfgs = configs(grids["ablation"])
    variants = {(c["sparse"]["redistribution"], c["sparse"]["growth"]) for c in cfgs}
    assert variants == {("momentum", "momentum"), ("none", "momentum"), ("momentum", "random")}
    assert len({c["model"]["name"] for c in cfgs}) == 8


def test_sensitivity_grids(grids):
    mom = configs(grids["sensitivity_momentum"])
    ref = reference.load("sensitivity_momentum")
    assert sorted({c["optim"]["momentum"] for c in mom}) == sorted({r["momentum"] for r in ref})
    assert {c["model"]["name"] for c in mom} == {r["model"] for r in ref}
    assert {c["sparse"]["name"] for c in mom} == {"momentum", "dense"}
    pr = configs(grids["sensitivity_prune_rate"])
    ref = reference.load("sensitivity_prune_rate")
    assert {(c["model"]["name"], c["sparse"]["prune_rate"], c["sparse"]["decay"]) for c in pr} == {
        (r["model"], r["prune_rate"], r["decay"]) for r in ref
    }


def test_block_command_is_a_hydra_multirun_with_the_launcher(grids):
    exp = grids["mnist_methods"]
    cmd = block_command(exp, exp.values, launcher="joblib", jobs=2, sweep_dir="/tmp/x")
    assert cmd[1:4] == ["-m", "snfs.train", "--multirun"]
    assert "+experiment=mnist_methods" in cmd and "sparse=momentum,dsr,set,deepr" in cmd
    assert "hydra/launcher=joblib" in cmd and "hydra.launcher.n_jobs=2" in cmd and "hydra.sweep.dir=/tmp/x" in cmd
    slurm = block_command(exp, exp.values, launcher="slurm")
    assert "hydra/launcher=slurm" in slurm
    with pytest.raises(ValueError, match="valid choices"):
        block_command(exp, exp.values, launcher="nope")


def test_run_skips_finished_runs_and_launches_the_rest(tmp_path, capsys):
    """`run --dry-run` prints the Hydra commands: a finished run is not among them."""
    from snfs.report.cli import main

    overrides = ["sparse=momentum,set", "density=0.05"]
    with Composer() as composer:
        exp = expand(composer, "mnist_methods", overrides + quick_overrides("mnist", tmp_path / "nodata"))
    done = exp.jobs[0]  # momentum
    store = tmp_path / "runs"
    store.mkdir()
    (store / f"{done.run_id}.json").write_text(
        json.dumps({"status": "finished", "run_id": done.run_id, "config": done.config, "test_error": 2.0})
    )
    assert (
        main(
            [
                "run",
                "mnist_methods",
                *overrides,
                "--quick",
                "--results",
                str(store),
                "--data-root",
                str(tmp_path / "nodata"),
                "--dry-run",
                "--launcher",
                "joblib",
                "--jobs",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2 runs, 1 finished, 1 to run" in out
    block = [line for line in out.splitlines() if "block 1/1" in line][0]
    assert "sparse=set " in block and "momentum" not in block.split("--multirun", 1)[1].split("seed=")[0]
    assert "+experiment=mnist_methods" in block and "hydra/launcher=joblib" in block

    # a diverged run is an outcome of its protocol: not retried
    other = exp.jobs[1]
    (store / f"{other.run_id}.json").write_text(
        json.dumps({"status": "diverged", "run_id": other.run_id, "config": other.config, "test_error": None})
    )
    assert (
        main(
            [
                "run",
                "mnist_methods",
                *overrides,
                "--quick",
                "--results",
                str(store),
                "--data-root",
                str(tmp_path / "nodata"),
                "--dry-run",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2 runs, 1 finished, 1 diverged (not retried" in out and "0 to run" in out
    assert not [line for line in out.splitlines() if "block" in line and "sparse=set" in line]


# --- QUICK ---------------------------------------------------------------------------------------------


def test_quick_overrides_use_real_data_when_present(fake_mnist_root, tmp_path):
    with_data = quick_overrides("mnist", fake_mnist_root)
    assert "dataset=fake" not in with_data and "seed=17" in with_data and "epochs=2" in with_data
    without = quick_overrides("mnist", tmp_path)
    assert "dataset=fake" in without and "dataset.shape=[1,28,28]" in without
    assert "dataset.shape=[3,32,32]" in quick_overrides("cifar10", tmp_path)
    assert "dataset.num_classes=1000" in quick_overrides("imagenet", tmp_path)  # ImageNet: always generated
    assert fake_overrides("fake") == []


def test_quick_configs_of_every_preset_validate(tmp_path):
    """QUICK overrides keep each preset's grid (rows) and give valid configs on generated data."""
    from snfs.report.cli import _dataset_of

    with Composer() as composer:
        for name in ("cifar10_main", "imagenet_resnet50", "sensitivity_momentum"):
            q = expand(composer, name, quick_overrides(_dataset_of(name, []), tmp_path), compose_jobs=False)
            full = expand(composer, name, [], compose_jobs=False)
            for key, values in zip(full.keys, full.values):
                if key != "seed":
                    assert q.values[q.keys.index(key)] == values, (name, key)
            assert q.values[q.keys.index("seed")] == ["17"]
        q = expand(
            composer, "cifar10_main", ["+experiment/cifar10_net=alexnet_s"] + quick_overrides("cifar10", tmp_path)
        )
    assert {j.config["dataset"]["name"] for j in q.jobs} == {"fake"}
    assert {j.config["epochs"] for j in q.jobs} == {2} and {j.config["limit_batches"] for j in q.jobs} == {2}
    assert re.match(r"fake-alexnet_s-", q.jobs[0].run_id)
