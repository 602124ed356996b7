"""The paper's numbers: ``results/reference/*.csv`` (copied from the paper's sources, see the README there),
and how a table row finds its number (``Paper``): a plain CSV row (``csv_paper``) or a named lookup
(``PAPER_LOOKUPS``), as a table's notes file says (``paper:``, snfs.report.tables.load_spec)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
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


@cache
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


# --- a table row's number ---------------------------------------------------------------------------


@dataclass
class Paper:
    value: float
    se: float = math.nan
    source: str = ""


def _paper(row: dict | None, value: str, se: str | None = None, source: str = "") -> Paper | None:
    if row is None or not isinstance(row.get(value), float) or math.isnan(row[value]):
        return None
    return Paper(row[value], row.get(se, math.nan) if se else math.nan, source)


def csv_paper(
    csv_name: str, match: Sequence[str], value: str, se: str | None = None, source: str = ""
) -> Callable[[dict], Paper | None]:
    """The plain lookup: the row of ``results/reference/<csv_name>.csv`` (``{column}`` filled from the
    setting) whose ``match`` columns equal the setting's."""

    def paper_of(s: dict) -> Paper | None:
        rows = load(csv_name.format(**s))
        return _paper(find(rows, **{k: s[k] for k in match}), value, se, source)

    return paper_of


# variants compared with another method's published number: DeepR as the DSR authors' code runs it
# produced the paper's DeepR numbers
PAPER_METHOD = {"deepr_dsr_code": "deepr"}


def _mnist_methods_paper(s: dict) -> Paper | None:
    rows = load("mnist_lenet300_100_sparse_methods")
    src = "Dettmers2019" if s["method"] in ("sparse_momentum", "dense") else "Mostafa & Wang 2019 (5-run mean)"
    method = PAPER_METHOD.get(s["method"], s["method"])
    paper = _paper(find(rows, method=method, weights_pct=s["weights_pct"]), "test_accuracy_pct", "se", src)
    if paper is not None and math.isnan(paper.se):
        # DSR/SET/DeepR: the standard errors the main file leaves out, from the paper's code's summary CSV
        extra = find(load("mnist_lenet300_100_sparse_methods_se"), method=method, weights_pct=s["weights_pct"])
        if extra is not None:
            paper = Paper(paper.value, extra["se"], paper.source)
    return paper


def _cifar10_main_paper(s: dict) -> Paper | None:
    row = find(load("cifar10_main_partial"), model=s["model"])
    if row is None:
        return None
    source = f"{row['source']} [{row['certainty']}]"
    if s["method"] == "dense":
        return _paper(row, "dense_error_pct", None, source)
    if s["method"] == "sparse_momentum" and close(row["weights_pct"], s["weights_pct"]):
        return _paper(row, "sparse_momentum_error_pct", None, source)
    return None


def _imagenet_paper(s: dict) -> Paper | None:
    rows = load("imagenet_resnet50")
    ref_setting = "partially_dense" if s["setting"] == "partially_dense" else "fully_sparse_tuned"
    row = find(rows, setting=ref_setting, method=s["method"], weights_pct=s["weights_pct"])
    return _paper(row, "top1_pct", None, str(row["source"]) if row else "")


def _sens_momentum_paper(s: dict) -> Paper | None:
    row = find(load("sensitivity_momentum"), model=s["model"], momentum=s["momentum"])
    key = "sparse" if s["method"] == "sparse_momentum" else "dense"
    return _paper(row, f"{key}_error_pct", f"{key}_se", "Dettmers2019 result CSVs")


# lookups that a plain CSV row cannot express, named by ``paper: <name>`` in a table's notes file
PAPER_LOOKUPS: dict[str, Callable[[dict], Paper | None]] = {
    "mnist_methods": _mnist_methods_paper,
    "cifar10_main": _cifar10_main_paper,
    "imagenet_resnet50": _imagenet_paper,
    "sensitivity_momentum": _sens_momentum_paper,
}
