"""What every benchmark shares: the machine it ran on, interleaved best-of-N timing, and writing its table.

A benchmark names its machine (``snfs.machine``: CPU model, vector extensions, threads, BLAS/oneDNN) and
the load beside it, compares its settings in one process, interleaved, and keeps the best of N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from snfs.machine import describe, describe_line, flush_denormals

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "bench"
T = TypeVar("T")

# --- the machine ------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """``snfs.machine.describe()`` plus its one-line form, the OpenMP wait policy and the load average now."""
    info = describe()
    return {
        **info,
        "machine": describe_line(info=info),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "loadavg_at_start": os.getloadavg(),
    }


def machine_sentence(info: dict[str, Any], threads: bool = True) -> str:
    """``Machine: <line>; torch <version>; N thread(s); load average ... at the start, ... at the end``.

    ``threads=False`` leaves the thread count out, for benchmarks whose rows set their own.
    """
    parts = [f"Machine: {info['machine']}", f"torch {info['torch']}"]
    if threads:
        parts.append(f"{info['threads']} thread(s)")
    load = f"load average {info['loadavg_at_start'][0]:.2f} at the start"
    if "loadavg_at_end" in info:
        load += f", {info['loadavg_at_end'][0]:.2f} at the end"
    return "; ".join(parts + [load])


def use_threads(threads: int, flush: bool = True) -> None:
    """Flush denormals (or not) and set torch's threads, in that order, as a training run does.

    Torch's worker threads copy the denormal setting when they start, so the flush comes first.
    """
    flush_denormals(flush)
    torch.set_num_threads(threads)


BUSY = "import torch\ntorch.set_num_threads(1)\na = torch.randn(256, 256)\nwhile True:\n    a = torch.tanh(a @ a)\n"


@contextmanager
def busy_processes(count: int, settle_s: float = 0.0) -> Iterator[None]:
    """``count`` single-thread CPU hogs beside the measurement (the 'loaded machine' condition)."""
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(count)]
    try:
        if hogs and settle_s:
            time.sleep(settle_s)
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


# --- timing -----------------------------------------------------------------------------------------------


def best_time(fn: Callable[[], object], repeats: int, inner: int, warmup: int = 1) -> float:
    """Seconds per call of ``fn``: the best of ``repeats`` means over ``inner`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def round_order(round_index: int, rounds: int, count: int) -> list[int]:
    """The settings in the order round ``round_index`` of ``rounds + 1`` times them: each round starts elsewhere.

    A drift within a round (another process starting, the CPU's clock) then favours no setting.
    """
    start = (round_index * count) // max(1, rounds + 1)
    return [(start + k) % count for k in range(count)]


def interleaved(
    count: int,
    rounds: int,
    measure: Callable[[int, int], T],
    after_round: Callable[[int], None] | None = None,
) -> dict[int, list[T]]:
    """``measure(setting, round)`` for every setting in every round; round 0 warms up and is not kept.

    Returns each setting's ``rounds`` measurements; the caller keeps the best.
    """
    kept: dict[int, list[T]] = {i: [] for i in range(count)}
    for r in range(rounds + 1):
        for i in round_order(r, rounds, count):
            value = measure(i, r)
            if r > 0:
                kept[i].append(value)
        if after_round is not None:
            after_round(r)
    return kept


# --- configs ----------------------------------------------------------------------------------------------


def compose(overrides: list[str]) -> Any:
    """The training config with ``overrides``, as ``python -m snfs.train`` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


# --- writing ----------------------------------------------------------------------------------------------


def parser(doc: str | None, threads: int | None = 1) -> argparse.ArgumentParser:
    """An argument parser with the module's docstring as help, ``--out`` and (unless None) ``--threads``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(RESULTS), help="folder of the .json and .md files (default results/bench)")
    if threads is not None:
        p.add_argument("--threads", type=int, default=threads, help="torch threads")
    return p


def table(columns: Sequence[str], rows: Sequence[Sequence[object]], right_from: int | None = None) -> list[str]:
    """A markdown table; columns from index ``right_from`` on are right-aligned."""
    rules = ["---:" if right_from is not None and i >= right_from else "---" for i in range(len(columns))]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(rules) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def write(out: str | Path, name: str, result: dict[str, Any], lines: list[str], echo: bool = True) -> Path:
    """``<out>/<name>.json`` (the result) and ``<out>/<name>.md`` (the lines); prints the markdown."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    path = folder / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    if echo:
        print("\n".join(lines))
    return path
