"""From a history of interval outcomes to what the controller does next (pure).

Like Argo Rollouts' analysis: ``failure_limit`` consecutive failed intervals roll back; so does a
breach lasting ``max_breach`` (fails not cleared by a passing interval, inconclusive ones included);
``inconclusive_limit`` consecutive inconclusive intervals pause or roll back, as the plan says. A
hold may end only when the latest interval passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from switchover.analysis.verdict import Outcome
from switchover.plan.analysis import Analysis


@dataclass(frozen=True)
class Interval:
    """One evaluated interval: when it ended, its combined outcome, and why (for messages)."""

    at: float
    outcome: Outcome
    reason: str = ""


class Action(StrEnum):
    CONTINUE = "continue"
    ROLLBACK = "rollback"
    PAUSE = "pause"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    consecutive_failures: int = 0
    consecutive_inconclusive: int = 0
    breach_seconds: float = 0.0


def _streak(history: Sequence[Interval], outcome: Outcome) -> int:
    n = 0
    for item in reversed(history):
        if item.outcome is not outcome:
            break
        n += 1
    return n


def breach_start(history: Sequence[Interval]) -> float | None:
    """When the current breach began: the first fail after the last pass, if any fail since then."""
    start: float | None = None
    for item in history:
        if item.outcome is Outcome.PASS:
            start = None
        elif item.outcome is Outcome.FAIL and start is None:
            start = item.at
    return start


def decide(history: Sequence[Interval], now: float, analysis: Analysis) -> Decision:
    """What to do after the latest interval. ``history`` is oldest first."""
    fails = _streak(history, Outcome.FAIL)
    inconclusive = _streak(history, Outcome.INCONCLUSIVE)
    start = breach_start(history)
    breach = max(0.0, now - start) if start is not None else 0.0
    last_reason = history[-1].reason if history else ""
    if fails >= analysis.failure_limit:
        return Decision(Action.ROLLBACK, f"{fails} consecutive failed intervals (failure_limit "
                        f"{analysis.failure_limit}): {last_reason}", fails, inconclusive, breach)
    if start is not None and breach >= analysis.max_breach:
        return Decision(Action.ROLLBACK, f"breach lasting {breach:.0f}s (max_breach {analysis.max_breach:g}s): "
                        f"{last_reason}", fails, inconclusive, breach)
    if inconclusive >= analysis.inconclusive_limit:
        action = Action.ROLLBACK if analysis.on_inconclusive == "rollback" else Action.PAUSE
        return Decision(action, f"{inconclusive} consecutive inconclusive intervals (inconclusive_limit "
                        f"{analysis.inconclusive_limit}): {last_reason}", fails, inconclusive, breach)
    return Decision(Action.CONTINUE, "", fails, inconclusive, breach)


def may_advance(history: Sequence[Interval], since: float) -> bool:
    """A hold may end when the latest interval evaluated at or after ``since`` passed."""
    recent = [item for item in history if item.at >= since]
    return bool(recent) and recent[-1].outcome is Outcome.PASS
