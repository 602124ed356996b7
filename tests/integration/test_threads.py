"""``threads: auto`` takes this run's share of the idle cores; bad values are refused before data loads."""

import pytest
from support import compose_cfg

from snfs.errors import ConfigError
from snfs.threads import resolve_threads
from snfs.train import Trainer


@pytest.mark.parametrize("bad", [0, -1, "many", 1.5])
def test_bad_threads_refused(bad, quick_overrides):
    with pytest.raises(ConfigError, match="threads=.* must be 'auto' or a positive integer"):
        Trainer(compose_cfg(quick_overrides + [f"threads={bad}"]))
    assert resolve_threads(3) == 3


def test_busy_cores_sees_a_busy_process_at_once():
    """A spinning process started just now shows in the 0.2 s sample (the load average would take a minute)."""
    import subprocess
    import sys

    from snfs.threads import busy_cores

    spinner = subprocess.Popen(
        [sys.executable, "-c", "print('spinning', flush=True)\nwhile True: pass"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert spinner.stdout.readline().strip() == "spinning"  # it has started and spins from here on
        assert busy_cores() >= 0.5  # one core is kept busy, by the spinner or by whatever the scheduler favours
    finally:
        spinner.kill()
        spinner.wait()
