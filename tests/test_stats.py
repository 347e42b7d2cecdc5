"""ibci.stats against cases worked out by hand."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from ibci.report.stats import BOOTSTRAP_MIN_N, bootstrap_diff_ci, combined_std, summarize, welch_p, within_k_std


def test_summary_of_one_to_four():
    s = summarize([1, 2, 3, 4])
    assert s.mean == 2.5
    # Squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, over n - 1 = 3.
    assert s.std == pytest.approx(math.sqrt(5 / 3), abs=1e-15)
    assert s.n == 4


def test_summary_of_one_value_has_no_spread():
    s = summarize([1.93])
    assert (s.mean, s.n) == (1.93, 1)
    assert math.isnan(s.std)


def test_summary_shows_n_and_never_a_nan_spread():
    assert str(summarize([1, 2, 3, 4])) == "2.50 ± 1.29 (n = 4)"  # sqrt(5/3) = 1.29
    assert str(summarize([1.93])) == "1.93 (n = 1)"
    assert str(summarize([])) == "no values (n = 0)"


def test_summary_of_nothing():
    s = summarize([])
    assert s.n == 0 and math.isnan(s.mean) and math.isnan(s.std)


def test_summary_keeps_gaps_visible():
    # A None (a seed with no value) must not silently shrink n or vanish from the mean.
    s = summarize([1.0, None, 3.0])
    assert s.n == 3 and math.isnan(s.mean)


def test_welch_p_with_two_degrees_of_freedom_in_closed_form():
    # a = [0, 2], b = [3, 5]: means 1 and 4, both variances 2, so se = sqrt(2/2 + 2/2) = sqrt(2),
    # t = -3 / sqrt(2), and the Welch-Satterthwaite df = (1 + 1)^2 / (1^2/1 + 1^2/1) = 2.
    # With 2 df the t CDF is 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - |t| / sqrt(2 + t^2) = 1 - 3/sqrt(13).
    assert welch_p([0, 2], [3, 5]) == pytest.approx(1 - 3 / math.sqrt(13), rel=1e-12)


def test_welch_p_from_the_formula_with_unequal_variances():
    a, b = np.array([1.9, 2.0, 2.1, 2.05, 1.95]), np.array([1.7, 1.9, 1.6, 1.8])
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    assert welch_p(a, b) == pytest.approx(2 * sps.t.sf(abs(t), df), rel=1e-12)


def test_welch_p_needs_two_values_per_group():
    assert math.isnan(welch_p([1.0], [2.0, 3.0]))
    assert math.isnan(welch_p([], []))


def test_welch_p_of_constant_equal_groups_is_nan_not_an_error():
    assert math.isnan(welch_p([2.0, 2.0, 2.0], [2.0, 2.0]))


def test_bootstrap_ci_contains_a_clear_difference():
    a, b = [5.0, 5.1, 4.9, 5.05, 4.95], [1.0, 1.1, 0.9, 1.05, 0.95]
    low, high = bootstrap_diff_ci(a, b)
    assert low < 4.0 < high
    # No resample can leave the range of the data: each resampled mean lies within its group's range.
    assert 3.8 <= low and high <= 4.2


def test_bootstrap_ci_is_deterministic_for_a_seed():
    a, b = [1.9, 2.3, 2.0, 2.2], [1.8, 1.7, 2.1]
    assert bootstrap_diff_ci(a, b, seed=7) == bootstrap_diff_ci(a, b, seed=7)
    assert bootstrap_diff_ci(a, b, seed=7) != bootstrap_diff_ci(a, b, seed=8)


def test_bootstrap_ci_has_zero_width_when_all_values_are_equal():
    low, high = bootstrap_diff_ci([2.0, 2.0, 2.0], [1.5, 1.5, 1.5, 1.5], n_resamples=500)
    assert low == high == 0.5


def test_bootstrap_ci_needs_three_values_per_group():
    # Two seeds resample to three means only ([1, 2]: 1, 1.5, 2), a falsely narrow interval: none is given.
    for a, b in [([1.0], [2.0, 3.0, 4.0]), ([1.0, 2.0], [2.0, 3.0, 4.0]), ([1.0, 2.0, 3.0], [2.0, 3.0]), ([], [])]:
        assert all(math.isnan(x) for x in bootstrap_diff_ci(a, b)), (a, b)
    assert BOOTSTRAP_MIN_N == 3
    assert not any(math.isnan(x) for x in bootstrap_diff_ci([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]))


def test_bootstrap_ci_of_three_seeds_by_hand():
    # a = [0, 0, 3], b = [0, 0, 0]: a resampled mean is k, where k ~ Binomial(3, 1/3) counts the 3s drawn:
    # P(k=0) = 8/27, P(1) = 12/27, P(2) = 6/27, P(3) = 1/27. The 2.5% quantile of mean(a) - mean(b) is 0
    # (8/27 of the mass is there) and the 97.5% quantile is 3 (P(k <= 2) = 26/27 < 0.975).
    # With 10,000 resamples the share of 3s is 1/27 = 3.7% +- 0.19%, far from the 2.5% where the interval would change.
    assert bootstrap_diff_ci([0.0, 0.0, 3.0], [0.0, 0.0, 0.0]) == (0.0, 3.0)
    assert bootstrap_diff_ci([0.0, 0.0, 0.0], [0.0, 0.0, 3.0]) == (-3.0, 0.0)
    # A 20% interval runs from the 40% to the 60% quantile, both at k = 1: P(k=0) = 29.6% < 40% and
    # P(k <= 1) = 74.1% > 60%, each more than 20 binomial standard deviations away.
    assert bootstrap_diff_ci([0.0, 0.0, 3.0], [0.0, 0.0, 0.0], level=0.2) == (1.0, 1.0)


def test_combined_std_is_a_right_triangle():
    assert combined_std(0.75, 1.0) == 1.25


def test_within_two_combined_std_at_and_past_the_edge():
    # Combined std sqrt(0.75^2 + 1^2) = 1.25, so two of them are 2.5 (all exact in binary).
    assert within_k_std(10.0, 0.75, 12.5, 1.0)
    assert within_k_std(12.5, 0.75, 10.0, 1.0)
    assert not within_k_std(10.0, 0.75, 12.625, 1.0)
    assert within_k_std(10.0, 0.75, 12.625, 1.0, k=3.0)


def test_within_is_not_claimed_without_a_spread():
    assert not within_k_std(2.0, math.nan, 2.0, 0.1)
    assert not within_k_std(2.0, 0.1, math.nan, 0.1)
