"""How many CPU threads a run gives PyTorch (the ``threads`` key).

PyTorch takes every core by default, and on a shared machine that is the slow choice: with two
other single-thread jobs beside it, a two-thread LeNet-300-100 step took 40-150x longer than a
one-thread step (results/bench/threads.md). ``threads: auto`` therefore takes this process's
share of the cores: the cores it may run on, divided among the jobs its launcher runs side by
side, less the cores other processes keep busy (the 1-minute load average).
"""

from __future__ import annotations

import os

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


def auto_threads(cores: int | None = None, jobs: int | None = None, load: float | None = None) -> int:
    """This run's share of the idle cores, at least 1."""
    cores = usable_cores() if cores is None else cores
    jobs = side_by_side_jobs() if jobs is None else jobs
    load = os.getloadavg()[0] if load is None and hasattr(os, "getloadavg") else (load or 0.0)
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
