"""The ``shadow`` step and its gate: mirror ``percent`` of requests to the candidate (or, for routers
that cannot mirror, replay a file of recorded requests again and again until the hold ends), hold,
and pass when enough answers were compared and the regression rate is within budget (docs/parity.md).

Resumable: the step journals ``shadow_started`` with the store mark its counts start from; after a
controller restart it carries on from that mark and the remaining hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from switchover.analysis.verdict import Outcome, Verdict
from switchover.engine.steps.base import Signal, StepContext, StepResult, StepStatus
from switchover.errors import UserError
from switchover.parity.budget import BudgetResult
from switchover.parity.report import build_report
from switchover.parity.store import MismatchStore
from switchover.plan import Plan
from switchover.plan.steps import Shadow

if TYPE_CHECKING:
    from switchover.parity.compare import Request
    from switchover.parity.sink import ParitySink

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


_REPLAY_CONCURRENCY = 8  # requests in flight, as `parity replay`'s default
_STABLE_SILENT_PAUSE = 1.0  # seconds between passes when stable answered none of the last one


class ReplaySource:
    """Background replay of recorded requests, the shadow source when the router cannot mirror.

    With ``loop`` (the default) the file is replayed again and again until ``stop()``, so that the
    hold, not the file's length, decides how many answers are compared; otherwise once. One set of
    connections serves every pass. ``stop()`` cancels the requests in flight.
    """

    name = "shadow-replay"

    def __init__(self, plan: Plan, path: Path, store: MismatchStore, *, loop: bool = True,
                 rate: float | None = None) -> None:
        from switchover.parity.compare import is_read
        from switchover.parity.recorded import load_requests

        self.plan, self.path, self.store, self.loop, self.rate = plan, path, store, loop, rate
        self.requests = load_requests(path)  # UserError naming the file when missing or malformed
        if not self.requests:
            raise UserError(f"{path}: no requests in the file (the shadow step's replay:); record some first")
        self.todo = [r for r in self.requests if plan.parity.mirror_writes or is_read(r.method)]
        if not self.todo:
            raise UserError(f"{path}: only writes ({len(self.requests)}), and writes are not replayed while "
                            "parity.mirror_writes is false; record some reads")
        self.passes = 0  # complete passes over the file
        self.sent = 0
        self.stable_unanswered = 0  # replayed requests stable gave no answer to (not comparable)
        self.error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Task[None]] | None = None
        self._thread = threading.Thread(target=self._run, name="shadow-replay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from switchover.parity.sink import ParitySink

        sink = ParitySink(self.plan, self.store, fetch_noise=False)
        try:
            asyncio.run(self._main(sink))
        except Exception as exc:  # reported in status() and the step's result; the gate sees too few answers
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            sink.close()

    async def _main(self, sink: ParitySink) -> None:
        with self._lock:  # stop() either comes first, or finds the task to cancel
            if self._stop.is_set():
                return
            task = asyncio.create_task(self._passes(sink))
            self._running = (asyncio.get_running_loop(), task)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            with self._lock:
                self._running = None

    async def _passes(self, sink: ParitySink) -> None:
        from switchover.parity.upstream import Clients, Upstreams, exchange

        plan = self.plan
        upstreams = Upstreams.of(plan.stable.url, plan.candidate.url, plan.parity)
        sem = asyncio.Semaphore(_REPLAY_CONCURRENCY)
        async with Clients(upstreams, plan.timeouts.server, _REPLAY_CONCURRENCY) as clients:

            async def one(request: Request) -> None:
                try:
                    pair, secondary = await exchange(clients, request, time.time())
                    if pair.stable.error is not None:
                        self.stable_unanswered += 1
                    sink.submit_exchange(pair, secondary, block=True)  # replay waits, never drops
                    self.sent += 1
                finally:
                    sem.release()

            began, started = time.monotonic(), 0
            while not self._stop.is_set():
                unanswered = self.stable_unanswered
                tasks: list[asyncio.Task[None]] = []
                try:
                    for request in self.todo:
                        if self._stop.is_set():
                            break
                        if self.rate:
                            # Start times spaced evenly over every pass: the n-th no earlier than n / rate.
                            delay = began + started / self.rate - time.monotonic()
                            if delay > 0:
                                await asyncio.sleep(delay)
                        started += 1
                        await sem.acquire()
                        tasks.append(asyncio.create_task(one(request)))
                    await asyncio.gather(*tasks)
                finally:
                    for t in tasks:  # cancelled by stop(): end the requests in flight too
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                if len(tasks) == len(self.todo):  # a pass cut short by stop() is not counted
                    self.passes += 1
                if self._stop.is_set() or not self.loop:
                    break
                if self.stable_unanswered - unanswered == len(self.todo):
                    # Stable answered none of this pass: nothing to compare, so do not hammer it.
                    await asyncio.sleep(_STABLE_SILENT_PAUSE)

    def done(self) -> bool:
        return not self._thread.is_alive()

    def stop(self) -> None:
        """End the replay now (requests in flight are cancelled) and wait for the thread."""
        with self._lock:
            self._stop.set()
            if self._running is not None:
                loop, task = self._running
                loop.call_soon_threadsafe(task.cancel)
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def status(self) -> dict[str, Any]:
        return {"file": str(self.path), "requests": len(self.requests), "replayed": len(self.todo),
                "loop": self.loop, "rate": self.rate, "passes": self.passes, "sent": self.sent,
                "stable_unanswered": self.stable_unanswered, "error": self.error,
                "running": self._thread.is_alive()}

    def describe(self) -> str:
        """How much was replayed, for the step's result: e.g. "3 requests replayed 12 times"."""
        times = "once" if self.passes == 1 else f"{self.passes} times"
        text = f"{self.path.name}: {len(self.todo)} requests replayed {times} ({self.sent} sent)"
        if self.stable_unanswered:
            text += f"; stable gave no answer to {self.stable_unanswered}"
        if self.error:
            text += f"; replay stopped by an error: {self.error}"
        return text


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
                                           "source": "mirror" if mirrors else f"replay {spec.replay}",
                                           **({} if mirrors else {"replay_loop": spec.replay_loop,
                                                                  "replay_rate": spec.replay_rate})})
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
                source = ReplaySource(plan, path if path.is_absolute() else plan.base_dir() / path, store,
                                      loop=spec.replay_loop, rate=spec.replay_rate)
                source.start()
                again = " again and again until the hold ends" if spec.replay_loop else " once"
                pace = f", {spec.replay_rate:g}/s at most" if spec.replay_rate else ""
                ctx.say(f"shadow: replaying {len(source.todo)} recorded requests{again}{pace} (router cannot mirror)")
            signal = ctx.wait(max(0.0, began + spec.hold - ctx.now()))
        except UserError as exc:
            return StepResult(StepStatus.FAILED, f"shadow: {exc}")
        finally:
            if source is not None:
                source.stop()
                ctx.journal("shadow_replay", source.status())
            if mirrors:
                self._mirror_off(ctx)
        replayed = f" (replay: {source.describe()})" if source is not None else ""
        if signal in (Signal.ABORT, Signal.ROLLBACK):
            return StepResult(StepStatus.ABORTED, f"shadow: {signal}{replayed}")
        result = gate.result()
        ctx.journal("shadow_result", {"outcome": result.outcome, "compared": result.compared,
                                      "regressed": result.regressed, "regression_rate": result.regression_rate,
                                      "budget": result.budget, "summary": result.summary(),
                                      "top_fields": [f.to_json() for f in result.top_fields()],
                                      "promoted": signal is Signal.PROMOTE})
        if result.over_budget:
            return StepResult(StepStatus.FAILED, f"shadow: over budget: {result.summary()}{replayed}")
        if not result.enough and signal is not Signal.PROMOTE:
            return StepResult(StepStatus.FAILED, f"shadow: {result.summary()}{replayed}")
        return StepResult(StepStatus.DONE, f"shadow: {result.summary()}{replayed}")

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
