"""A run's identity (snfs.identity): what it computed, and nothing about where or how it ran."""

from __future__ import annotations

import copy

from omegaconf import OmegaConf
from support import REPO, compose_cfg

from snfs.identity import declared_defaults, identity, identity_hash, run_id


def config(overrides=()):
    return OmegaConf.to_container(compose_cfg(list(overrides)), resolve=True)


def test_the_default_run_has_no_changed_values():
    ident = identity(config())
    assert ident["changed"] == {}
    assert (ident["dataset"], ident["model"], ident["sparse"], ident["density"], ident["seed"]) == (
        "mnist",
        "lenet300_100",
        "momentum",
        0.05,
        17,
    )


def test_a_changed_value_changes_the_id_and_is_listed():
    base, lr = config(), config(["optim.lr=0.05"])
    assert identity(lr)["changed"] == {"optim.lr": 0.05}
    assert run_id(base) != run_id(lr)


def test_an_option_missing_from_an_old_record_means_its_default():
    new = config()
    old = copy.deepcopy(new)
    del old["sparse"]["prune_rate"]  # a record written before the option existed
    assert run_id(old) == run_id(new)
    old["sparse"]["prune_rate"] = 0.3  # ... but a different value is a different run
    assert run_id(old) != run_id(new)


def test_where_and_how_a_run_executes_is_not_part_of_it():
    base = run_id(config())
    for override in (
        "execution=sparse",
        "threads=1",
        "channels_last=false",
        "device=cpu",
        "results_dir=/tmp/x",
        "logger.mode=disabled",
        "data.root=/elsewhere",
        "dataset.verify_md5=false",
        "keep_freed_memory=false",
        "dataset.eval_batch_size=1000",
    ):
        assert run_id(config([override])) == base, override


def test_dense_runs_are_density_one_whatever_density_says():
    a, b = config(["sparse=dense"]), config(["sparse=dense", "density=1.0"])
    assert identity(a)["density"] == 1.0
    assert run_id(a) == run_id(b)
    assert "-d1-" in run_id(a)


def test_unverified_data_is_part_of_the_identity():
    cfg = config()
    assert run_id(cfg, {"train-images-idx3-ubyte": "0" * 32}) != run_id(cfg)
    assert identity_hash(identity(cfg, None)) == identity_hash(identity(cfg, {}))


def test_defaults_come_from_the_files_named_by_the_groups():
    defaults = declared_defaults(config(["model=lenet5_caffe", "sparse=set"]))
    assert defaults["model.name"] == "lenet5_caffe" and defaults["sparse.name"] == "set"
    assert "sparse.zeta" in defaults


def _stated_in_yaml_as_declared(options, stated: dict, where: str) -> None:
    for option in options:
        if option.name in ("name", "label", "schedule"):
            continue
        assert option.name in stated, f"{where}: {option.name} is declared but not stated"
        assert stated[option.name] == option.default, (
            f"{where}: {option.name}={stated[option.name]!r} but declared default {option.default!r}"
        )
    declared = {o.name for o in options}
    assert set(stated) <= declared, f"{where}: undeclared {sorted(set(stated) - declared)}"


def test_each_config_file_states_its_declared_defaults():
    """An identity counts values that differ from conf/<group>/<name>.yaml; that file must be the declaration."""
    import yaml

    from snfs.algorithms import ALGORITHMS
    from snfs.config import OPTIM_OPTIONS, SCHEDULE_OPTIONS

    shipped = [
        n
        for n in ALGORITHMS.names()  # not one another test registers on the fly (the README's example)
        if (REPO / "src" / "snfs" / "algorithms" / f"{ALGORITHMS.get(n).__module__.rsplit('.', 1)[-1]}.py").exists()
    ]
    assert len(shipped) >= 8  # deepr, dense, dsr, momentum, rigl, set, snip, static
    for name in shipped:
        stated = yaml.safe_load((REPO / "conf" / "sparse" / f"{name}.yaml").read_text())
        _stated_in_yaml_as_declared(ALGORITHMS.get(name).options, stated, f"conf/sparse/{name}.yaml")
    sgd = yaml.safe_load((REPO / "conf" / "optim" / "sgd.yaml").read_text())
    _stated_in_yaml_as_declared(OPTIM_OPTIONS, sgd, "conf/optim/sgd.yaml")
    _stated_in_yaml_as_declared(SCHEDULE_OPTIONS, sgd["schedule"], "conf/optim/sgd.yaml schedule")
