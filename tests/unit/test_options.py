"""Typed options (issue 14, bugs 3 and 4): every algorithm and ``optim`` option is checked before data loads."""

from __future__ import annotations

import pytest
from support import CONF, compose_cfg

from snfs.algorithms import ALGORITHMS
from snfs.config import OPTIM_OPTIONS, SCHEDULE_OPTIONS, validate_config
from snfs.errors import ConfigError
from snfs.options import Option

SPARSE_FILES = sorted(p.stem for p in (CONF / "sparse").glob("*.yaml"))


@pytest.mark.parametrize("sparse", SPARSE_FILES)
def test_every_sparse_yaml_key_is_declared_and_valid(sparse):
    cfg = compose_cfg([f"sparse={sparse}"])
    validate_config(cfg)  # raises for an undeclared key or a value out of its declared range
    algo = ALGORITHMS.get(cfg.sparse.name)
    declared = {o.name: o for o in algo.options}
    for key, _value in cfg.sparse.items():
        assert declared[key].doc, f"{sparse}: option {key} has no documentation"


def test_declared_defaults_are_valid_values():
    for name in ALGORITHMS.names():
        for option in ALGORITHMS.get(name).options:
            if option.name != "name":
                assert option.problem(option.default) is None, (name, option.name, option.default)
    for option in OPTIM_OPTIONS + SCHEDULE_OPTIONS:
        if option.type is not dict:
            assert option.problem(option.default) is None, option.name


BAD = [
    # bug 3: out of range, wrong type, negative values that used to be accepted
    (["sparse.prune_rate=1.5"], "sparse.prune_rate=1.5 is not valid for sparse=momentum; must be a number in [0, 1]"),
    (["sparse.prune_rate=-0.5"], "sparse.prune_rate=-0.5 is not valid for sparse=momentum"),
    (["sparse.prune_rate_min=-1"], "sparse.prune_rate_min=-1 is not valid for sparse=momentum"),
    (["sparse.prune_rate=abc"], "sparse.prune_rate='abc' is not valid for sparse=momentum; must be a number"),
    (["sparse=dsr", "sparse.initial_threshold=-1"], "sparse.initial_threshold=-1 is not valid for sparse=dsr"),
    (
        ["sparse=dsr", "sparse.tolerance=-1"],
        "sparse.tolerance=-1 is not valid for sparse=dsr; must be a number in [0, 1)",
    ),
    (["sparse=dsr", "sparse.rewire_periods=[[0,0]]"], "period must be an integer in [1, inf)"),
    (["sparse=dsr", "sparse.stop_epoch=1.5"], "sparse.stop_epoch=1.5 is not valid for sparse=dsr; must be an integer"),
    (["sparse=rigl", "sparse.delta_t=0"], "sparse.delta_t=0 is not valid for sparse=rigl"),
    (["sparse=set", "sparse.zeta=true"], "sparse.zeta=True is not valid for sparse=set; must be a number"),
    (["sparse=deepr", "sparse.temperatures=[[0.0,-1]]"], "T must be a number in [0, inf)"),
    (["sparse=deepr", "sparse.cancel_weight_decay=1"], "must be true or false"),
    (
        ["sparse.growth=gradient"],
        "sparse.growth='gradient' is not valid for sparse=momentum; valid choices: momentum, random",
    ),
    (["optim.momentum=0"], "optim.nesterov=true is not valid with optim.momentum=0"),
    (["optim.momentum=0", "optim.nesterov=false"], "optim.momentum=0 is not valid for sparse=momentum"),
    (["optim.lr=-0.1"], "optim.lr=-0.1 is not valid for optim=sgd; must be a number in (0, inf)"),
    (["optim.weight_decay=-1"], "optim.weight_decay=-1 is not valid"),
    (["optim.schedule.gamma=abc"], "optim.schedule.gamma='abc' is not valid"),
    # bug 4: keys the algorithm does not declare
    (
        ["+sparse.foo=1"],
        "sparse.foo is not an option of sparse=momentum; valid options: decay, dense_layers, distribution",
    ),
    (["sparse=set", "+sparse.prune_rate=0.3"], "sparse.prune_rate is not an option of sparse=set; valid options:"),
    (["sparse=snip", "+sparse.distribution=erk"], "sparse.distribution is not an option of sparse=snip"),
    (["+optim.betas=1"], "optim.betas is not an option of optim=sgd"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_option_is_refused_with_one_clear_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate_config(compose_cfg(overrides))
    assert message in str(err.value)


def test_options_an_algorithm_ignores_need_no_momentum():
    """Sparse momentum without momentum-based redistribution or growth, and dense, run without optimizer momentum."""
    validate_config(
        compose_cfg(
            ["optim.momentum=0", "optim.nesterov=false", "sparse.redistribution=magnitude", "sparse.growth=random"]
        )
    )
    validate_config(compose_cfg(["optim.momentum=0", "optim.nesterov=false", "sparse=dense"]))


def test_option_declaration_checks():
    ranged = Option("p", float, 0.5, low=0.0, high=1.0, high_open=True)
    assert ranged.problem(0) is None and ranged.problem(0.5) is None
    assert ranged.problem(1.0) and ranged.problem(-0.1) and ranged.problem("x") and ranged.problem(True)
    assert ranged.problem(float("nan")) and ranged.problem(None)
    count = Option("n", int, 1, low=1)
    assert count.problem(2) is None and count.problem(2.0) and count.problem(0)
    assert Option("s", int, None, nullable=True).problem(None) is None
    with pytest.raises(TypeError, match="declares an option twice"):
        type("Twice", (ALGORITHMS.get("static"),), {"options": (Option("a", int, 1), Option("a", int, 2))})
