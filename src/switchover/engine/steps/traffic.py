"""Traffic steps: ``canary {weight, hold}``, ``pause {}`` and ``hold {duration}``.

Resumable: after a controller restart a canary step finds its own ``weight_set`` in the journal and
does not move traffic again; the hold counts from that event (users stayed at that weight while
the controller was down), and at least one interval judged by the new controller must pass.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from switchover.engine.steps.base import Signal, StepContext, StepResult, StepStatus
from switchover.plan.steps import Canary, Hold, Pause

_STOP = (Signal.ABORT, Signal.ROLLBACK)


def _hold(ctx: StepContext, seconds: float) -> Signal | None:
    # The controller's context adds hold(): wait, then until an interval passed. Other contexts: wait.
    hold = getattr(ctx, "hold", None)
    result: Signal | None = hold(seconds) if callable(hold) else ctx.wait(seconds)
    return result


def _journeys(ctx: StepContext, scope: str) -> None:
    """Synthetic journeys run as a gate during holds and from 100% on (adapters issue's JourneyGate)."""
    if not ctx.plan.journeys:
        return
    try:
        module: Any = importlib.import_module("switchover.probes.journeys")
    except ModuleNotFoundError:
        return
    gate_cls = getattr(module, "JourneyGate", None)
    if gate_cls is not None:
        ctx.add_gate(gate_cls(ctx.plan), scope=scope)


def _since(ctx: StepContext, kind: str) -> float | None:
    """When this step last journaled ``kind`` (None if never)."""
    found = [e.at for e in ctx.step_events() if e.kind == kind]
    return found[-1] if found else None


class CanaryStep:
    kind: ClassVar[str] = "canary"

    def __init__(self, spec: Canary) -> None:
        self.spec = spec

    def run(self, ctx: StepContext) -> StepResult:
        weight = self.spec.weight
        set_at = _since(ctx, "weight_set")
        if set_at is None:
            _current, mirror = ctx.router.get_routes()
            ctx.say(f"weight -> {weight}%")
            ctx.router.set_routes(weight, mirror)
            set_at = ctx.now()
        _journeys(ctx, "run" if weight >= 100 else "step")
        remaining = max(0.0, self.spec.hold - (ctx.now() - set_at))
        signal = _hold(ctx, remaining)
        if signal in _STOP:
            return StepResult(StepStatus.ABORTED, str(signal))
        return StepResult(StepStatus.DONE, "promoted by an operator" if signal is Signal.PROMOTE else "hold passed")

    def on_rollback(self, ctx: StepContext) -> None:
        return None  # the rollback itself sends every user to stable


class PauseStep:
    """Waits for ``switchover promote`` (or ``duration``, when set, as Argo Rollouts' timed pause)."""

    kind: ClassVar[str] = "pause"

    def __init__(self, spec: Pause) -> None:
        self.spec = spec

    def run(self, ctx: StepContext) -> StepResult:
        ctx.say("paused: `switchover promote PLAN` to go on" +
                (f" (or wait {self.spec.duration:g}s)" if self.spec.duration else ""))
        if self.spec.duration is not None:
            entered = _since(ctx, "step_entered") or ctx.now()
            signal = ctx.wait(max(0.0, self.spec.duration - (ctx.now() - entered)))
        else:
            signal = None
            while signal is None:
                signal = ctx.wait(3600.0)
        if signal in _STOP:
            return StepResult(StepStatus.ABORTED, str(signal))
        return StepResult(StepStatus.DONE, "promoted" if signal is Signal.PROMOTE else "pause elapsed")

    def on_rollback(self, ctx: StepContext) -> None:
        return None


class HoldStep:
    kind: ClassVar[str] = "hold"

    def __init__(self, spec: Hold) -> None:
        self.spec = spec

    def run(self, ctx: StepContext) -> StepResult:
        _journeys(ctx, "step")
        entered = _since(ctx, "step_entered") or ctx.now()
        ctx.say(f"holding for {self.spec.duration:g}s")
        signal = _hold(ctx, max(0.0, self.spec.duration - (ctx.now() - entered)))
        if signal in _STOP:
            return StepResult(StepStatus.ABORTED, str(signal))
        return StepResult(StepStatus.DONE, "promoted by an operator" if signal is Signal.PROMOTE else "hold passed")

    def on_rollback(self, ctx: StepContext) -> None:
        return None
