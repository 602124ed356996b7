"""The paper's numbers: ``results/reference/*.csv`` (copied from the paper's sources, see the README there)."""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path

from snfs.report.paths import REFERENCE_DIR


def _number(text: str):
    text = text.strip()
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return text


@lru_cache(maxsize=None)
def _load(path: str) -> tuple[dict, ...]:
    with open(path, newline="") as f:
        return tuple({k: _number(v) for k, v in row.items()} for row in csv.DictReader(f))


def load(name: str, reference_dir: str | Path = REFERENCE_DIR) -> list[dict]:
    """Rows of ``<reference_dir>/<name>.csv``; numeric cells as floats (blank cells as nan)."""
    path = Path(reference_dir) / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"reference CSV {path} is missing (it ships in results/reference/)")
    return [dict(r) for r in _load(str(path))]


def files(reference_dir: str | Path = REFERENCE_DIR) -> list[str]:
    return sorted(p.stem for p in Path(reference_dir).glob("*.csv"))


def close(a, b, tol: float = 1e-6) -> bool:
    """Numeric equality for grid values read from CSVs and configs (0.044 vs 4.4 / 100)."""
    try:
        return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(a)), abs(float(b)))
    except (TypeError, ValueError):
        return a == b


def find(rows: list[dict], **match) -> dict | None:
    """The first row whose columns equal ``match`` (numbers compared with a tolerance)."""
    for row in rows:
        if all(close(row.get(k), v) if isinstance(v, (int, float)) else row.get(k) == v for k, v in match.items()):
            return row
    return None
