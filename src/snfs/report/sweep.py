"""Expand a Hydra experiment preset into its runs, and launch only the missing ones.

A preset is ``conf/experiment/<name>.yaml`` (``# @package _global_``), used as
``python -m snfs.train +experiment=<name>``. Its ``hydra.sweeper.params`` is the grid; the preset
sets ``hydra.mode: MULTIRUN``, so that one command runs the whole grid with Hydra's basic sweeper
and whichever launcher ``hydra/launcher=`` names.

Skipping finished runs works with every launcher because it happens before Hydra is called:

1. ``expand`` composes the preset (``hydra.compose``), reads its sweep params, lets the command
   line's overrides replace or extend them exactly as Hydra's BasicSweeper does (same key: the
   command line wins, in place), and forms the grid (the Cartesian product, in Hydra's order);
2. every grid point is composed as the job will be, and its run id computed with
   ``snfs.identity.run_id``; a point is done when the results store has a finished run for it
   (``snfs.report.store.RunIndex.match``: same run id, or the same identity);
3. ``missing_blocks`` splits the missing points into a few Cartesian blocks (one block when a whole
   grid or whole seeds are missing), and ``launch`` runs one ``python -m snfs.train --multirun``
   per block with the block's values as sweep overrides, so Hydra and its launcher (basic, joblib,
   submitit) see an ordinary multirun.
"""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from snfs.config import plain
from snfs.report.paths import CONF_DIR, REPO_ROOT

# Launchers by the name used in `make ... LAUNCHER=<name>`: the Hydra overrides that select them.
LAUNCHERS: dict[str, tuple[str, ...]] = {
    "basic": (),  # Hydra's default: one run after another
    "joblib": ("hydra/launcher=joblib",),  # local processes; n_jobs from --jobs
    "submitit_local": ("hydra/launcher=submitit_local",),
    "submitit_slurm": ("hydra/launcher=submitit_slurm",),
    "slurm": ("hydra/launcher=slurm",),  # conf/hydra/launcher/slurm.yaml: GPU preset
}


@dataclass(frozen=True)
class RunGroup:
    """A preset plus overrides that replace some of its sweep keys (e.g. a dense baseline row)."""

    preset: str
    overrides: tuple[str, ...] = ()

    def command(self) -> str:
        return " ".join(["python -m snfs.train", f"+experiment={self.preset}", *self.overrides])


@dataclass
class Job:
    """One grid point: the overrides Hydra gives the job, its composed config and run id."""

    preset: str
    overrides: list[str]  # in Hydra's job order
    point: tuple[str, ...]  # the values of the sweep keys, aligned with Expansion.keys
    run_id: str
    config: dict  # resolved
    group: RunGroup | None = None


@dataclass
class Expansion:
    preset: str
    keys: list[str]  # every key of the job overrides, in Hydra's order
    values: list[list[str]]  # the values each key takes (one value: not swept)
    hydra_overrides: list[str]  # hydra.* overrides: command line only, never in the job config
    jobs: list[Job] = field(default_factory=list)
    group: RunGroup | None = None


BLOCK_DIRECTIVE = "# @block:"


def preset_blocks(path: str | Path) -> list[tuple[str, ...]]:
    """The blocks of a preset's grid: ``()`` (its sweep as written), then the overrides of each
    ``# @block:`` line.

    Hydra's basic sweeper only makes Cartesian grids, so rows of another shape (a dense baseline at
    density 1.0, a method at other densities) are extra blocks: the same preset with overrides that
    replace some sweep keys. They are comment lines, read here as Hydra reads its ``# @package``
    header, so that the whole grid stays in the one preset file.
    """
    import shlex

    blocks: list[tuple[str, ...]] = [()]
    header = True  # Hydra reads `# @key value` lines up to the first other line; a block line there would break it
    for line in Path(path).read_text().splitlines():
        header = header and (not line.strip() or line.lstrip().startswith("# @"))
        if line.startswith(BLOCK_DIRECTIVE):
            if header:
                raise ValueError(
                    f"{path}: a {BLOCK_DIRECTIVE} line in the header that Hydra parses (put a comment "
                    "line between `# @package _global_` and the block lines)"
                )
            overrides = tuple(shlex.split(line[len(BLOCK_DIRECTIVE) :]))
            if not overrides:
                raise ValueError(f"{path}: an empty {BLOCK_DIRECTIVE} line (it needs the overrides of its block)")
            blocks.append(overrides)
    return blocks


def preset_dataset(preset: str, overrides: Sequence[str] = (), experiment_dir: str | Path | None = None) -> str:
    """The dataset a preset trains on: a ``dataset=`` override, else its ``override /dataset:``, else the default."""
    for o in reversed(list(overrides)):
        if o.startswith("dataset="):
            return o.split("=", 1)[1]
    spec = plain(OmegaConf.load(Path(experiment_dir or CONF_DIR / "experiment") / f"{preset}.yaml"), resolve=False)
    for entry in spec.get("defaults", []) or []:
        if isinstance(entry, str):
            continue
        for k, v in entry.items():
            if str(k).strip() in ("override /dataset", "/dataset", "dataset"):
                return str(v)
    return str(OmegaConf.load(CONF_DIR / "config.yaml").defaults[0]["dataset"])


