"""Synthetic user journeys: the plan's scripted flows (login -> checkout -> refund), run against the
candidate and against stable every ``every`` seconds, as a gate.

A journey is HTTP steps run in order with one client (cookies carry over). ``{{name}}`` in a path,
header, body or JSON body is replaced by a value captured earlier: ``capture: {token: "$.token"}``
takes it from the JSON answer (``$.a.b[0].c``), ``"header:Location"`` from a response header. Each
step's ``expect`` checks the status (default: below 400), ``body_contains`` and a ``json`` subset.

The gate's verdict per journey: pass when the journey completes on the candidate; fail when it
breaks on the candidate (the reason says whether stable broke too, which points at the journey
or a shared dependency rather than the candidate). A journey not due in an interval gives no verdict.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from switchover import secrets
from switchover.analysis.verdict import Outcome, Verdict

if TYPE_CHECKING:
    from switchover.plan import Plan
    from switchover.plan.probes import Journey, JourneyExpect, JourneyStep

_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_PATH_TOKEN = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[\"([^\"]*)\"\]|\['([^']*)'\]")


class JourneyError(Exception):
    """A step of a journey did not do what the plan expects."""


def json_path(document: Any, path: str) -> Any:
    """The value at a JSONPath-like ``$.a.b[0]["c d"]``; KeyError when absent, ValueError on bad syntax."""
    if not path.startswith("$"):
        raise ValueError(f"a capture path starts with $: {path!r}")
    pos, value = 1, document
    while pos < len(path):
        match = _PATH_TOKEN.match(path, pos)
        if match is None:
            raise ValueError(f"cannot read {path!r} at {path[pos:]!r} (write $.a.b[0])")
        name, index, quoted, single = match.groups()
        if index is not None:
            if not isinstance(value, list) or int(index) >= len(value):
                raise KeyError(path)
            value = value[int(index)]
        else:
            key = name if name is not None else (quoted if quoted is not None else single)
            if not isinstance(value, dict) or key not in value:
                raise KeyError(path)
            value = value[key]
        pos = match.end()
    return value


def substitute(value: Any, captured: dict[str, str]) -> Any:
    """``{{name}}`` replaced in every string inside ``value``; JourneyError for a name never captured."""
    if isinstance(value, str):
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in captured:
                raise JourneyError(f"{{{{{name}}}}} was never captured by an earlier step")
            return captured[name]

        return _TEMPLATE.sub(one, value)
    if isinstance(value, dict):
        return {k: substitute(v, captured) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, captured) for v in value]
    return value


def is_subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and is_subset(v, actual[k]) for k, v in expected.items())
    return bool(expected == actual)


def check_expect(expect: JourneyExpect, answer: httpx.Response) -> None:
    status = expect.status
    allowed = [status] if isinstance(status, int) else status
    if allowed is None:
        if answer.status_code >= 400:
            raise JourneyError(f"answered {answer.status_code}")
    elif answer.status_code not in allowed:
        raise JourneyError(f"answered {answer.status_code}, expected {' or '.join(map(str, allowed))}")
    if expect.body_contains is not None and expect.body_contains not in answer.text:
        raise JourneyError(f"body lacks {expect.body_contains!r}")
    if expect.json_subset is not None:
        try:
            body = answer.json()
        except ValueError:
            raise JourneyError("expected a JSON body") from None
        if not is_subset(expect.json_subset, body):
            raise JourneyError(f"JSON body does not contain {expect.json_subset!r}")


@dataclass(frozen=True)
class JourneyResult:
    journey: str
    role: str  # "canary" (the candidate) or "stable"
    ok: bool
    steps_done: int
    reason: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"journey": self.journey, "role": self.role, "ok": self.ok, "steps_done": self.steps_done,
                "reason": secrets.redact(self.reason), "seconds": round(self.seconds, 4)}


def _capture(step: JourneyStep, answer: httpx.Response, captured: dict[str, str]) -> None:
    body: Any = None
    for name, source in step.capture.items():
        if source.startswith("header:"):
            header = source[len("header:"):]
            if header not in answer.headers:
                raise JourneyError(f"capture {name}: no {header} header in the answer")
            captured[name] = answer.headers[header]
            continue
        if body is None:
            try:
                body = answer.json()
            except ValueError:
                raise JourneyError(f"capture {name}: the answer is not JSON") from None
        try:
            value = json_path(body, source)
        except KeyError:
            raise JourneyError(f"capture {name}: nothing at {source} in the answer") from None
        except ValueError as exc:
            raise JourneyError(f"capture {name}: {exc}") from None
        captured[name] = value if isinstance(value, str) else str(value)


def run_journey(journey: Journey, base_url: str, *, role: str, timeout: float,
                transport: httpx.BaseTransport | None = None) -> JourneyResult:
    """Run every step against ``base_url``; stops at the first step that fails."""
    started = time.monotonic()
    captured: dict[str, str] = {}
    done = 0
    with httpx.Client(base_url=base_url, timeout=timeout, transport=transport, follow_redirects=False) as client:
        for number, step in enumerate(journey.steps, start=1):
            label = f"step {number} ({step.method} {step.path})"
            try:
                path = substitute(step.path, captured)
                headers = substitute(dict(step.headers), captured)
                kwargs: dict[str, Any] = {"headers": headers}
                if step.json_body is not None:
                    kwargs["json"] = substitute(step.json_body, captured)
                elif step.body is not None:
                    kwargs["content"] = substitute(step.body, captured).encode()
                answer = client.request(step.method.upper(), path, **kwargs)
                check_expect(step.expect, answer)
                _capture(step, answer, captured)
            except JourneyError as exc:
                return JourneyResult(journey.name, role, False, done, f"{label}: {exc}", time.monotonic() - started)
            except httpx.HTTPError as exc:
                return JourneyResult(journey.name, role, False, done, f"{label}: {type(exc).__name__}: {exc}",
                                     time.monotonic() - started)
            done += 1
    return JourneyResult(journey.name, role, True, done, f"{done} steps passed", time.monotonic() - started)


def verdict_for(candidate: JourneyResult, stable: JourneyResult) -> Verdict:
    numbers = {"candidate_ok": float(candidate.ok), "stable_ok": float(stable.ok),
               "candidate_seconds": round(candidate.seconds, 4), "stable_seconds": round(stable.seconds, 4)}
    gate = f"journey.{candidate.journey}"
    if candidate.ok:
        return Verdict(gate, Outcome.PASS, f"journey {candidate.journey} passed on the candidate", numbers)
    also = ("; it breaks on stable too: " + stable.reason) if not stable.ok else "; it passes on stable"
    return Verdict(gate, Outcome.FAIL, f"journey {candidate.journey} broke on the candidate at {candidate.reason}{also}",
                   numbers)


class JourneyGate:
    """A Gate (``engine/steps/base.py``) running the plan's journeys when each is due."""

    name = "journeys"

    def __init__(self, plan: Plan, *, transport: httpx.BaseTransport | None = None) -> None:
        self.plan = plan
        self.transport = transport
        self._last_run: dict[str, float] = {}
        self.last_results: list[JourneyResult] = []  # for the journal, beside the verdicts

    def due(self, now: float) -> list[Journey]:
        return [j for j in self.plan.journeys if now - self._last_run.get(j.name, -math.inf) >= j.every]

    def evaluate(self, now: float) -> list[Verdict]:
        verdicts: list[Verdict] = []
        results: list[JourneyResult] = []
        for journey in self.due(now):
            self._last_run[journey.name] = now
            candidate = run_journey(journey, self.plan.candidate.url, role="canary",
                                    timeout=self.plan.journey_timeout, transport=self.transport)
            stable = run_journey(journey, self.plan.stable.url, role="stable",
                                 timeout=self.plan.journey_timeout, transport=self.transport)
            results += [candidate, stable]
            verdicts.append(verdict_for(candidate, stable))
        self.last_results = results
        return verdicts
