"""Statistics for comparing cells: plain functions over arrays of per-seed values.

Every spread is the sample standard deviation (ddof=1), as the tables print it.
A group of fewer than two seeds has no spread: its std and Welch p-value are
NaN rather than an error, so a partly finished sweep still tabulates (the
tables flag such cells). A bootstrap interval needs three seeds in each group
(`bootstrap_diff_ci` says why); below that it is NaN too, shown as n/a.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
from scipy import stats as sps

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
BOOTSTRAP_MIN_N = 3  # fewest seeds per group for which a bootstrap interval is reported


class Summary(NamedTuple):
    mean: float
    std: float  # ddof=1; NaN when n < 2
    n: int

    def __str__(self) -> str:
        """`2.50 ± 1.29 (n = 4)`; without a spread, `1.93 (n = 1)`, never `± nan`."""
        if self.n == 0:
            return "no values (n = 0)"
        spread = "" if math.isnan(self.std) else f" ± {self.std:.2f}"
        return f"{self.mean:.2f}{spread} (n = {self.n})"


def _values(x) -> np.ndarray:
    """A 1-D float array; None becomes NaN so that a gap is visible, not dropped."""
    return np.array([np.nan if v is None else v for v in np.ravel(np.asarray(x, dtype=object))], dtype=float)


def summarize(x) -> Summary:
    """Mean, sample std (ddof=1) and count of the per-seed values `x`.

    NaN values propagate into the mean: the caller decides which seeds count
    (the tables drop diverged seeds and say so), this function drops nothing.
    """
    a = _values(x)
    n = int(a.size)
    mean = float(a.mean()) if n else math.nan
    std = float(a.std(ddof=1)) if n >= 2 else math.nan
    return Summary(mean, std, n)


def bootstrap_diff_ci(
    a,
    b,
    *,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b).

    The seeds of each group are resampled with replacement, each group on its
    own (the groups are independent runs, not paired by seed). The generator
    is seeded from `seed` so that a table is the same every time it is built.

    Returns (NaN, NaN) when either group has fewer than BOOTSTRAP_MIN_N = 3
    values, because the interval would claim a certainty the data lack. One
    seed resampled is always itself: zero width. Two seeds [a1, a2] resample
    to only three distinct means, a1, (a1 + a2) / 2 and a2, with
    probabilities 1/4, 1/2, 1/4, so the 95% interval of that group's mean is
    just [min, max] of its two values: about 1.1 sigma wide on average, where
    an honest 95% interval for the mean of two draws (Student t, 1 degree of
    freedom) is 12.7 standard errors, about 9 sigma, on either side. From three
    seeds on a group has 10 distinct resampled means.
    """
    a, b = _values(a), _values(b)
    if a.size < BOOTSTRAP_MIN_N or b.size < BOOTSTRAP_MIN_N:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means_a = a[rng.integers(0, a.size, size=(n_resamples, a.size))].mean(axis=1)
    means_b = b[rng.integers(0, b.size, size=(n_resamples, b.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means_a - means_b, [tail, 1.0 - tail])
    return float(low), float(high)


def welch_p(a, b) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) of mean(a) = mean(b).

    NaN when either group has fewer than two values, or when both have zero
    spread (the statistic is then undefined).
    """
    a, b = _values(a), _values(b)
    if a.size < 2 or b.size < 2:
        return math.nan
    # scipy warns on zero-variance input; its NaN result is what we report.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        p = sps.ttest_ind(a, b, equal_var=False).pvalue
    return float(p)


def combined_std(std_a: float, std_b: float) -> float:
    """sqrt(std_a^2 + std_b^2): the spread of a difference of two independent results."""
    return math.sqrt(std_a**2 + std_b**2)


def within_k_std(ours_mean: float, ours_std: float, paper_mean: float, paper_std: float, k: float = 2.0) -> bool:
    """Whether |ours - paper| <= k * combined std, our reproduction check.

    False when any input is NaN: agreement that cannot be measured is not claimed.
    """
    values = (ours_mean, ours_std, paper_mean, paper_std)
    if any(v is None or math.isnan(v) for v in values):
        return False
    return abs(ours_mean - paper_mean) <= k * combined_std(ours_std, paper_std)
