"""A run's state as a fold of its journal events (pure): the one place that says what the events mean.

Event kinds (documented in docs/operations.md): ``run_started``, ``controller_started``,
``preflight``, ``readiness``, ``step_entered``, ``weight_set``, ``gate_evaluated``, ``paused``,
``operator_command`` (pause, resume, promote, abort, confirm, rollback), ``step_done``, ``rollback``,
``notification``, ``run_finished``, plus what steps journal for themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from switchover.analysis.decision import Interval
from switchover.analysis.verdict import Outcome
from switchover.engine.store import Event

FINAL = ("promoted", "rolled_back", "aborted")


@dataclass(frozen=True)
class RunState:
    run_id: str = ""
    plan: str = ""
    steps: tuple[str, ...] = ()
    started_at: float = 0.0
    outcome: str = ""  # "" while running; promoted | rolled_back | aborted once finished
    finish_reason: str = ""
    step_index: int = -1
    step_kind: str = ""
    step_entered_at: float = 0.0
    weight: int = 0
    mirror: int = 0
    weight_committed: bool = False  # a weight_set was journaled in this run
    paused: bool = False
    pause_reason: str = ""
    resumed_at: float = 0.0
    rollback_at: float | None = None
    rollback_reason: str = ""
    rollback_actor: str = ""
    abort_requested: bool = False
    abort_actor: str = ""
    promoted_steps: frozenset[int] = frozenset()
    confirmed_steps: frozenset[int] = frozenset()
    intervals: tuple[Interval, ...] = ()  # this step's, since it was entered or resumed
    last_verdicts: tuple[dict[str, Any], ...] = ()
    controller_started_at: float = 0.0
    last_seq: int = 0
    tail: tuple[Event, ...] = field(default=(), compare=False)

    @property
    def finished(self) -> bool:
        return bool(self.outcome)

    @property
    def status(self) -> str:
        if self.outcome:
            return self.outcome
        if self.rollback_at is not None:
            return "rolling_back"
        if not self.run_id:
            return "no run"
        return "paused" if self.paused else "running"

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "plan": self.plan, "status": self.status, "outcome": self.outcome or None,
            "finish_reason": self.finish_reason or None, "started_at": self.started_at,
            "step": {"index": self.step_index, "kind": self.step_kind, "entered_at": self.step_entered_at,
                     "of": len(self.steps)},
            "weight": self.weight, "mirror_percent": self.mirror, "paused": self.paused,
            "pause_reason": self.pause_reason or None,
            "rollback": ({"at": self.rollback_at, "reason": self.rollback_reason, "actor": self.rollback_actor}
                         if self.rollback_at is not None else None),
            "intervals": [{"at": i.at, "outcome": str(i.outcome), "reason": i.reason} for i in self.intervals[-10:]],
            "last_verdicts": list(self.last_verdicts),
            "journal_tail": [e.to_json() for e in self.tail],
        }


TAIL = 8


def apply(state: RunState, event: Event) -> RunState:
    """The state after one more event."""
    p = event.payload
    kind = event.kind
    s = replace(state, last_seq=event.seq, tail=(*state.tail, event)[-TAIL:])
    if kind == "run_started":
        return replace(s, run_id=event.run_id, plan=str(p.get("plan", "")), steps=tuple(p.get("steps", ())),
                       started_at=event.at)
    if kind == "controller_started":
        return replace(s, controller_started_at=event.at)
    if kind == "step_entered":
        return replace(s, step_index=int(p["index"]), step_kind=str(p.get("kind", "")), step_entered_at=event.at,
                       intervals=(), last_verdicts=())
    if kind == "weight_set":
        return replace(s, weight=int(p["weight"]), mirror=int(p.get("mirror", s.mirror)), weight_committed=True)
    if kind == "gate_evaluated":
        interval = Interval(event.at, Outcome(p["outcome"]), str(p.get("reason", "")))
        return replace(s, intervals=(*s.intervals, interval)[-200:],
                       last_verdicts=tuple(p.get("verdicts", ())))
    if kind == "paused":
        return replace(s, paused=True, pause_reason=str(p.get("reason", "")))
    if kind == "operator_command":
        command = p.get("command")
        index = int(p.get("step_index", s.step_index))
        if command == "pause":
            return replace(s, paused=True, pause_reason=f"paused by {event.actor}")
        if command == "resume":
            # A resume clears the streaks that paused the run: judge afresh from here.
            return replace(s, paused=False, pause_reason="", resumed_at=event.at, intervals=())
        if command == "promote":
            return replace(s, promoted_steps=s.promoted_steps | {index}, paused=False, pause_reason="")
        if command == "confirm":
            return replace(s, confirmed_steps=s.confirmed_steps | {index})
        if command == "abort":
            return replace(s, abort_requested=True, abort_actor=event.actor)
        return s
    if kind == "rollback":
        if s.rollback_at is not None:
            return s
        return replace(s, rollback_at=event.at, rollback_reason=str(p.get("reason", "")), rollback_actor=event.actor,
                       weight=0, mirror=0)
    if kind == "run_finished":
        return replace(s, outcome=str(p.get("outcome", "")), finish_reason=str(p.get("reason", "")))
    return s


def fold(events: Iterable[Event], state: RunState | None = None) -> RunState:
    out = state or RunState()
    for event in events:
        out = apply(out, event)
    return out
