"""The command line of ``python -m snfs.train``, checked in about a second, before torch is imported.

Hydra reports a mistyped key (``densty=0.02``) or group option (``model=resnet9000``) in 7 to 23 lines,
with its config search path and the advice to add the key with ``+``, which then fails too. This check
runs first and says the same in one line, with a "did you mean" for the closest key, group or option,
and also checks the top-level values (``seed=1.5``) without waiting for torch. What it cannot judge (a
Hydra flag it does not know, a sweep of group options that compose differently) it leaves to Hydra and
to ``snfs.config.validate_config``, which every run calls.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snfs.config import CONF_DIR, check_top_level, did_you_mean, plain, top_level_keys, unknown_key_message
from snfs.errors import ConfigError

# Hydra's flags that take the command line somewhere else (help, another config, a shell completion):
# with any of these the check stands aside.
HYDRA_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--version",
    "--cfg",
    "-c",
    "--resolve",
    "--package",
    "-p",
    "--run",
    "-r",
    "--shell-completion",
    "-sc",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
    "--info",
    "-i",
}


def group_options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The options of a config group: the YAML files of conf/<group>/."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def is_group(key: str, conf_dir: Path = CONF_DIR) -> bool:
    return (conf_dir / key).is_dir()


def check_overrides(args: Sequence[str], conf_dir: Path = CONF_DIR) -> None:
    """Raise ConfigError (one line) for the first override that names no key, group or group option."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    if any(a.split("=", 1)[0] in HYDRA_FLAGS for a in args):
        return
    words = [a for a in args if a not in ("-m", "--multirun")]
    if any(a.startswith("-") for a in words):
        return
    try:
        overrides = OverridesParser.create().parse_overrides(words)
    except Exception:  # noqa: BLE001 - a syntax error: Hydra's own message names the character
        return
    overrides = [o for o in overrides if not o.key_or_group.split(".")[0].split("/")[0] == "hydra"]
    first: list[str] = []  # each override with its first sweep value: the config the first job composes
    for o in overrides:
        key = o.key_or_group
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
        if is_group(key, conf_dir) and not o.is_delete():
            choices = group_options(key, conf_dir)
            for value in values:
                if str(value) not in choices:
                    raise ConfigError(
                        f"{key}={value!r} is not a valid choice; valid choices: {', '.join(choices)}"
                        + did_you_mean(str(value), choices)
                    )
            if key == "experiment" and not o.is_add():
                raise ConfigError(f"experiment={values[0]} names a preset, which is added: +experiment={values[0]}")
        if o.is_delete():
            first.append(str(o.input_line))
        else:
            text = str(values[0]) if o.is_sweep_override() else o.get_value_element_as_str()
            prefix = "++" if o.is_force_add() else "+" if o.is_add() else ""
            first.append(f"{prefix}{key}={text}")
    groups_only = [line for line, o in zip(first, overrides) if is_group(o.key_or_group, conf_dir)]
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            base = compose(config_name="config", overrides=groups_only)
    except Exception:  # noqa: BLE001 - whatever else Hydra refuses, it says itself
        return
    config: Any = OmegaConf.to_container(base)
    for o in overrides:
        key = o.key_or_group
        if is_group(key, conf_dir) or o.is_force_add():
            continue
        parts = key.split(".")
        if o.is_add() and len(parts) > 1:  # +sparse.x=...: the section's owner checks its own keys
            continue
        node = config
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or (part not in node and not (o.is_add() and depth == len(parts) - 1)):
                raise ConfigError(missing_key_message(parts[: depth + 1], node, config))
            if part in node:
                node = node[part]
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose(config_name="config", overrides=first)
    except Exception:  # noqa: BLE001
        return
    check_top_level(plain(cfg))


def missing_key_message(parts: list[str], parent: Any, config: dict) -> str:
    """'sparse.prune_rat is not an option of sparse=momentum; valid options: ...; did you mean prune_rate?'"""
    key = ".".join(parts)
    if len(parts) == 1:
        return unknown_key_message(key, top_level_keys())
    if not isinstance(parent, dict):
        return f"{key}: {'.'.join(parts[:-1])} has no keys (it is {parent!r})"
    section = ".".join(parts[:-1])
    owner = section
    if len(parts) == 2 and isinstance(config.get(parts[0]), dict) and "name" in config[parts[0]]:
        owner = f"{parts[0]}={config[parts[0]]['name']}"
    options = sorted(parent)
    return f"{key} is not an option of {owner}; valid options: {', '.join(options)}" + did_you_mean(parts[-1], options)


def check_command_line(argv: Sequence[str]) -> None:
    """Exit with status 2 and one line on stderr for a command line that cannot run."""
    try:
        check_overrides(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
