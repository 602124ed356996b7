"""Signals that stop a run at the next batch with a checkpoint: Ctrl-C, SIGTERM and SIGUSR1 (SLURM, submitit)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, after the run saved a checkpoint that the same command resumes from."""


class Preemption:
    """Catches SIGTERM/SIGUSR1/SIGINT so the loop can checkpoint and exit; then hands over to the old handler.

    Handing over matters on SLURM: submitit's own handler requeues the job after we saved. Ctrl-C
    (SIGINT) checkpoints too, so the same command resumes; a second Ctrl-C stops at once, leaving the
    last epoch's checkpoint in place.
    """

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGUSR1", "SIGINT") if hasattr(signal, n))

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        if signum == signal.SIGINT:
            print("\nCtrl-C: saving a checkpoint after this batch (Ctrl-C again to stop at once)", file=sys.stderr)
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def hand_over(self) -> None:
        if self.signum is None:
            return
        handler = self.previous.get(self.signum)
        if callable(handler):
            handler(self.signum, None)
