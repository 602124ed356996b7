"""How many CPU threads a run gives PyTorch (the ``threads`` key).

PyTorch takes every core by default, and on a shared machine that is the slow choice: with two
other single-thread jobs beside it, a two-thread LeNet-300-100 step is slower than a one-thread
step (docs/findings/sparse_execution.md, "Threads"). ``threads: auto`` therefore takes this process's
share of the cores: the cores it may run on, divided among the jobs its launcher runs side by
side, less the cores other processes keep busy now: the busy share of this process's cores in
/proc/stat over 0.2 s at start-up (``busy_cores``). The 1-minute load average, which still counts a
job that ended a minute ago, serves only where there is no /proc/stat (macOS).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from snfs.errors import ConfigError


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def side_by_side_jobs() -> int:
    """Processes started together on this machine: torchrun's local ranks times joblib's n_jobs."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1) * _hydra_jobs()


def _hydra_jobs() -> int:
    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
        n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
        return max(1, int(n_jobs)) if n_jobs and int(n_jobs) > 0 else 1
    except Exception:  # not inside a Hydra job (tests, scripts), or a launcher without n_jobs
        return 1


PROC_STAT = Path("/proc/stat")
#: how long ``busy_cores`` watches the CPUs: 20 scheduler ticks at 100 Hz
BUSY_SAMPLE_S = 0.2


def cpu_times(stat_text: str, cpus: set[int] | None = None) -> tuple[int, int]:
    """(busy, total) jiffies summed over ``cpus`` (all when None) from the text of /proc/stat.

    Idle time is the ``idle`` and ``iowait`` columns; ``guest`` time is already inside ``user``.
    """
    busy = total = 0
    for line in stat_text.splitlines():
        name, *fields = line.split() or [""]
        if not name.startswith("cpu") or not name[3:].isdigit():
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        busy += sum(values) - idle
        total += sum(values)
    return busy, total


def busy_cores(sample_s: float = BUSY_SAMPLE_S, read=None) -> float | None:
    """How many of this process's cores other processes keep busy now (/proc/stat over ``sample_s``).

    None where /proc/stat cannot be read. ``read`` returns the file's text (tests pass their own).
    """
    read = read or PROC_STAT.read_text
    try:
        cpus = set(os.sched_getaffinity(0))
    except AttributeError:
        cpus = None
    try:
        busy0, total0 = cpu_times(read(), cpus)
        time.sleep(sample_s)
        busy1, total1 = cpu_times(read(), cpus)
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    n = len(cpus) if cpus is not None else usable_cores()
    return n * (busy1 - busy0) / (total1 - total0)


def auto_threads(cores: int | None = None, jobs: int | None = None, load: float | None = None) -> int:
    """This run's share of the idle cores, at least 1. ``load``: the cores others keep busy (measured when None)."""
    cores = usable_cores() if cores is None else cores
    jobs = side_by_side_jobs() if jobs is None else jobs
    if load is None:
        load = busy_cores()
    if load is None:  # no /proc/stat: the load average, which lags by about a minute
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    share = max(1, cores // max(1, jobs))
    idle = max(1, cores - int(round(load)))
    return max(1, min(share, idle))


def resolve_threads(setting) -> int:
    """``auto`` or a positive integer (the ``threads`` key) as a thread count."""
    if setting == "auto":
        return auto_threads()
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(f"threads={setting!r} must be 'auto' or a positive integer")
    return setting
