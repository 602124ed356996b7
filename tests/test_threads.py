"""``threads: auto`` takes this run's share of the idle cores; bad values are refused before data loads."""

import pytest

from conftest import compose_cfg
from snfs.errors import ConfigError
from snfs.threads import auto_threads, resolve_threads
from snfs.train import Trainer


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


@pytest.mark.parametrize("bad", [0, -1, "many", 1.5])
def test_bad_threads_refused(bad, quick_overrides):
    with pytest.raises(ConfigError, match="threads=.* must be 'auto' or a positive integer"):
        Trainer(compose_cfg(quick_overrides + [f"threads={bad}"]))
    assert resolve_threads(3) == 3
