"""The metric gates for one interval (pure): absolute SLOs, candidate versus stable in the same
window, saturation trend, minimum requests.

Inputs are the two roles' ``Observation`` for the window (``None`` when the provider had no data),
the candidate's weight and recent saturation readings; the output is one ``Verdict`` per gate with
its numbers. A gate that cannot judge says inconclusive, never pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from switchover.analysis.stats import count_above, mann_whitney, quantile, two_proportion
from switchover.analysis.verdict import Outcome, Verdict
from switchover.metrics.base import Observation
from switchover.plan.analysis import Analysis, Slo

PASS, FAIL, INCONCLUSIVE = Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE


def latency_quantile(obs: Observation, q: float) -> float | None:
    """Seconds: from the histogram where there is one, else from the source's quantiles."""
    if obs.histogram is not None and obs.histogram.count:
        return quantile(obs.histogram, q)
    return obs.quantiles.get(q)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def slo_gates(canary: Observation, slo: Slo) -> list[Verdict]:
    """Absolute thresholds on the candidate's window."""
    out: list[Verdict] = []
    rate = canary.error_rate
    numbers = {"error_rate": rate, "errors": float(canary.errors), "requests": float(canary.requests),
               "limit": slo.error_rate}
    if rate > slo.error_rate:
        out.append(Verdict("slo.error_rate", FAIL,
                           f"candidate error rate {rate:.2%} ({canary.errors}/{canary.requests}) above {slo.error_rate:.2%}",
                           numbers))
    else:
        out.append(Verdict("slo.error_rate", PASS, f"candidate error rate {rate:.2%} within {slo.error_rate:.2%}",
                           numbers))
    limits = [(0.95, "p95", slo.p95_ms)]
    if slo.p99_ms is not None:
        limits.append((0.99, "p99", slo.p99_ms))
    for q, label, limit_ms in limits:
        value = latency_quantile(canary, q)
        gate = f"slo.{label}"
        if value is None:
            out.append(Verdict(gate, INCONCLUSIVE, f"no candidate latency for {label}", {"limit_ms": limit_ms}))
            continue
        nums = {f"{label}_ms": _ms(value), "limit_ms": limit_ms}
        if value * 1000.0 > limit_ms:
            out.append(Verdict(gate, FAIL, f"candidate {label} {_ms(value)} ms above {limit_ms:g} ms", nums))
        else:
            out.append(Verdict(gate, PASS, f"candidate {label} {_ms(value)} ms within {limit_ms:g} ms", nums))
    return out


def _p95_ratio(canary: Observation, stable: Observation, c95: float, s95: float, analysis: Analysis) -> Verdict:
    """Candidate p95 against ``p95_ratio`` x stable's. A p95 from a few dozen answers is mostly noise,
    so a breach of the point estimate fails only when it is significant: the candidate has
    significantly more answers slower than the threshold than stable has (two-proportion test on
    the histograms' tails). Differences under ``latency_floor_ms`` never fail."""
    base = analysis.baseline
    ratio = c95 / s95 if s95 > 0 else (1.0 if c95 == 0 else float("inf"))
    threshold = max(base.p95_ratio * s95, s95 + base.latency_floor_ms / 1000.0)
    nums = {"candidate_p95_ms": _ms(c95), "stable_p95_ms": _ms(s95), "ratio": round(ratio, 4), "limit": base.p95_ratio,
            "threshold_ms": _ms(threshold)}
    text = f"candidate p95 {_ms(c95)} ms vs stable {_ms(s95)} ms (x{ratio:.2f}, limit x{base.p95_ratio:g})"
    if c95 <= threshold:
        return Verdict("baseline.p95_ratio", PASS, text, nums)
    if canary.histogram is None or stable.histogram is None:
        return Verdict("baseline.p95_ratio", FAIL, text, nums)  # quantiles only: the point estimate is all we have
    above_c = round(count_above(canary.histogram, threshold))
    above_s = round(count_above(stable.histogram, threshold))
    tail = two_proportion(above_c, canary.histogram.count, above_s, stable.histogram.count)
    p_value = tail.p_value if tail is not None else 1.0
    nums.update({"candidate_above": float(above_c), "stable_above": float(above_s), "p_value": p_value,
                 "alpha": base.tail_alpha})
    text += f"; slower than {_ms(threshold)} ms: {above_c}/{canary.requests} vs {above_s}/{stable.requests} (p={p_value:.3g})"
    return Verdict("baseline.p95_ratio", FAIL if p_value < base.tail_alpha else PASS, text, nums)


