"""Noise cancellation and the mismatch budget (pure).

Counts come from the store as a ``Tally``: per endpoint, how many answers were compared (stable
vs candidate) and how many noise comparisons were made (stable vs a second stable, or stable vs
itself asked twice); per field (and kind), how often it differed in each. A field is a
*regression* when its candidate difference rate exceeds its noise rate by both thresholds:

    rate > noise_rate * relative   and   rate - noise_rate > absolute

An answer is *regressed* when any of its differing fields is a regression; the regression rate
(regressed / compared) is what the budget bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

OVERFLOW = "*"  # signature bucket once an endpoint has too many distinct sets of differing fields


@dataclass(frozen=True)
class FieldCount:
    endpoint: str
    field: str
    kind: str
    diffs: int
    noise_diffs: int = 0

    @property
    def key(self) -> str:
        return f"{self.field}|{self.kind}"


@dataclass(frozen=True)
class EndpointCount:
    endpoint: str
    compared: int
    noise_compared: int = 0
    skipped: int = 0  # not comparable: stable gave no answer, or a write not mirrored


@dataclass(frozen=True)
class Signature:
    """How many answers of an endpoint differed in exactly this set of field keys."""

    endpoint: str
    keys: tuple[str, ...]  # sorted "field|kind"; (OVERFLOW,) for the overflow bucket
    count: int


@dataclass(frozen=True)
class Tally:
    endpoints: tuple[EndpointCount, ...] = ()
    fields: tuple[FieldCount, ...] = ()
    signatures: tuple[Signature, ...] = ()

    def minus(self, before: Tally) -> Tally:
        """Counts since ``before`` was taken (both cumulative)."""
        ep0 = {e.endpoint: e for e in before.endpoints}
        fl0 = {(f.endpoint, f.key): f for f in before.fields}
        sg0 = {(s.endpoint, s.keys): s.count for s in before.signatures}
        eps = []
        for e in self.endpoints:
            b = ep0.get(e.endpoint, EndpointCount(e.endpoint, 0))
            d = EndpointCount(e.endpoint, e.compared - b.compared, e.noise_compared - b.noise_compared,
                              e.skipped - b.skipped)
            if d.compared or d.noise_compared or d.skipped:
                eps.append(d)
        fls = []
        for f in self.fields:
            fb = fl0.get((f.endpoint, f.key))
            diffs = f.diffs - (fb.diffs if fb else 0)
            noise = f.noise_diffs - (fb.noise_diffs if fb else 0)
            if diffs or noise:
                fls.append(FieldCount(f.endpoint, f.field, f.kind, diffs, noise))
        sgs = []
        for s in self.signatures:
            count = s.count - sg0.get((s.endpoint, s.keys), 0)
            if count:
                sgs.append(Signature(s.endpoint, s.keys, count))
        return Tally(tuple(eps), tuple(fls), tuple(sgs))


@dataclass(frozen=True)
class Thresholds:
    relative: float = 2.0
    absolute: float = 0.0


@dataclass(frozen=True)
class FieldVerdict:
    endpoint: str
    field: str
    kind: str
    diffs: int
    rate: float
    noise_rate: float
    regression: bool

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "field": self.field, "kind": self.kind, "diffs": self.diffs,
                "rate": self.rate, "noise_rate": self.noise_rate, "regression": self.regression}


@dataclass(frozen=True)
class EndpointVerdict:
    endpoint: str
    compared: int
    noise_compared: int
    skipped: int
    regressed: int
    fields: tuple[FieldVerdict, ...]

    @property
    def regression_rate(self) -> float:
        return self.regressed / self.compared if self.compared else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "compared": self.compared, "noise_compared": self.noise_compared,
                "skipped": self.skipped, "regressed": self.regressed, "regression_rate": self.regression_rate,
                "fields": [f.to_json() for f in self.fields]}


@dataclass(frozen=True)
class BudgetResult:
    compared: int
    regressed: int
    budget: float
    min_compared: int
    endpoints: tuple[EndpointVerdict, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def regression_rate(self) -> float:
        return self.regressed / self.compared if self.compared else 0.0

    @property
    def enough(self) -> bool:
        return self.compared >= self.min_compared

    @property
    def over_budget(self) -> bool:
        return self.regression_rate > self.budget

    @property
    def clearly_over(self) -> bool:
        """Over budget beyond doubt even with few answers: the 95% Wilson lower bound exceeds it."""
        return wilson_lower(self.regressed, self.compared) > self.budget

    @property
    def outcome(self) -> str:
        """"fail" over budget with enough answers (or clearly over with fewer), "inconclusive" with
        too few answers, else "pass". Too few is never a pass."""
        if self.over_budget and (self.enough or self.clearly_over):
            return "fail"
        return "pass" if self.enough else "inconclusive"

    def top_fields(self, n: int = 5) -> list[FieldVerdict]:
        regs = [f for e in self.endpoints for f in e.fields if f.regression]
        return sorted(regs, key=lambda f: (-f.diffs, f.endpoint, f.field))[:n]

    def top_endpoints(self, n: int = 5) -> list[EndpointVerdict]:
        regs = [e for e in self.endpoints if e.regressed]
        return sorted(regs, key=lambda e: (-e.regressed, e.endpoint))[:n]

    def summary(self) -> str:
        """One line for people: the numbers and, when over budget, the top fields and endpoints."""
        head = (f"{self.regressed} of {self.compared} compared answers regressed "
                f"({self.regression_rate:.4%}, budget {self.budget:.4%})")
        if self.outcome == "inconclusive":
            head += f"; too few compared (need {self.min_compared})"
        if not self.over_budget:
            return head
        fields = ", ".join(f"{f.field} ({f.kind}) in {f.endpoint} {f.rate:.2%}" for f in self.top_fields(3))
        eps = ", ".join(f"{e.endpoint} {e.regression_rate:.2%}" for e in self.top_endpoints(3))
        return f"{head}; top fields: {fields}; top endpoints: {eps}"

    def to_json(self) -> dict[str, Any]:
        return {"compared": self.compared, "regressed": self.regressed, "regression_rate": self.regression_rate,
                "budget": self.budget, "min_compared": self.min_compared, "outcome": self.outcome,
                "within_budget": not self.over_budget, "summary": self.summary(),
                "top_fields": [f.to_json() for f in self.top_fields()],
                "endpoints": [e.to_json() for e in self.endpoints], **self.extra}


def wilson_lower(successes: int, n: int, z: float = 1.96) -> float:
    """Lower bound of the Wilson score interval for a proportion (0 when n is 0)."""
    if n <= 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


def is_regression(rate: float, noise_rate: float, th: Thresholds) -> bool:
    return rate > noise_rate * th.relative and rate - noise_rate > th.absolute


def evaluate(tally: Tally, th: Thresholds, budget: float, min_compared: int = 1) -> BudgetResult:
    """Classify every field as noise or regression and count regressed answers."""
    fields_by_ep: dict[str, list[FieldCount]] = {}
    for f in tally.fields:
        fields_by_ep.setdefault(f.endpoint, []).append(f)
    sigs_by_ep: dict[str, list[Signature]] = {}
    for s in tally.signatures:
        sigs_by_ep.setdefault(s.endpoint, []).append(s)
    out = []
    for e in sorted(tally.endpoints, key=lambda e: e.endpoint):
        verdicts = []
        for f in fields_by_ep.get(e.endpoint, []):
            rate = f.diffs / e.compared if e.compared else 0.0
            noise = f.noise_diffs / e.noise_compared if e.noise_compared else 0.0
            verdicts.append(FieldVerdict(e.endpoint, f.field, f.kind, f.diffs, rate, noise,
                                         f.diffs > 0 and is_regression(rate, noise, th)))
        regressions = {f"{v.field}|{v.kind}" for v in verdicts if v.regression}
        regressed = sum(s.count for s in sigs_by_ep.get(e.endpoint, [])
                        if s.keys == (OVERFLOW,) or regressions.intersection(s.keys))
        verdicts.sort(key=lambda v: (not v.regression, -v.diffs, v.field))
        out.append(EndpointVerdict(e.endpoint, e.compared, e.noise_compared, e.skipped,
                                   min(regressed, e.compared), tuple(verdicts)))
    return BudgetResult(sum(e.compared for e in out), sum(e.regressed for e in out), budget, min_compared,
                        tuple(out))
