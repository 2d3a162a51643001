"""The ``preflight`` step: run every preflight check inside the run (which holds the plan's lock,
so it rehearses the rollback through the real router); any failed check fails the step."""

from __future__ import annotations

from typing import Any, ClassVar

from switchover.engine.steps.base import StepContext, StepResult, StepStatus
from switchover.plan.steps import Preflight
from switchover.probes.preflight import run_preflight


class PreflightStep:
    kind: ClassVar[str] = "preflight"

    def __init__(self, spec: Preflight) -> None:
        self.spec = spec

    def run(self, ctx: StepContext) -> StepResult:
        def journal(kind: str, payload: dict[str, Any]) -> None:
            ctx.journal(kind, payload)

        report = run_preflight(ctx.plan, router=ctx.router, metrics=ctx.metrics, store=ctx.store, rehearse=True,
                               skip=list(self.spec.skip), now=ctx.now(), journal=journal)
        ctx.journal("preflight", report.to_json())
        for check in report.checks:
            ctx.say(f"preflight {check.status}: {check.name}: {check.reason}")
        if not report.ok:
            failed = "; ".join(f"{c.name}: {c.reason}" for c in report.failed)
            return StepResult(StepStatus.FAILED, f"preflight failed: {failed}")
        return StepResult(StepStatus.DONE, f"{len(report.checks)} checks passed or warned")

    def on_rollback(self, ctx: StepContext) -> None:
        """Nothing to undo: preflight only reads, and its rehearsal leaves weight 0."""
