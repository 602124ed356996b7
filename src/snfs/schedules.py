"""Schedules: prune-rate decays p(t) (Dettmers & Zettlemoyer 2019, Sec. 3) and piecewise-constant values."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

from snfs.errors import ConfigError

V = TypeVar("V")


def cosine_prune_rate(step: int, total_steps: int, initial: float, final: float) -> float:
    """p(t) = final + (initial - final) * (1 + cos(pi t / T)) / 2."""
    t = min(max(step, 0), total_steps) / max(1, total_steps)
    return final + (initial - final) * 0.5 * (1.0 + math.cos(math.pi * t))


def linear_prune_rate(step: int, total_steps: int, initial: float, final: float) -> float:
    """p(t) = initial + (final - initial) * t / T."""
    t = min(max(step, 0), total_steps) / max(1, total_steps)
    return initial + (final - initial) * t


PRUNE_RATE_DECAYS = {"cosine": cosine_prune_rate, "linear": linear_prune_rate}


def prune_rate(decay: str, step: int, total_steps: int, initial: float, final: float) -> float:
    if decay not in PRUNE_RATE_DECAYS:
        raise ConfigError(f"sparse.decay={decay!r} is not valid; valid choices: {', '.join(PRUNE_RATE_DECAYS)}")
    return PRUNE_RATE_DECAYS[decay](step, total_steps, initial, final)


def piecewise_constant(pieces: Iterable[tuple[float, V]], t: float) -> V:
    """The value of the last ``(start, value)`` piece whose start ``t`` has reached; before every start, the first's.

    DSR's rewire period over epochs and DeepR's temperature over steps are both such schedules.
    """
    pieces = list(pieces)
    value = pieces[0][1]
    for start, piece_value in pieces:
        if t >= start:
            value = piece_value
    return value
