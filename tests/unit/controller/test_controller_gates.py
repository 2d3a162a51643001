from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from switchover.analysis.gates import judge_window, saturation_gate
from switchover.analysis.verdict import Outcome, combine
from switchover.metrics.base import LATENCY_BOUNDS, Histogram, Observation, Window
from switchover.plan.analysis import Analysis, Slo

W = Window(0.0, 10.0)
NB = len(LATENCY_BOUNDS) + 1


def obs(role: str, n: int, errors: int = 0, latency: float = 0.02, spread: float = 0.005, seed: int = 1,
        ejected: bool = False) -> Observation:
    rng = random.Random(seed)
    counts = [0] * NB
    for _ in range(n):
        v = max(0.0001, rng.gauss(latency, spread))
        counts[next((k for k, b in enumerate(LATENCY_BOUNDS) if v <= b), NB - 1)] += 1
    return Observation(role, W, n, errors, Histogram(LATENCY_BOUNDS, tuple(counts)), ejected=ejected)


def by_gate(verdicts: list) -> dict[str, Outcome]:  # type: ignore[type-arg]
    return {v.gate: v.outcome for v in verdicts}


def test_healthy_candidate_passes_every_gate() -> None:
    verdicts = judge_window(obs("canary", 300, seed=2), obs("stable", 2700, seed=3), weight=10, slo=Slo(),
                            analysis=Analysis())
    assert combine(verdicts) is Outcome.PASS
    assert {"slo.error_rate", "slo.p95", "baseline.p95_ratio", "baseline.error_rate",
            "baseline.latency_rank"} <= set(by_gate(verdicts))


def test_ten_percent_errors_fail_the_slo_and_the_baseline() -> None:
    verdicts = judge_window(obs("canary", 300, errors=30), obs("stable", 2700, errors=1), weight=10, slo=Slo(),
                            analysis=Analysis())
    gates = by_gate(verdicts)
    assert gates["slo.error_rate"] is Outcome.FAIL and gates["baseline.error_rate"] is Outcome.FAIL
    failing = next(v for v in verdicts if v.gate == "slo.error_rate")
    assert "10.00%" in failing.reason and failing.numbers["errors"] == 30


def test_slower_candidate_fails_the_ratio_and_rank_gates() -> None:
    verdicts = judge_window(obs("canary", 400, latency=0.060, spread=0.01), obs("stable", 2000, latency=0.030),
                            weight=10, slo=Slo(), analysis=Analysis())
    gates = by_gate(verdicts)
    assert gates["baseline.p95_ratio"] is Outcome.FAIL and gates["baseline.latency_rank"] is Outcome.FAIL
    assert gates["slo.p95"] is Outcome.PASS  # 60 ms is within the absolute 200 ms


def test_submillisecond_jitter_is_not_a_regression() -> None:
    verdicts = judge_window(obs("canary", 400, latency=0.0012, spread=0.0001),
                            obs("stable", 2000, latency=0.0009, spread=0.0001), weight=10, slo=Slo(),
                            analysis=Analysis())
    assert by_gate(verdicts)["baseline.p95_ratio"] is Outcome.PASS


def test_too_few_requests_is_inconclusive_never_pass() -> None:
    verdicts = judge_window(obs("canary", 50), obs("stable", 2000), weight=10, slo=Slo(), analysis=Analysis())
    assert combine(verdicts) is Outcome.INCONCLUSIVE
    assert by_gate(verdicts) == {"analysis.min_requests": Outcome.INCONCLUSIVE}


def test_no_data_is_inconclusive_and_ejection_fails() -> None:
    assert combine(judge_window(None, obs("stable", 2000), weight=10, slo=Slo(), analysis=Analysis())) \
        is Outcome.INCONCLUSIVE
    ejected = judge_window(obs("canary", 3, ejected=True), obs("stable", 2000), weight=10, slo=Slo(),
                           analysis=Analysis())
    assert combine(ejected) is Outcome.FAIL and by_gate(ejected)["candidate.ejected"] is Outcome.FAIL


def test_weight_zero_judges_nothing_and_weight_100_skips_baseline() -> None:
    assert judge_window(obs("canary", 0), obs("stable", 3000), weight=0, slo=Slo(), analysis=Analysis()) == []
    full = judge_window(obs("canary", 3000), obs("stable", 0), weight=100, slo=Slo(), analysis=Analysis())
    assert combine(full) is Outcome.PASS and not any(v.gate.startswith("baseline") for v in full)


def test_saturation_level_and_growth() -> None:
    a = Analysis()
    assert by_gate(saturation_gate([0.2, 0.3, 0.45], Slo(), a))["saturation.trend"] is Outcome.FAIL
    assert by_gate(saturation_gate([0.2, 0.21, 0.2], Slo(), a))["saturation.trend"] is Outcome.PASS
    assert by_gate(saturation_gate([0.9], Slo(), a))["slo.saturation"] is Outcome.FAIL
    assert saturation_gate([], Slo(), a) == []


@given(st.integers(0, 5000), st.integers(0, 5000), st.integers(1, 100))
def test_below_min_requests_never_passes(n: int, stable_n: int, weight: int) -> None:
    a = Analysis(min_requests=200)
    verdicts = judge_window(obs("canary", min(n, 199)), obs("stable", min(stable_n, 300)), weight=weight, slo=Slo(),
                            analysis=a)
    assert combine(verdicts) is not Outcome.PASS


def test_a_noisy_small_sample_p95_does_not_fail_the_ratio() -> None:
    # 30 candidate answers, two of them slow by chance: the point p95 breaches x1.1, the tail is not
    # significantly heavier than stable's, which has the same share of slow answers.
    fast, slow = 0.002, 0.014
    canary = Observation("canary", W, 30, 0, hist([fast] * 28 + [slow] * 2))
    stable = Observation("stable", W, 300, 0, hist([fast] * 285 + [0.008] * 10 + [slow] * 5))
    verdict = next(v for v in judge_window(canary, stable, weight=10, slo=Slo(), analysis=Analysis(min_requests=20))
                   if v.gate == "baseline.p95_ratio")
    assert verdict.numbers["ratio"] > 1.1 and verdict.outcome is Outcome.PASS


def hist(values: list[float]) -> Histogram:
    counts = [0] * NB
    for v in values:
        counts[next((k for k, b in enumerate(LATENCY_BOUNDS) if v <= b), NB - 1)] += 1
    return Histogram(LATENCY_BOUNDS, tuple(counts))
