"""snfs: a reproduction of "Sparse Networks from Scratch" (Dettmers & Zettlemoyer, 2019), usable as a library.

    import snfs
    sparse = snfs.sparsify(model, optimizer, "momentum", density=0.05, epochs=E, steps_per_epoch=S)
    ... loss.backward(); sparse.step()          # instead of optimizer.step()

The names below load on first use, so ``import snfs`` stays cheap for the report tools.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "sparsify": "snfs.sparsifier",
    "Sparsifier": "snfs.sparsifier",
    "save_sparse": "snfs.export",
    "load_sparse": "snfs.export",
    "use_sparse_kernels": "snfs.export",
    "ConfigError": "snfs.errors",
    "ALGORITHMS": "snfs.algorithms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'snfs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
