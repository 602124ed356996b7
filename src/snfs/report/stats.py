"""Summary statistics for a handful of seeds: mean, standard error, 95% confidence interval.

The standard error is the sample standard deviation (n - 1 in the denominator) over sqrt(n);
it is undefined (nan) for one run. The 95% interval uses Student's t with n - 1 degrees of
freedom, as the paper's sensitivity figures do for their runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

# Two-sided 95% quantiles t_{0.975, df} for df = 1..30.
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)
Z975 = 1.959964


def t975(df: int) -> float:
    """Student's t quantile 0.975 for ``df`` degrees of freedom (table to 30, then a series in 1/df)."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    se: float  # nan when n < 2

    @property
    def ci95(self) -> float:
        """Half-width of the 95% confidence interval of the mean (nan when n < 2)."""
        return t975(self.n - 1) * self.se if self.n >= 2 else math.nan


def summarise(values: Iterable[float]) -> Summary:
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return Summary(0, math.nan, math.nan)
    mean = sum(xs) / n
    if n == 1:
        return Summary(1, mean, math.nan)
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return Summary(n, mean, math.sqrt(var / n))
