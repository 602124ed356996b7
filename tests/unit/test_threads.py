"""``threads: auto`` takes this run's share of the idle cores; bad values are refused before data loads."""

import pytest

from snfs.threads import auto_threads


def test_auto_threads_shares_idle_cores():
    assert auto_threads(cores=2, jobs=1, load=0.0) == 2  # quiet machine: every core
    assert auto_threads(cores=2, jobs=1, load=2.1) == 1  # two busy jobs beside us: one thread
    assert auto_threads(cores=16, jobs=4, load=0.0) == 4  # a joblib sweep of 4: a quarter each
    assert auto_threads(cores=16, jobs=1, load=10.0) == 6
    assert auto_threads(cores=1, jobs=3, load=5.0) == 1


def test_side_by_side_jobs_counts_torchrun_ranks(monkeypatch):
    from snfs.threads import side_by_side_jobs

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert side_by_side_jobs() == 2
    assert auto_threads(cores=8, load=0.0) == 4


def _stat(*cpus: tuple[int, int]) -> str:
    """A /proc/stat text whose cpuN line has the given (busy, idle) jiffies, busy counted as user time."""
    total = tuple(map(sum, zip(*cpus)))
    lines = [f"cpu  {total[0]} 0 0 {total[1]} 0 0 0 0 0 0"]
    lines += [f"cpu{i} {busy} 0 0 {idle} 0 0 0 0 0 0" for i, (busy, idle) in enumerate(cpus)]
    return "\n".join(lines + ["intr 12345 0 0", "ctxt 999"]) + "\n"


def test_busy_cores_counts_the_cores_busy_between_two_samples(monkeypatch):
    from snfs import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    # cpu0 busy for the whole interval, cpu1 idle; a third CPU outside our affinity is busy and does not count
    samples = iter([_stat((100, 900), (50, 950), (0, 0)), _stat((120, 900), (50, 970), (20, 0))])
    assert threads.busy_cores(sample_s=0.0, read=lambda: next(samples)) == pytest.approx(1.0)
    samples = iter([_stat((0, 0), (0, 0)), _stat((10, 10), (5, 15))])
    assert threads.busy_cores(sample_s=0.0, read=lambda: next(samples)) == pytest.approx(0.75)


def test_auto_threads_uses_the_load_average_only_without_proc_stat(monkeypatch):
    from snfs import threads

    monkeypatch.setattr(threads, "busy_cores", lambda: 0.0)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (2.0, 2.0, 2.0))  # a job that ended a minute ago
    assert threads.auto_threads(cores=2, jobs=1) == 2
    monkeypatch.setattr(threads, "busy_cores", lambda: None)
    assert threads.auto_threads(cores=2, jobs=1) == 1
