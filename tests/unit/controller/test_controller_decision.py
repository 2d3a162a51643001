from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switchover.analysis.decision import Action, Interval, decide, may_advance
from switchover.analysis.verdict import Outcome
from switchover.plan.analysis import Analysis

P, F, N = Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE


def hist(*outcomes: Outcome, step: float = 10.0) -> list[Interval]:
    return [Interval((i + 1) * step, o, f"r{i}") for i, o in enumerate(outcomes)]


def test_failure_limit_consecutive_fails_roll_back() -> None:
    a = Analysis(failure_limit=3)
    assert decide(hist(F, F), 20, a).action is Action.CONTINUE
    d = decide(hist(F, F, F), 30, a)
    assert d.action is Action.ROLLBACK and "3 consecutive failed" in d.reason and "r2" in d.reason
    assert decide(hist(F, F, P, F, F), 50, a).action is Action.CONTINUE


def test_a_breach_lasting_max_breach_rolls_back_through_inconclusive() -> None:
    a = Analysis(failure_limit=3, max_breach=60, inconclusive_limit=100)
    h = hist(F, N, F, N, F, N, F, N)
    d = decide(h, 80, a)
    assert d.action is Action.ROLLBACK and "max_breach" in d.reason


def test_inconclusive_limit_pauses_or_rolls_back_as_the_plan_says() -> None:
    h = hist(*([N] * 6))
    assert decide(h, 60, Analysis(inconclusive_limit=6)).action is Action.PAUSE
    assert decide(h, 60, Analysis(inconclusive_limit=6, on_inconclusive="rollback")).action is Action.ROLLBACK
    assert decide(h[:5], 50, Analysis(inconclusive_limit=6)).action is Action.CONTINUE


def test_advance_needs_a_passing_latest_interval_since() -> None:
    assert may_advance(hist(F, P), since=0)
    assert not may_advance(hist(P, F), since=0)
    assert not may_advance(hist(P, P), since=25)  # nothing judged since the restart
    assert not may_advance([], since=0)


@given(st.lists(st.sampled_from([P, F, N]), max_size=30), st.integers(1, 5))
def test_fewer_than_failure_limit_fails_in_a_row_never_roll_back_by_count(outcomes: list[Outcome], limit: int) -> None:
    a = Analysis(failure_limit=limit, max_breach=1e9, inconclusive_limit=1000)
    h = hist(*outcomes)
    run = 0
    for o in reversed(outcomes):
        if o is not F:
            break
        run += 1
    d = decide(h, len(outcomes) * 10.0, a)
    assert (d.action is Action.ROLLBACK) == (run >= limit)


@given(st.lists(st.sampled_from([P, N]), max_size=30))
def test_no_fail_never_rolls_back_when_inconclusive_pauses(outcomes: list[Outcome]) -> None:
    d = decide(hist(*outcomes), 1e6, Analysis(on_inconclusive="pause"))
    assert d.action is not Action.ROLLBACK
