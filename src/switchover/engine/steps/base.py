"""The step and gate contracts (DESIGN.md, "Step kinds", "Gates").

A step kind is a class with ``kind`` (the plan's key), built with its plan model (``plan/steps.py``),
with ``run(ctx) -> StepResult`` (resumable: it reads what it journaled before from
``ctx.step_events()`` after a controller restart) and ``on_rollback(ctx)`` for what it must undo.
A step may leave a background activity running for later steps (CDC, mirroring, dual writes)
with ``ctx.start_background``; the controller owns it and stops it at the end or on rollback.

A gate is evaluated every ``analysis.interval`` while it is registered (``ctx.add_gate``); it
returns verdicts. Any gate failing ``failure_limit`` times in a row rolls back.

Registries: ``STEPS`` and ``GATES`` map a name to "module:Class"; adding a kind is one module plus
one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from switchover.analysis.verdict import Verdict
    from switchover.engine.store import Event, StateStore
    from switchover.metrics.base import MetricsProvider
    from switchover.plan import Plan
    from switchover.traffic.base import Router


class StepStatus(StrEnum):
    DONE = "done"  # go on to the next step
    FAILED = "failed"  # the step's own check failed: the run rolls back
    ABORTED = "aborted"  # an operator aborted or rolled back while the step ran


@dataclass(frozen=True)
class StepResult:
    status: StepStatus
    reason: str = ""


class Signal(StrEnum):
    """What an operator (or a rollback recorded by anyone) asked while a step waited."""

    PROMOTE = "promote"  # end the current hold / pause now
    CONFIRM = "confirm"  # a manual step was ticked
    ABORT = "abort"
    ROLLBACK = "rollback"


@runtime_checkable
class Gate(Protocol):
    name: str

    def evaluate(self, now: float) -> list[Verdict]:
        """Verdicts for the interval ending at ``now``."""


@runtime_checkable
class Background(Protocol):
    """A long-lived activity a step leaves running (CDC stream, dual-write flag, mirroring)."""

    name: str

    def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


class StepContext(Protocol):
    """What a running step may use. The controller provides it."""

    plan: Plan
    run_id: str
    step_index: int
    store: StateStore
    router: Router
    metrics: MetricsProvider

    def now(self) -> float: ...

    def journal(self, kind: str, payload: dict[str, Any] | None = None) -> Event:
        """Append an event for this step (actor: controller)."""

    def step_events(self) -> list[Event]:
        """Events journaled for this step in this run (for resuming after a restart)."""

    def wait(self, seconds: float) -> Signal | None:
        """Sleep up to ``seconds``, evaluating gates every interval; returns early with the operator
        signal (promote/confirm/abort/rollback), or ROLLBACK when the gates called for one."""

    def add_gate(self, gate: Gate, scope: str = "step") -> None:
        """Evaluate ``gate`` every interval; scope "step" (removed when the step ends) or "run"."""

    def start_background(self, activity: Background) -> None: ...

    def background(self, name: str) -> Background | None: ...

    def export_metric(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        """A gauge on the controller API's /metrics (e.g. switchover_cdc_lag_seconds)."""

    def say(self, message: str) -> None:
        """A line for the live view (and the log)."""


class Step(Protocol):
    kind: ClassVar[str]

    def __init__(self, spec: Any) -> None: ...

    def run(self, ctx: StepContext) -> StepResult: ...

    def on_rollback(self, ctx: StepContext) -> None: ...


# step kind -> "module:Class". A kind in plan.steps.STEP_MODELS but not here is "not supported yet".
# Pre-filled with every kind the plan knows; a kind whose module does not exist yet is "not supported".
STEPS: dict[str, str] = {
    "canary": "switchover.engine.steps.traffic:CanaryStep",
    "pause": "switchover.engine.steps.traffic:PauseStep",
    "hold": "switchover.engine.steps.traffic:HoldStep",
    "manual": "switchover.engine.steps.runbook:ManualStep",
    "webhook": "switchover.engine.steps.runbook:WebhookStep",
    "command": "switchover.engine.steps.runbook:CommandStep",
    "preflight": "switchover.engine.steps.preflight:PreflightStep",
    "shadow": "switchover.engine.steps.shadow:ShadowStep",
    "verify": "switchover.engine.steps.verify:VerifyStep",
    "backfill": "switchover.engine.steps.movement:BackfillStep",
    "cdc": "switchover.engine.steps.movement:CdcStep",
    "dual_write": "switchover.engine.steps.movement:DualWriteStep",
    "finalize": "switchover.engine.steps.movement:FinalizeStep",
}


def step_class(kind: str) -> type[Step] | None:
    target = STEPS.get(kind)
    if target is None:
        return None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return None
    cls: type[Step] = getattr(module, class_name)
    return cls


def unsupported_kinds(plan: Plan) -> list[str]:
    """Step kinds the plan uses that this build cannot run yet."""
    seen: list[str] = []
    for step in plan.step_list():
        kind = str(getattr(step, "kind", ""))
        if step_class(kind) is None and kind not in seen:
            seen.append(kind)
    return seen
