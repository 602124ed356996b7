"""Checking a run's config before anything is built: the top-level keys and the optimizer's options.

``validate_config`` raises a ``ConfigError`` (one line, naming the key and the valid choices) for
every value a run cannot use; the trainer and the sweep runner call it before any data is loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from snfs.algorithms import ALGORITHMS
from snfs.data import loader_of
from snfs.errors import ConfigError
from snfs.execution import EXECUTIONS
from snfs.models import MODELS
from snfs.options import Option, check_options
from snfs.threads import resolve_threads

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
LOGGER_MODES = ("offline", "online", "disabled")
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

#: the ``optim`` group's options (conf/optim/sgd.yaml), checked by ``validate_config``
OPTIM_OPTIONS = (
    Option("name", str, "sgd", choices=("sgd",), doc="the optimizer"),
    Option("lr", float, 0.1, low=0.0, low_open=True, doc="initial learning rate"),
    Option("momentum", float, 0.9, low=0.0, high=1.0, high_open=True, doc="SGD momentum"),
    Option("nesterov", bool, True, doc="Nesterov momentum (needs momentum > 0)"),
    Option("weight_decay", float, 5.0e-4, low=0.0, doc="L2 coefficient"),
    Option("schedule", dict, doc="the LR schedule (SCHEDULE_OPTIONS)"),
)
SCHEDULE_OPTIONS = (
    Option("name", str, "step", choices=("step", "multistep", "cosine"), doc="the LR schedule"),
    Option("every_steps", int, 25000, low=1, doc="step: x gamma every this many optimizer steps"),
    Option("gamma", float, 0.1, low=0.0, low_open=True, doc="step, multistep: the LR factor"),
    Option("milestones", list, [], items=lambda v: None if all(isinstance(e, int) and not isinstance(e, bool) and e >= 0
                                                                for e in v) else "must be a list of epochs (integers >= 0)",
           doc="multistep: the epochs at which the LR is multiplied by gamma"),
)


def top_level_keys() -> set[str]:
    """The keys conf/config.yaml defines, its config groups included."""
    base = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"))
    groups = {next(iter(d)) if isinstance(d, dict) else str(d) for d in base.get("defaults", [])}
    groups = {g for g in groups if not g.startswith("override ")}  # Hydra's own groups, not keys of a run
    return (set(base.keys()) | {g.split("/")[-1] for g in groups} | {"experiment"}) - {"defaults", "_self_"}


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the key for every value the run cannot use."""
    known = top_level_keys()
    unknown = sorted(set(cfg.keys()) - known)
    if unknown:  # e.g. +densty=0.1: Hydra adds it, and the run would silently use the default density
        raise ConfigError(f"{unknown[0]} is not a key of this config; valid top-level keys: {', '.join(sorted(known))}")
    d = cfg.density
    if not isinstance(d, (int, float)) or isinstance(d, bool) or not (0.0 < float(d) <= 1.0):
        raise ConfigError(f"density={d!r} must be a number in (0, 1]")
    for key in ("epochs", "batch_size"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]!r} must be a positive integer")
    if not isinstance(cfg.get("sync_bn", False), bool):
        raise ConfigError(f"sync_bn={cfg.sync_bn!r} is not valid; valid choices: true, false")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"precision={cfg.precision!r} is not a valid choice; valid choices: {', '.join(PRECISIONS)}")
    resolve_threads(cfg.threads)  # raises for a bad value; "auto" is resolved when the run starts
    if cfg.execution not in EXECUTIONS:
        raise ConfigError(f"execution={cfg.execution!r} is not a valid choice; valid choices: {', '.join(EXECUTIONS)}")
    if cfg.logger.mode not in LOGGER_MODES:
        raise ConfigError(f"logger.mode={cfg.logger.mode!r} is not a valid choice; valid choices: {', '.join(LOGGER_MODES)}")
    loader_of(cfg.dataset)
    MODELS.get(cfg.model.name)
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    check_options("optim", f"optim={optim.get('name')}", OPTIM_OPTIONS, optim)
    check_options("optim.schedule", f"optim.schedule.name={optim['schedule'].get('name')}", SCHEDULE_OPTIONS,
                  optim["schedule"])
    if optim.get("nesterov") and optim.get("momentum") == 0:
        raise ConfigError("optim.nesterov=true is not valid with optim.momentum=0; Nesterov needs optim.momentum > 0")
    sparse = OmegaConf.to_container(cfg.sparse, resolve=True)
    algorithm = ALGORITHMS.get(sparse.get("name"))
    algorithm.check_config(sparse)
    algorithm.check_optimizer(sparse, optim)
