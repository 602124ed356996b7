"""Sparse training algorithms behind one registry.

Adding an algorithm is one module here (a ``SparseAlgorithm`` subclass decorated with
``@ALGORITHMS.register("name")``) plus one ``conf/sparse/<name>.yaml``; see the README.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from snfs.algorithms.base import SparseAlgorithm, TrainingContext
from snfs.errors import UnknownChoiceError
from snfs.registry import Registry
from snfs.results import is_dense

ALGORITHMS: Registry[type[SparseAlgorithm]] = Registry("sparse")
#: named presets of a registered algorithm (name -> (algorithm, options)), e.g. deepr_dsr_code; each has
#: its conf/sparse/<name>.yaml too, and tests/unit/test_library.py checks that the two agree
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {}


def resolve_algorithm(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The algorithm config for ``name`` (a registered algorithm or a variant) with ``options`` on top."""
    if name in VARIANTS:
        base, preset = VARIANTS[name]
        return {"name": base, **preset, **options}
    if name not in ALGORITHMS:
        raise UnknownChoiceError("sparse", name, sorted([*ALGORITHMS.names(), *VARIANTS]))
    return {"name": name, **options}


# Import every module of this package so that its @ALGORITHMS.register runs.
for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")


def build_algorithm(ctx: TrainingContext, cfg: Mapping[str, Any]) -> SparseAlgorithm:
    """The configured algorithm; at density 1 every one of them is dense training.

    At density 1 there is nothing to prune or regrow, and nothing dormant to wake: every algorithm
    trains exactly as ``sparse=dense`` (no masks, no rewiring, no per-step terms). Its options are
    still checked; the algorithm object is ``Dense`` with the same ``dense_layers``.
    """
    algorithm = ALGORITHMS.get(cfg["name"])(ctx, cfg)
    if algorithm.name != "dense" and is_dense(algorithm.name, ctx.density):
        return ALGORITHMS.get("dense")(ctx, {"name": "dense", "dense_layers": list(cfg.get("dense_layers") or [])})
    return algorithm


__all__ = ["ALGORITHMS", "VARIANTS", "SparseAlgorithm", "TrainingContext", "build_algorithm", "resolve_algorithm"]
