"""A run's identity: what it computed, as a short hash and a readable run id.

Both the trainer and the report use this module, so it imports neither torch nor Hydra (reading run
records stays fast). The identity of a run is

- its dataset, model, sparse algorithm, optimizer, density and seed;
- every other value of its config that differs from the declared defaults: conf/config.yaml for top-level
  keys, ``conf/<group>/<name>.yaml`` for a config group (the file named by the run's ``<group>.name``);
- the checksums of its data files when they were not verified against the dataset's declared sums
  (``data_md5``), so a run on other data can never fill a table row of the declared dataset.

Only differences count, so adding an option with a default never changes an old run's identity,
and a record written before the option existed still matches a run made after.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snfs.results import is_dense

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ("dataset", "model", "sparse", "optim")
# Top-level keys that change where or how a run is stored, shown or executed, not what it computes.
# sync_bn: with it a DDP run computes what a single process does (tests/integration/test_reliability.py).
# execution, channels_last, threads: the same arithmetic up to float rounding
# (results/bench, tests/integration/test_execution.py).
# keep_freed_memory: where CPU memory comes from (snfs.malloc).
# flush_denormal: values below 1.2e-38 become 0, far below the rounding of any weight; the logged MNIST runs
# reproduce within their seed spread with it (docs/findings/denormals.md), so records made before it stay valid.
NON_SEMANTIC_KEYS = frozenset(
    {
        "logger",
        "resume",
        "results_dir",
        "run_id",
        "stop_after_epoch",
        "progress",
        "device",
        "data",
        "speedup_estimate",
        "sync_bn",
        "execution",
        "threads",
        "channels_last",
        "keep_freed_memory",
        "flush_denormal",
    }
)
# Dataset keys that say how files are fetched or checked, not what is in them (data_md5 covers that), and
# eval_batch_size: evaluation is per image, so the batching changes only float rounding.
NON_SEMANTIC_DATASET_KEYS = frozenset(
    {"download", "verify_md5", "torchvision", "folder", "files", "loader", "eval_batch_size"}
)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def semantic(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened config without the keys that do not change what a run computes."""
    out = {}
    for key, value in flatten(config).items():
        top, _, rest = key.partition(".")
        if top in NON_SEMANTIC_KEYS or (top == "dataset" and rest.split(".", 1)[0] in NON_SEMANTIC_DATASET_KEYS):
            continue
        out[key] = value
    return out


@functools.cache
def _yaml(path: str) -> dict[str, Any]:
    import yaml

    p = Path(path)
    return (yaml.safe_load(p.read_text()) or {}) if p.is_file() else {}


def declared_defaults(config: Mapping[str, Any], conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """The flattened defaults a config is compared with (see the module docstring)."""
    top = {k: v for k, v in _yaml(str(conf_dir / "config.yaml")).items() if k not in ("defaults", "hydra")}
    out = flatten(top)
    for group in GROUPS:
        name = (config.get(group) or {}).get("name") if isinstance(config.get(group), Mapping) else None
        if name is not None:
            out.update(flatten(_yaml(str(conf_dir / group / f"{name}.yaml")), f"{group}."))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _canonical(v: Any) -> Any:
    """Numbers that are equal hash alike (a record's 1.0 and a config's 1)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return [_canonical(x) for x in v] if isinstance(v, (list, tuple)) else v
    return float(v)


def density_of(config: Mapping[str, Any]) -> float:
    """The density a run trains at: 1.0 for the dense baseline, whatever ``density`` says."""
    section = config.get("sparse")
    sparse: Mapping[str, Any] = section if isinstance(section, Mapping) else {}
    density = float(config.get("density", 1.0))
    return 1.0 if is_dense(sparse.get("name"), density) else density


def identity(
    config: Mapping[str, Any], data_md5: Mapping[str, str] | None = None, conf_dir: Path = CONF_DIR
) -> dict[str, Any]:
    """What a run computed (see the module docstring): names, density, seed and the changed values."""
    defaults = declared_defaults(config, conf_dir)
    names = {g: config[g]["name"] for g in GROUPS if isinstance(config.get(g), Mapping) and "name" in config[g]}
    fixed = {f"{g}.name" for g in names} | {"density", "seed"}
    changed = {
        k: _canonical(v)
        for k, v in sorted(semantic(config).items())
        if k not in fixed and not (k in defaults and _same(v, defaults[k]))
    }
    out = {**names, "density": density_of(config), "seed": config.get("seed"), "changed": changed}
    if data_md5:
        out["data_md5"] = dict(sorted(data_md5.items()))
    return out


def identity_hash(ident: Mapping[str, Any]) -> str:
    return hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_id(config: Mapping[str, Any], data_md5: Mapping[str, str] | None = None, conf_dir: Path = CONF_DIR) -> str:
    """``<dataset>-<model>-<algorithm>-d<density>-s<seed>-<hash>``, or the config's own ``run_id`` if it sets one."""
    if config.get("run_id"):
        return str(config["run_id"])
    ident = identity(config, data_md5, conf_dir)
    return (
        f"{ident.get('dataset')}-{ident.get('model')}-{ident.get('sparse')}-d{ident['density']:g}-"
        f"s{ident['seed']}-{identity_hash(ident)}"
    )


def record_identity_hash(record: Mapping[str, Any], conf_dir: Path = CONF_DIR) -> str:
    """The identity hash of a run record (its stored config and data checksums)."""
    return identity_hash(identity(record["config"], record.get("data_md5"), conf_dir))
