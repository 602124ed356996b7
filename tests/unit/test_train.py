"""Config composition, one-batch runs, bad overrides, results JSON and resume."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from support import CONF, compose_cfg

from snfs.algorithms import ALGORITHMS
from snfs.models import MODELS

GROUPS = {
    g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in ("dataset", "model", "sparse", "optim", "logger")
}


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_composes(group, option):
    """`<group>=<option>` puts that file's values into cfg.<group>, and names a registered model or algorithm."""
    cfg = compose_cfg([f"{group}={option}"])
    own = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"), resolve=False)
    own.pop("defaults", None)  # a variant's base file (e.g. deepr_dsr_code on deepr) is composed first
    composed = OmegaConf.to_container(cfg[group], resolve=False)
    assert own and {k: composed.get(k) for k in own} == own
    if group == "model":
        assert composed["name"] in MODELS.names()
    if group == "sparse":  # a variant file (deepr_dsr_code) runs a registered algorithm under its own label
        assert composed["name"] in ALGORITHMS.names() and composed.get("label") in (None, option)


def test_defaults_are_the_paper_protocol():
    cfg = compose_cfg()
    assert (cfg.dataset.name, cfg.model.name, cfg.sparse.name) == ("mnist", "lenet300_100", "momentum")
    assert (cfg.density, cfg.epochs, cfg.batch_size, cfg.seed) == (0.05, 100, 100, 17)
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.nesterov, cfg.optim.weight_decay) == (0.1, 0.9, True, 5e-4)
    assert (cfg.optim.schedule.name, cfg.optim.schedule.every_steps, cfg.optim.schedule.gamma) == ("step", 25000, 0.1)
    assert (cfg.sparse.prune_rate, cfg.sparse.prune_rate_min, cfg.sparse.decay) == (0.5, 0.005, "cosine")
    assert cfg.dataset.val_fraction == 0.1 and cfg.results_dir == "results/local/runs" and cfg.logger.mode == "offline"
