"""FLOP-based speedup estimates of a finished run, from its per-layer densities (no timing).

For the CIFAR-10 table's speedup columns. With the run's final per-layer densities (the last
``history`` record's ``layer_density``) and the network's dense multiply-adds per layer
(``snfs.costs.layer_macs``):

* inference FLOP speedup = f_D / f_S (forward multiply-adds, dense over sparse);
* training FLOP speedup = 1 / the run's ``flops_ratio`` (train.py counts training multiply-adds
  with ``snfs.costs.FlopCounter``: sparse momentum pays 2 f_S + f_D, so at most 3x); for a run
  JSON without it, 3 f_D / the mean over epochs of the multiply-adds per sample of the accounting
  row its algorithm declares (``flops_accounting``).

These are FLOP counts, not timings. The paper's own "speedup" is a different estimate (dense
conv time x weight density x input-activation density); a run made with ``speedup_estimate=true``
carries it (``speedup_estimate`` in its JSON) and the table shows it beside these.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from snfs.report.paths import CONF_DIR


@lru_cache(maxsize=32)
def _macs(model_json: str, shape: tuple, classes: int) -> dict:
    from snfs.costs import layer_macs
    from snfs.models import build_model

    opts = json.loads(model_json)
    name = opts.pop("name")
    model = build_model(name, classes, **opts)
    return layer_macs(model, shape)


@lru_cache(maxsize=32)
def _declared_dataset(name: str) -> dict:
    import yaml

    path = CONF_DIR / "dataset" / f"{name}.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def dataset_facts(dataset: Mapping[str, Any]) -> tuple[tuple[int, ...], int] | None:
    """A run's input shape and class count, as the dataset registry (``snfs.data.dataset_info``) answers.

    Keys the record lacks (runs recorded before their dataset YAML declared shape and classes) are
    read from ``conf/dataset/<name>.yaml``; None when the registry cannot answer.
    """
    from snfs.data import dataset_info
    from snfs.errors import SnfsError

    name = dataset.get("name")
    try:
        info = dataset_info({**(_declared_dataset(str(name)) if name else {}), **dataset})
    except (SnfsError, KeyError, TypeError, ValueError):  # no estimate rather than no table
        return None
    return tuple(int(s) for s in info.input_shape), int(info.num_classes)


def run_macs(run: dict) -> dict | None:
    cfg = run.get("config") or {}
    facts = dataset_facts(cfg.get("dataset") or {})
    if facts is None or not cfg.get("model"):
        return None
    shape, classes = facts
    try:
        return _macs(json.dumps(cfg["model"], sort_keys=True), shape, classes)
    except Exception:  # an unknown model or options: no estimate rather than no table
        return None


def flop_row(algorithm: str | None) -> str | None:
    """The FLOP accounting row the registered ``algorithm`` declares (``flops_accounting``), None if unknown."""
    from snfs.algorithms import ALGORITHMS

    if algorithm is None or algorithm not in ALGORITHMS:
        return None
    return ALGORITHMS.get(algorithm).flops_accounting


def flop_speedups(run: dict) -> dict:
    """``{"inference_flop_speedup", "training_flop_speedup"}`` for one run (nan when unknown)."""
    from snfs.costs import forward_flops, training_flops_per_sample

    nan = {"inference_flop_speedup": math.nan, "training_flop_speedup": math.nan}
    history = run.get("history") or []
    row = flop_row(run.get("algorithm") or (run.get("config") or {}).get("sparse", {}).get("name"))
    if row is None:
        return nan
    macs = run_macs(run)
    if not macs:
        return nan
    f_dense = forward_flops(macs, None)
    if row == "dense":
        return {"inference_flop_speedup": 1.0, "training_flop_speedup": 1.0}
    per_epoch = [h.get("layer_density") for h in history if h.get("layer_density")]
    if not per_epoch:
        return nan
    ratio = run.get("flops_ratio")
    if isinstance(ratio, (int, float)) and ratio > 0:
        training = 1.0 / float(ratio)
    else:
        delta_t = int((run.get("config") or {}).get("sparse", {}).get("delta_t", 100) or 100)
        train = [training_flops_per_sample(row, forward_flops(macs, d), f_dense, delta_t) for d in per_epoch]
        training = 3.0 * f_dense / (sum(train) / len(train))
    f_final = forward_flops(macs, per_epoch[-1])
    return {"inference_flop_speedup": f_dense / f_final if f_final > 0 else math.nan, "training_flop_speedup": training}


def timed_speedups(run: dict) -> dict:
    """The paper's speedup estimate if the run JSON carries one (``speedup_estimate``), else nan."""
    sp = run.get("speedup_estimate") or {}
    return {
        "speedup_sparse_conv_estimate": float(sp.get("speedup_sparse_conv_estimate", math.nan)),
        "speedup_dense_conv_estimate": float(sp.get("speedup_dense_conv_estimate", math.nan)),
    }