def baseline_gates(canary: Observation, stable: Observation, analysis: Analysis) -> list[Verdict]:
    """Candidate versus stable in the same window."""
    base = analysis.baseline
    out: list[Verdict] = []
    c95, s95 = latency_quantile(canary, 0.95), latency_quantile(stable, 0.95)
    if c95 is None or s95 is None:
        out.append(Verdict("baseline.p95_ratio", INCONCLUSIVE, "no latency to compare", {}))
    else:
        out.append(_p95_ratio(canary, stable, c95, s95, analysis))

    prop = two_proportion(canary.errors, canary.requests, stable.errors, stable.requests)
    if prop is None:
        out.append(Verdict("baseline.error_rate", INCONCLUSIVE, "no requests to compare", {}))
    else:
        nums = {"candidate_rate": prop.candidate_rate, "stable_rate": prop.stable_rate, "z": round(prop.z, 4),
                "p_value": prop.p_value, "alpha": base.error_alpha}
        worse = prop.p_value < base.error_alpha and prop.candidate_rate > prop.stable_rate
        text = (f"candidate errors {prop.candidate_rate:.2%} vs stable {prop.stable_rate:.2%} "
                f"(p={prop.p_value:.3g}, alpha {base.error_alpha:g})")
        out.append(Verdict("baseline.error_rate", FAIL if worse else PASS, text, nums))

    if canary.histogram is not None and stable.histogram is not None:
        rank = mann_whitney(canary.histogram, stable.histogram)
        if rank is None:
            out.append(Verdict("baseline.latency_rank", INCONCLUSIVE, "no latency to rank", {}))
        else:
            c50, s50 = quantile(canary.histogram, 0.5) or 0.0, quantile(stable.histogram, 0.5) or 0.0
            nums = {"effect": round(rank.effect, 4), "p_value": rank.p_value, "alpha": base.rank_alpha,
                    "effect_limit": base.rank_effect, "candidate_p50_ms": _ms(c50), "stable_p50_ms": _ms(s50)}
            worse = (rank.p_value < base.rank_alpha and rank.effect > base.rank_effect
                     and (c50 - s50) * 1000.0 > base.latency_floor_ms)
            text = (f"P(candidate slower) {rank.effect:.2f} (limit {base.rank_effect:g}), "
                    f"Mann-Whitney p={rank.p_value:.3g}, p50 {_ms(c50)} vs {_ms(s50)} ms")
            out.append(Verdict("baseline.latency_rank", FAIL if worse else PASS, text, nums))
    return out


def saturation_gate(history: Sequence[float], slo: Slo, analysis: Analysis) -> list[Verdict]:
    """Level and trend of the candidate's saturation; ``history`` is oldest first, the last is now."""
    if not history:
        return []
    now = history[-1]
    out: list[Verdict] = []
    nums = {"saturation": now, "limit": slo.saturation}
    if now > slo.saturation:
        out.append(Verdict("slo.saturation", FAIL, f"saturation {now:.0%} above {slo.saturation:.0%}", nums))
    else:
        out.append(Verdict("slo.saturation", PASS, f"saturation {now:.0%} within {slo.saturation:.0%}", nums))
    n = analysis.saturation_windows
    recent = list(history[-n:])
    if len(recent) < n:
        out.append(Verdict("saturation.trend", INCONCLUSIVE, f"{len(recent)} of {n} windows for the trend", {}))
        return out
    rising = all(b > a for a, b in itertools.pairwise(recent))
    growth = recent[-1] - recent[0]
    tnums = {"growth": round(growth, 4), "windows": float(n), "growth_limit": analysis.saturation_growth}
    if rising and growth >= analysis.saturation_growth:
        out.append(Verdict("saturation.trend", FAIL,
                           f"saturation rising for {n} windows ({recent[0]:.0%} -> {recent[-1]:.0%})", tnums))
    else:
        out.append(Verdict("saturation.trend", PASS, f"saturation not growing over {n} windows", tnums))
    return out


def judge_window(canary: Observation | None, stable: Observation | None, *, weight: int, slo: Slo,
                 analysis: Analysis, saturation: Sequence[float] = ()) -> list[Verdict]:
    """Every metric gate's verdict for one window at the given candidate weight.

    At weight 0 the candidate takes no user traffic: nothing to judge (an empty list). An ejected
    candidate fails whatever the counts. Below ``min_requests`` the candidate's gates are
    inconclusive. At weight 100 stable has no users, so the baseline comparison is skipped.
    """
    if weight <= 0:
        return []
    if canary is None or stable is None:
        missing = ", ".join(r for r, o in (("candidate", canary), ("stable", stable)) if o is None)
        out = [Verdict("metrics.provider", INCONCLUSIVE, f"metrics provider returned no data for {missing}", {})]
        if canary is not None and canary.ejected:
            out.append(Verdict("candidate.ejected", FAIL, "the proxy ejected the candidate after failures", {}))
        return out
    out = []
    if canary.ejected:
        out.append(Verdict("candidate.ejected", FAIL, "the proxy ejected the candidate after failures",
                           {"errors": float(canary.errors), "requests": float(canary.requests)}))
    min_n = analysis.min_requests
    if canary.requests < min_n:
        out.append(Verdict("analysis.min_requests", INCONCLUSIVE,
                           f"candidate served {canary.requests} requests in the window, fewer than {min_n}",
                           {"requests": float(canary.requests), "min_requests": float(min_n)}))
    else:
        out.extend(slo_gates(canary, slo))
        if weight < 100:
            if stable.requests < min_n:
                out.append(Verdict("baseline", INCONCLUSIVE,
                                   f"stable served {stable.requests} requests in the window, fewer than {min_n}",
                                   {"requests": float(stable.requests), "min_requests": float(min_n)}))
            else:
                out.extend(baseline_gates(canary, stable, analysis))
    out.extend(saturation_gate(saturation, slo, analysis))
    return out
