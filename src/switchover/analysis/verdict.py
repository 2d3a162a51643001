"""Verdicts: what every gate returns per interval (pass / fail / inconclusive, with numbers and reasons)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Verdict:
    gate: str  # e.g. "slo.error_rate", "baseline.p95_ratio", "shadow.budget", "cdc.lag"
    outcome: Outcome
    reason: str  # for people: which gate, which numbers
    numbers: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"gate": self.gate, "outcome": str(self.outcome), "reason": self.reason, "numbers": dict(self.numbers)}


def combine(verdicts: list[Verdict]) -> Outcome:
    """Any fail fails; else any inconclusive is inconclusive; an empty list is inconclusive, never pass."""
    if any(v.outcome is Outcome.FAIL for v in verdicts):
        return Outcome.FAIL
    if not verdicts or any(v.outcome is Outcome.INCONCLUSIVE for v in verdicts):
        return Outcome.INCONCLUSIVE
    return Outcome.PASS