def is_hydra_override(text: str) -> bool:
    key = text.lstrip("+~").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _key_and_values(override) -> tuple[str, list[str]]:
    key = override.get_key_element()
    if override.is_sweep_override():
        if not override.is_discrete_sweep():
            raise ValueError(f"{key}: only discrete sweeps (a,b,c / range / choice) can be expanded")
        return key, list(override.sweep_string_iterator())
    return key, [override.get_value_element_as_str()]


def hydra_job_order(params: dict[str, str], cli: Sequence[str]) -> OrderedDict[str, list[str]]:
    """key -> values as Hydra's BasicSweeper orders them: the config's sweep params first, then
    the command line; a command-line key that is already a param replaces it in place."""
    parser = _parser()
    ordered: OrderedDict[str, list[str]] = OrderedDict()
    for text in [f"{k}={v}" for k, v in params.items()] + list(cli):
        key, values = _key_and_values(parser.parse_override(text))
        ordered[key] = values
    return ordered


class Composer:
    """hydra.compose on ``conf/`` with a cache; use as a context manager (Hydra's global state)."""

    def __init__(self, conf_dir: str | Path = CONF_DIR):
        self.conf_dir = str(conf_dir)
        self._ctx: Any = None  # hydra's initialize_config_dir while entered
        self._cache: dict[tuple, dict] = {}

    def __enter__(self) -> Composer:
        from hydra import initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra

        if GlobalHydra.instance().is_initialized():
            GlobalHydra.instance().clear()
        self._ctx = initialize_config_dir(config_dir=self.conf_dir, version_base="1.3")
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)

    def compose(self, overrides: Sequence[str], hydra_config: bool = False):
        from hydra import compose

        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_config)

    def is_group(self, key: str) -> bool:
        """Whether an override key selects a config (``model``, ``+experiment/mnist_point``) rather than a value."""
        path = key.lstrip("+~").split("@", 1)[0]
        return path.startswith("hydra/") or (Path(self.conf_dir) / path).is_dir()

    def compose_job(self, overrides: Sequence[str]):
        """``compose(overrides)``, faster: the config-group overrides are composed once (cached) and
        the value overrides applied to a copy afterwards, in order, as Hydra applies them after
        merging the defaults list (a plain key must exist, ``+key`` must not, ``++key`` either).
        Returns a (non-struct) DictConfig equal to what ``compose`` gives."""
        parser = _parser()
        groups: list[Any] = []
        values: list[Any] = []
        for text in overrides:
            ov = parser.parse_override(text)
            (groups if self.is_group(ov.key_or_group) else values).append(ov)
        key = tuple(o.input_line for o in groups)
        if key not in self._cache:
            self._cache[key] = plain(self.compose(list(key)), resolve=False)
        cfg = copy.deepcopy(self._cache[key])
        for ov in values:
            *parents, leaf = ov.key_or_group.split(".")
            node: Any = cfg
            for p in parents:
                node = node.get(p) if isinstance(node, dict) else None
                if not isinstance(node, dict):
                    break
            present = isinstance(node, dict) and leaf in node
            name = ov.key_or_group
            if ov.is_delete():
                if not present:
                    raise ValueError(f"Could not delete from config. '{name}' does not exist.")
                del node[leaf]
                continue
            if ov.is_add() and present:
                raise ValueError(f"Could not append to config. An item is already at '{name}'.")
            if not (ov.is_add() or ov.is_force_add()) and not present:
                raise ValueError(f"Could not override '{name}'. No match in config; to append use '+{name}'.")
            node = cfg
            for p in parents:
                node = node.setdefault(p, {})
            value = ov.value()
            if isinstance(value, dict) and isinstance(node.get(leaf), dict):
                node[leaf] = OmegaConf.to_container(OmegaConf.merge(node[leaf], value))
            else:
                node[leaf] = value
        return OmegaConf.create(cfg)


def sweep_params(composer: Composer, preset: str, cli: Sequence[str]) -> dict[str, str]:
    """The preset's ``hydra.sweeper.params``, composed with the non-sweep command-line overrides
    (some are needed to compose at all, e.g. ``dataset=fake`` where a dataset config is absent)."""
    parser = _parser()
    fixed = [o for o in cli if not is_hydra_override(o) and not parser.parse_override(o).is_sweep_override()]
    cfg = composer.compose([f"+experiment={preset}", *fixed], hydra_config=True)
    params = cfg.hydra.sweeper.params
    return {} if params is None else {str(k): str(v) for k, v in params.items()}


