from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchover.analysis.stats import mann_whitney, normal_cdf, normal_sf, quantile, two_proportion
from switchover.metrics.base import LATENCY_BOUNDS, Histogram

NB = len(LATENCY_BOUNDS) + 1


def hist_of(values: list[float]) -> Histogram:
    counts = [0] * NB
    for v in values:
        i = next((k for k, b in enumerate(LATENCY_BOUNDS) if v <= b), NB - 1)
        counts[i] += 1
    return Histogram(LATENCY_BOUNDS, tuple(counts), sum(values))


counts_st = st.lists(st.integers(0, 50), min_size=NB, max_size=NB).map(tuple)


def test_normal_tails_match_known_values() -> None:
    assert normal_cdf(1.959964) == pytest.approx(0.975, abs=1e-6)
    assert normal_sf(1.644854) == pytest.approx(0.05, abs=1e-6)
    assert normal_sf(8.0) > 0  # no underflow to 0 in the far tail at this distance


def test_quantile_interpolates_within_the_bucket() -> None:
    # 100 answers between 100 and 120 ms: p95 is inside that bucket.
    h = hist_of([0.11] * 100)
    p95 = quantile(h, 0.95)
    assert p95 is not None and 0.1 < p95 <= 0.12
    assert quantile(Histogram(LATENCY_BOUNDS, (0,) * NB), 0.95) is None


def test_quantile_tracks_real_p95_within_bucket_width() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(0.05), 0.5) for _ in range(5000)]
    true = sorted(values)[int(0.95 * len(values))]
    got = quantile(hist_of(values), 0.95)
    assert got is not None and abs(got - true) / true < 0.25


@given(counts_st, st.floats(0.01, 0.99))
def test_quantile_is_monotone_in_q(counts: tuple[int, ...], q: float) -> None:
    h = Histogram(LATENCY_BOUNDS, counts)
    a, b = quantile(h, q * 0.5), quantile(h, q)
    if h.count:
        assert a is not None and b is not None and a <= b
    else:
        assert a is None and b is None


def test_rank_test_flags_a_slower_candidate_and_not_an_equal_one() -> None:
    rng = random.Random(1)
    stable = hist_of([rng.uniform(0.010, 0.030) for _ in range(500)])
    same = hist_of([rng.uniform(0.010, 0.030) for _ in range(500)])
    slower = hist_of([rng.uniform(0.020, 0.045) for _ in range(500)])
    eq = mann_whitney(same, stable)
    worse = mann_whitney(slower, stable)
    assert eq is not None and worse is not None
    assert eq.p_value > 0.01 and 0.4 < eq.effect < 0.6
    assert worse.p_value < 1e-6 and worse.effect > 0.75


@given(counts_st, counts_st)
@settings(max_examples=150)
def test_rank_effect_is_a_probability_and_antisymmetric(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    ha, hb = Histogram(LATENCY_BOUNDS, a), Histogram(LATENCY_BOUNDS, b)
    ab, ba = mann_whitney(ha, hb), mann_whitney(hb, ha)
    if ha.count == 0 or hb.count == 0:
        assert ab is None and ba is None
        return
    assert ab is not None and ba is not None
    assert 0.0 <= ab.effect <= 1.0 and 0.0 <= ab.p_value <= 1.0
    assert ab.effect + ba.effect == pytest.approx(1.0)


@given(counts_st)
def test_identical_histograms_are_never_significant(a: tuple[int, ...]) -> None:
    h = Histogram(LATENCY_BOUNDS, a)
    result = mann_whitney(h, h)
    if result is not None:
        assert result.effect == pytest.approx(0.5) and result.p_value >= 0.45


def test_two_proportion_detects_ten_percent_errors_against_none() -> None:
    result = two_proportion(20, 200, 0, 1800)
    assert result is not None and result.p_value < 1e-6
    calm = two_proportion(1, 200, 9, 1800)
    assert calm is not None and calm.p_value > 0.2
    assert two_proportion(0, 0, 1, 10) is None
    assert two_proportion(0, 100, 0, 100) == two_proportion(0, 100, 0, 100)


@given(st.integers(0, 500), st.integers(1, 500), st.integers(0, 500), st.integers(1, 500))
def test_more_candidate_errors_never_lower_the_evidence(e1: int, n1: int, e2: int, n2: int) -> None:
    e1, e2 = min(e1, n1), min(e2, n2)
    base = two_proportion(e1, n1, e2, n2)
    assert base is not None and 0.0 <= base.p_value <= 1.0
    if e1 < n1:
        more = two_proportion(e1 + 1, n1, e2, n2)
        assert more is not None and more.z >= base.z - 1e-9


@given(counts_st, st.floats(0.0, 70.0), st.floats(0.0, 70.0))
def test_count_above_is_monotone_and_bounded(counts: tuple[int, ...], a: float, b: float) -> None:
    from switchover.analysis.stats import count_above

    h = Histogram(LATENCY_BOUNDS, counts)
    lo, hi = min(a, b), max(a, b)
    assert count_above(h, 0.0) == pytest.approx(h.count)
    assert 0.0 <= count_above(h, hi) <= count_above(h, lo) + 1e-9 <= h.count + 1e-9
