"""Statistics over latency histograms and error counts (pure; no scipy).

- ``quantile``: p95/p99 interpolated linearly inside the bucket that holds the rank, as Prometheus'
  ``histogram_quantile`` does.
- ``mann_whitney``: Mann-Whitney U on bucketed latencies (Kayenta's judge uses the same test). Every
  observation in one bucket is a tie; ties get mid-ranks and the variance its tie correction; the
  p-value comes from the normal approximation with continuity correction.
- ``two_proportion``: one-sided z-test that the candidate's error rate is higher than stable's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from switchover.metrics.base import Histogram

_NORMAL = NormalDist()


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z (upper tail), accurate in the far tail too."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def normal_cdf(z: float) -> float:
    return _NORMAL.cdf(z)


def quantile(hist: Histogram, q: float) -> float | None:
    """The q-quantile (0 < q < 1) in seconds, or None for an empty histogram.

    The first bucket starts at 0; a rank in the +Inf bucket answers the highest finite bound (as
    Prometheus does): the true value is at least that.
    """
    if not 0.0 < q < 1.0:
        raise ValueError("q must be between 0 and 1")
    total = hist.count
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(hist.counts):
        if count and seen + count >= rank:
            if i >= len(hist.bounds):
                return hist.bounds[-1]
            lower = hist.bounds[i - 1] if i > 0 else 0.0
            upper = hist.bounds[i]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return hist.bounds[-1]


def count_above(hist: Histogram, threshold: float) -> float:
    """How many observations exceed ``threshold`` seconds (linear inside the bucket that holds it)."""
    out = 0.0
    lower = 0.0
    for i, count in enumerate(hist.counts):
        upper = hist.bounds[i] if i < len(hist.bounds) else math.inf
        if count:
            if lower >= threshold:
                out += count
            elif upper > threshold:
                out += count * (1.0 if math.isinf(upper) else (upper - threshold) / (upper - lower))
        lower = upper
    return out


@dataclass(frozen=True)
class RankTest:
    u: float  # the candidate's U statistic
    effect: float  # P(candidate slower) + P(tie)/2, 0.5 = same distribution
    p_value: float  # one-sided: candidate slower than stable
    n_candidate: int
    n_stable: int


def mann_whitney(candidate: Histogram, stable: Histogram) -> RankTest | None:
    """One-sided Mann-Whitney U test that candidate latencies are larger; None if either is empty."""
    if candidate.bounds != stable.bounds:
        raise ValueError("histograms with different bounds")
    n_c, n_s = candidate.count, stable.count
    if n_c == 0 or n_s == 0:
        return None
    n = n_c + n_s
    rank_sum = 0.0
    below = 0
    tie_term = 0.0
    for c, s in zip(candidate.counts, stable.counts, strict=True):
        t = c + s
        if t == 0:
            continue
        mid_rank = below + (t + 1) / 2.0
        rank_sum += c * mid_rank
        tie_term += float(t) ** 3 - t
        below += t
    u = rank_sum - n_c * (n_c + 1) / 2.0
    mean = n_c * n_s / 2.0
    variance = n_c * n_s / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    effect = u / (n_c * n_s)
    if variance <= 0:
        # Every observation tied: no evidence of a difference.
        return RankTest(u, effect, 1.0, n_c, n_s)
    z = (u - mean - 0.5) / math.sqrt(variance)
    return RankTest(u, effect, normal_sf(z), n_c, n_s)


@dataclass(frozen=True)
class ProportionTest:
    candidate_rate: float
    stable_rate: float
    z: float
    p_value: float  # one-sided: candidate rate higher


def two_proportion(candidate_errors: int, candidate_n: int, stable_errors: int, stable_n: int) -> ProportionTest | None:
    """Pooled two-proportion z-test, one-sided (candidate worse); None if either side has no requests."""
    if candidate_n <= 0 or stable_n <= 0:
        return None
    p_c = candidate_errors / candidate_n
    p_s = stable_errors / stable_n
    pooled = (candidate_errors + stable_errors) / (candidate_n + stable_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / candidate_n + 1 / stable_n))
    if se == 0:
        # No errors anywhere (or errors everywhere): nothing distinguishes the two.
        return ProportionTest(p_c, p_s, 0.0, 1.0)
    z = (p_c - p_s) / se
    return ProportionTest(p_c, p_s, z, normal_sf(z))
