"""The ``shadow`` step and its gate: mirror ``percent`` of requests to the candidate (or replay
recorded ones for routers that cannot mirror), hold, and pass when enough answers were compared
and the regression rate is within budget (docs/parity.md).

Resumable: the step journals ``shadow_started`` with the store mark its counts start from; after a
controller restart it carries on from that mark and the remaining hold.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, ClassVar

from switchover.analysis.verdict import Outcome, Verdict
from switchover.engine.steps.base import Signal, StepContext, StepResult, StepStatus
from switchover.errors import UserError
from switchover.parity.budget import BudgetResult
from switchover.parity.report import build_report
from switchover.parity.store import MismatchStore
from switchover.plan import Plan
from switchover.plan.steps import Shadow

CANNOT_MIRROR = frozenset({"route53", "command"})


class ShadowGate:
    """``shadow.budget``: regression rate since the step began against the budget, every interval."""

    name = "shadow.budget"

    def __init__(self, ctx: StepContext, store: MismatchStore, mark: int, spec: Shadow) -> None:
        self.ctx, self.store, self.mark, self.spec = ctx, store, mark, spec

    def result(self) -> BudgetResult:
        return build_report(self.store, self.ctx.plan.parity, self.spec.budget, self.spec.min_compared,
                            since_mark=self.mark, samples=0)

    def evaluate(self, now: float) -> list[Verdict]:
        r = self.result()
        labels = {"app": self.ctx.plan.name}
        self.ctx.export_metric("switchover_parity_compared", float(r.compared), labels)
        self.ctx.export_metric("switchover_parity_regression_rate", r.regression_rate, labels)
        outcome = {"pass": Outcome.PASS, "fail": Outcome.FAIL}.get(r.outcome, Outcome.INCONCLUSIVE)
        return [Verdict(self.name, outcome, r.summary(),
                        {"compared": float(r.compared), "regressed": float(r.regressed),
                         "regression_rate": r.regression_rate, "budget": r.budget,
                         "min_compared": float(r.min_compared)})]


class ReplaySource:
    """Background replay of recorded requests, the shadow source when the router cannot mirror."""

    name = "shadow-replay"

    def __init__(self, plan: Plan, path: Path, store: MismatchStore) -> None:
        from switchover.parity.recorded import load_requests

        self.plan, self.path, self.store = plan, path, store
        self.requests = load_requests(path)
        self._stop = threading.Event()
        self.sent = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="shadow-replay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from switchover.parity.replay import replay
        from switchover.parity.sink import ParitySink
        from switchover.parity.upstream import Upstreams

        sink = ParitySink(self.plan, self.store, fetch_noise=False)
        try:
            stats = asyncio.run(replay(self.requests, sink, Upstreams.of(self.plan.stable.url, self.plan.candidate.url,
                                                                         self.plan.parity),
                                       concurrency=8, rate=None, timeout=self.plan.timeouts.server,
                                       mirror_writes=self.plan.parity.mirror_writes, stop=self._stop.is_set))
            self.sent = stats.sent
        except Exception as exc:  # reported in status(); the gate then sees too few answers
            self.error = str(exc)
        finally:
            sink.close()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def status(self) -> dict[str, Any]:
        return {"file": str(self.path), "requests": len(self.requests), "sent": self.sent, "error": self.error,
                "running": self._thread.is_alive()}


class ShadowStep:
    kind: ClassVar[str] = "shadow"

    def __init__(self, spec: Shadow) -> None:
        self.spec = spec

    def _mirrors(self, plan: Plan) -> bool:
        return plan.traffic.driver not in CANNOT_MIRROR and self.spec.replay is None

    def run(self, ctx: StepContext) -> StepResult:
        plan, spec = ctx.plan, self.spec
        store = MismatchStore.for_plan(plan)
        try:
            return self._run(ctx, plan, spec, store)
        finally:
            store.close()

    def _run(self, ctx: StepContext, plan: Plan, spec: Shadow, store: MismatchStore) -> StepResult:
        started = next((e for e in ctx.step_events() if e.kind == "shadow_started"), None)
        mirrors = self._mirrors(plan)
        if not mirrors and spec.replay is None:
            return StepResult(StepStatus.FAILED, f"shadow: the {plan.traffic.driver} router cannot mirror; "
                                                 "give the step a replay: file of recorded requests")
        if started is None:
            mark = store.mark(ctx.now())
            began = ctx.now()
            ctx.journal("shadow_started", {"mark": mark, "percent": spec.percent, "budget": spec.budget,
                                           "min_compared": spec.min_compared, "hold": spec.hold,
                                           "store": str(store.path),
                                           "source": "mirror" if mirrors else f"replay {spec.replay}"})
        else:
            mark, began = int(started.payload["mark"]), started.at
        gate = ShadowGate(ctx, store, mark, spec)
        ctx.add_gate(gate)
        source: ReplaySource | None = None
        try:
            if mirrors:
                weight, _ = ctx.router.get_routes()
                ctx.router.set_routes(weight, spec.percent)
                ctx.say(f"shadow: mirroring {spec.percent}% to the candidate for {spec.hold:g}s")
            else:
                assert spec.replay is not None
                path = Path(spec.replay)
                source = ReplaySource(plan, path if path.is_absolute() else plan.base_dir() / path, store)
                source.start()
                ctx.say(f"shadow: replaying {len(source.requests)} recorded requests (router cannot mirror)")
            signal = ctx.wait(max(0.0, began + spec.hold - ctx.now()))
        except UserError as exc:
            return StepResult(StepStatus.FAILED, f"shadow: {exc}")
        finally:
            if source is not None:
                source.stop()
            if mirrors:
                self._mirror_off(ctx)
        if signal in (Signal.ABORT, Signal.ROLLBACK):
            return StepResult(StepStatus.ABORTED, f"shadow: {signal}")
        result = gate.result()
        ctx.journal("shadow_result", {"outcome": result.outcome, "compared": result.compared,
                                      "regressed": result.regressed, "regression_rate": result.regression_rate,
                                      "budget": result.budget, "summary": result.summary(),
                                      "top_fields": [f.to_json() for f in result.top_fields()],
                                      "promoted": signal is Signal.PROMOTE})
        if result.over_budget:
            return StepResult(StepStatus.FAILED, f"shadow: over budget: {result.summary()}")
        if not result.enough and signal is not Signal.PROMOTE:
            return StepResult(StepStatus.FAILED, f"shadow: {result.summary()}")
        return StepResult(StepStatus.DONE, f"shadow: {result.summary()}")

    def _mirror_off(self, ctx: StepContext) -> None:
        try:
            weight, mirror = ctx.router.get_routes()
            if mirror:
                ctx.router.set_routes(weight, 0)
        except Exception as exc:  # e.g. a rollback is recorded: rollback itself turns mirroring off
            ctx.say(f"shadow: mirroring not turned off here: {exc}")

    def on_rollback(self, ctx: StepContext) -> None:
        if self._mirrors(ctx.plan):
            self._mirror_off(ctx)