def expand(
    composer: Composer,
    preset: str,
    overrides: Sequence[str] = (),
    group: RunGroup | None = None,
    compose_jobs: bool = True,
    validate: bool = False,
) -> Expansion:
    """Every job of ``python -m snfs.train --multirun +experiment=<preset> <overrides>``.

    ``overrides`` may replace sweep keys (``seed=17``), add sweeps (``density=0.1,0.2``) or set
    anything else; ``hydra.*`` overrides are kept for the command line only. ``validate`` checks every
    job's config as the trainer will (before launching runs); it loads the training stack, so reading
    tables does without it.
    """
    from snfs.identity import run_id as make_run_id

    hydra_over = [o for o in overrides if is_hydra_override(o)]
    cli = [f"+experiment={preset}", *(o for o in overrides if not is_hydra_override(o))]
    params = sweep_params(composer, preset, cli[1:])
    ordered = hydra_job_order(params, cli)
    keys, values = list(ordered), list(ordered.values())
    exp = Expansion(preset=preset, keys=keys, values=values, hydra_overrides=hydra_over, group=group)
    if compose_jobs:
        for point in itertools.product(*values):
            job_overrides = [f"{k}={v}" for k, v in zip(keys, point)]
            cfg = composer.compose_job(job_overrides)
            if validate:
                from snfs.config import validate_config

                validate_config(cfg)
            config = plain(cfg)
            exp.jobs.append(
                Job(
                    preset=preset,
                    overrides=job_overrides,
                    point=tuple(point),
                    run_id=make_run_id(config),
                    config=config,
                    group=group,
                )
            )
    return exp


def missing_blocks(points: Iterable[tuple[str, ...]], values: Sequence[Sequence[str]]) -> list[list[list[str]]]:
    """Split a set of grid points into Cartesian blocks (lists of values per key) that cover it exactly.

    Recursive on the first key: its values whose remaining points are the same set form one
    block value list. A full grid gives one block. Values keep the grid's order.
    """
    points = list(dict.fromkeys(tuple(p) for p in points))  # grid order, duplicates dropped
    if not points:
        return []
    if not values:
        return [[]]
    rests: dict[str, dict[tuple, None]] = {}  # first value -> its remaining points (ordered set)
    for p in points:
        rests.setdefault(p[0], {})[p[1:]] = None
    order = {v: i for i, v in enumerate(values[0])}
    by_rest: dict[frozenset, list[str]] = {}
    rest_lists: dict[frozenset, list[tuple]] = {}
    for first in sorted(rests, key=lambda v: order.get(v, len(order))):
        key = frozenset(rests[first])
        by_rest.setdefault(key, []).append(first)
        rest_lists.setdefault(key, list(rests[first]))
    blocks = []
    for key, firsts in by_rest.items():
        for sub in missing_blocks(rest_lists[key], values[1:]):
            blocks.append([firsts] + sub)
    return blocks


def block_command(
    exp: Expansion,
    block: Sequence[Sequence[str]],
    launcher: str = "basic",
    jobs: int | None = None,
    sweep_dir: str | None = None,
) -> list[str]:
    """The ``python -m snfs.train --multirun ...`` argv that runs one block of ``exp``'s grid."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher {launcher!r} is not a valid choice; valid choices: {', '.join(LAUNCHERS)}")
    cmd = [sys.executable, "-m", "snfs.train", "--multirun"]
    # every key with its block values; Hydra puts the preset's param keys back at their positions
    cmd += [f"{k}={','.join(vals)}" for k, vals in zip(exp.keys, block)]
    cmd += list(LAUNCHERS[launcher])
    if launcher == "joblib" and jobs:
        cmd.append(f"hydra.launcher.n_jobs={int(jobs)}")
    if sweep_dir:
        cmd.append(f"hydra.sweep.dir={sweep_dir}")
    cmd += exp.hydra_overrides
    return cmd


def launch(
    exp: Expansion,
    missing: Sequence[Job],
    launcher: str = "basic",
    jobs: int | None = None,
    sweep_root: str | Path = "multirun/reproduce",
    dry_run: bool = False,
    log=print,
) -> list[int]:
    """Run the missing jobs of ``exp``, one Hydra multirun per Cartesian block; returns exit codes."""
    codes = []
    blocks = missing_blocks([j.point for j in missing], exp.values)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    for i, block in enumerate(blocks):
        sweep_dir = str(Path(sweep_root) / exp.preset / f"{stamp}_{i}")
        cmd = block_command(exp, block, launcher, jobs, sweep_dir)
        n = 1
        for vals in block:
            n *= len(vals)
        log(f"[reproduce] {exp.preset}: block {i + 1}/{len(blocks)}, {n} run(s): " + " ".join(cmd[1:]))
        if dry_run:
            codes.append(0)
            continue
        codes.append(subprocess.run(cmd, cwd=REPO_ROOT).returncode)
    return codes
