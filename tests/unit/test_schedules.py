import math

import pytest

from snfs.errors import ConfigError
from snfs.schedules import cosine_prune_rate, linear_prune_rate, piecewise_constant, prune_rate


def test_cosine_start_middle_end():
    assert cosine_prune_rate(0, 1000, 0.5, 0.005) == pytest.approx(0.5)
    assert cosine_prune_rate(500, 1000, 0.5, 0.005) == pytest.approx((0.5 + 0.005) / 2)
    assert cosine_prune_rate(1000, 1000, 0.5, 0.005) == pytest.approx(0.005)
    # a quarter of the way: final + (initial - final) * (1 + cos(pi/4)) / 2
    assert cosine_prune_rate(250, 1000, 0.5, 0.005) == pytest.approx(0.005 + 0.495 * (1 + math.cos(math.pi / 4)) / 2)


def test_linear_start_middle_end():
    assert linear_prune_rate(0, 1000, 0.5, 0.005) == pytest.approx(0.5)
    assert linear_prune_rate(500, 1000, 0.5, 0.005) == pytest.approx(0.2525)
    assert linear_prune_rate(1000, 1000, 0.5, 0.005) == pytest.approx(0.005)


def test_schedules_clamp_outside_training():
    assert cosine_prune_rate(2000, 1000, 0.5, 0.005) == pytest.approx(0.005)
    assert linear_prune_rate(-5, 1000, 0.5, 0.005) == pytest.approx(0.5)


def test_unknown_decay_names_choices():
    with pytest.raises(ConfigError, match="cosine, linear"):
        prune_rate("step", 0, 10, 0.5, 0.0)


def test_piecewise_constant_takes_the_last_piece_reached_and_the_first_before_any():
    pieces = [(10, "a"), (20, "b"), (30, "c")]
    values = [piecewise_constant(pieces, t) for t in (0, 10, 19.5, 20, 29, 30, 1000)]
    assert values == ["a", "a", "a", "b", "b", "c", "c"]
