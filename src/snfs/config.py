"""Checking a run's config before anything is built: the top-level keys, the optimizer's options, and (through
the registries) the dataset, model and algorithm sections.

``validate_config`` raises a ``ConfigError`` (one line, naming the key and the valid choices) for
every value a run cannot use; the trainer and the sweep runner call it before any data is loaded.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from snfs.errors import ConfigError
from snfs.options import Option, check_options
from snfs.threads import resolve_threads

# Light on purpose (no torch): `python -m snfs.train` checks the command line with it before torch loads
# (snfs.command_line). The registries (algorithms, models, executions, dataset loaders) are imported by
# validate_config, which checks what needs them.
PRECISION_NAMES = ("fp32", "bf16", "fp16")  # snfs.precision.PRECISIONS maps them to dtypes (it imports torch)
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
    Option(
        "milestones",
        list,
        [],
        items=lambda v: (
            None
            if all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in v)
            else "must be a list of epochs (integers >= 0)"
        ),
        doc="multistep: the epochs at which the LR is multiplied by gamma",
    ),
)


#: the top-level keys of conf/config.yaml (config groups aside), checked by ``validate_config``
TOP_LEVEL_OPTIONS = (
    Option(
        "density",
        float,
        0.05,
        low=0.0,
        low_open=True,
        high=1.0,
        doc="fraction of non-zero weights in the sparse layers",
    ),
    Option("epochs", int, 100, low=1, doc="training epochs"),
    Option("batch_size", int, 100, low=1, doc="training batch size (under DDP: the global batch)"),
    Option("seed", int, 17, low=0, doc="seed of the weights, masks and batch order"),
    Option("device", str, "auto", doc="auto | cpu | cuda | cuda:N"),
    Option("threads", str, "auto", doc="CPU threads: auto or a positive integer (checked by snfs.threads)"),
    Option(
        "execution",
        str,
        "masked",
        doc="masked | sparse | truly_sparse: how sparse layers compute (choices: snfs.execution)",
    ),
    Option("precision", str, "fp32", choices=PRECISION_NAMES, doc="autocast precision"),
    Option("channels_last", bool, True, doc="channels_last memory format for convnets"),
    Option("keep_freed_memory", bool, True, doc="CPU runs: glibc keeps freed blocks for reuse"),
    Option(
        "flush_denormal", bool, True, doc="CPU runs: floats below 1.2e-38 computed as 0 (docs/findings/denormals.md)"
    ),
    Option("sync_bn", bool, False, doc="DDP: SyncBatchNorm"),
    Option("speedup_estimate", bool, False, doc="time dense convs and estimate sparse speedups at the end"),
    Option("results_dir", str, "results/local/runs", doc="the results store this run writes to"),
    Option("resume", bool, False, doc="continue from this run's checkpoint"),
    Option("run_id", str, None, nullable=True, doc="null: derived from the config"),
    Option("stop_after_epoch", int, None, low=1, nullable=True, doc="stop (checkpointed) after this epoch"),
    Option("limit_batches", int, None, low=1, nullable=True, doc="train on at most this many batches per epoch"),
    Option("progress", bool, True, doc="tqdm progress bar"),
    Option("data", dict, {"root": "data"}, doc="data.root: the folder that contains the datasets' folders"),
)
DATA_OPTIONS = (
    Option("root", str, "data", doc="the folder that contains the datasets' folders (MNIST: <root>/MNIST/raw)"),
)
#: keys checked by their owners, not by TOP_LEVEL_OPTIONS' type: threads is "auto" or an integer
_OWN_CHECK = {"threads": resolve_threads}


def plain(node: Any, resolve: bool = True) -> dict[str, Any]:
    """A config section as a plain dict, interpolations resolved (what the checks and the records read)."""
    container = OmegaConf.to_container(node, resolve=resolve) if OmegaConf.is_config(node) else node
    if not isinstance(container, dict):
        raise ConfigError(f"expected a config section (a mapping), got {type(container).__name__}: {container!r}")
    return {str(key): value for key, value in container.items()}


def top_level_keys() -> set[str]:
    """The keys conf/config.yaml defines, its config groups included."""
    base = plain(OmegaConf.load(CONF_DIR / "config.yaml"), resolve=False)
    groups = {next(iter(d)) if isinstance(d, dict) else str(d) for d in base.get("defaults", [])}
    groups = {g for g in groups if not g.startswith("override ")}  # Hydra's own groups, not keys of a run
    return (set(base.keys()) | {g.split("/")[-1] for g in groups} | {"experiment"}) - {"defaults", "_self_"}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean density?)' for a near miss among ``choices``, else ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def unknown_key_message(key: str, known: Iterable[str]) -> str:
    shown = sorted(set(known) - {"hydra"})  # Hydra's own settings are not a run's keys
    return f"{key} is not a key of this config; valid top-level keys: {', '.join(shown)}" + did_you_mean(key, shown)


def check_top_level(cfg: Mapping) -> None:
    """Raise ConfigError for an unknown top-level key or a value its ``TOP_LEVEL_OPTIONS`` entry refuses."""
    known = top_level_keys()
    unknown = sorted(set(cfg.keys()) - known)
    if unknown:  # e.g. +densty=0.1: Hydra adds it, and the run would silently use the default density
        raise ConfigError(unknown_key_message(unknown[0], known))
    for option in TOP_LEVEL_OPTIONS:
        if option.name not in cfg:
            continue
        value = cfg[option.name]
        if option.name in _OWN_CHECK:
            _OWN_CHECK[option.name](value)
            continue
        why = option.problem(value)
        if why is not None:
            kind = "a valid choice" if option.choices is not None and why.startswith("valid choices") else "valid"
            raise ConfigError(f"{option.name}={value!r} is not {kind}; {why}")
    check_options("data", "data", DATA_OPTIONS, cfg.get("data") or {})


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the key for every value the run cannot use."""
    from snfs.algorithms import ALGORITHMS
    from snfs.data import check_dataset
    from snfs.execution import EXECUTIONS
    from snfs.models import MODELS

    check_top_level(plain(cfg))
    if cfg.execution not in EXECUTIONS:
        raise ConfigError(f"execution={cfg.execution!r} is not a valid choice; valid choices: {', '.join(EXECUTIONS)}")
    if cfg.logger.mode not in LOGGER_MODES:
        raise ConfigError(
            f"logger.mode={cfg.logger.mode!r} is not a valid choice; valid choices: {', '.join(LOGGER_MODES)}"
        )
    check_dataset(plain(cfg.dataset))
    MODELS.get(cfg.model.name)
    optim = plain(cfg.optim)
    check_options("optim", f"optim={optim.get('name')}", OPTIM_OPTIONS, optim)
    check_options(
        "optim.schedule", f"optim.schedule.name={optim['schedule'].get('name')}", SCHEDULE_OPTIONS, optim["schedule"]
    )
    if optim.get("nesterov") and optim.get("momentum") == 0:
        raise ConfigError("optim.nesterov=true is not valid with optim.momentum=0; Nesterov needs optim.momentum > 0")
    sparse = plain(cfg.sparse)
    algorithm = ALGORITHMS.get(str(sparse.get("name")))
    algorithm.check_config(sparse)
    algorithm.check_optimizer(sparse, optim)
    if cfg.execution == "truly_sparse":  # before any data loads: an algorithm that mode cannot run
        from snfs.truly_sparse import check_supported

        check_supported(algorithm)
