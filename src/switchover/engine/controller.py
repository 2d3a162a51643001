"""The controller: runs a plan's steps against a router and a metrics provider, evaluates the gates
every interval, and rolls back by itself.

The decisions are pure (``analysis.gates``, ``analysis.decision``, ``engine.state``); this module
is the loop around them: clock, journal, lock, HTTP API, view. It never hosts the data plane.
Before every action it re-reads the journal, so a rollback recorded by anyone wins.
"""

from __future__ import annotations

import importlib
import os
import secrets as pysecrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from switchover import secrets
from switchover.analysis.decision import Action, decide, may_advance
from switchover.analysis.gates import judge_window
from switchover.analysis.verdict import Outcome, Verdict, combine
from switchover.engine.api import ControllerApi
from switchover.engine.metrics_export import Gauges
from switchover.engine.rollback import rollback
from switchover.engine.state import RunState, apply, fold
from switchover.engine.steps.base import (
    Background,
    Gate,
    Signal,
    Step,
    StepResult,
    StepStatus,
    step_class,
    unsupported_kinds,
)
from switchover.engine.store import Event, StateStore
from switchover.errors import UserError
from switchover.metrics.base import Observation, Window
from switchover.metrics.saturation import has_source, read_saturation
from switchover.notify.webhook import notify
from switchover.probes.readiness import check_ready

if TYPE_CHECKING:
    from switchover.metrics.base import MetricsProvider
    from switchover.plan import Plan
    from switchover.traffic.base import Router

ACTOR = "controller"


class RunStopped(Exception):
    """Raised inside a step when the run must stop moving traffic (rollback recorded, abort)."""


class View(Protocol):
    """What the controller tells people; the rich live view implements it (``ui.live``)."""

    def update(self, state: RunState, info: dict[str, Any]) -> None: ...

    def say(self, message: str) -> None: ...

    def close(self) -> None: ...


class QuietView:
    def update(self, state: RunState, info: dict[str, Any]) -> None:
        return None

    def say(self, message: str) -> None:
        return None

    def close(self) -> None:
        return None


def new_run_id(plan: Plan, now: float) -> str:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{plan.name}-{stamp}-{pysecrets.token_hex(3)}"


def metrics_for(plan: Plan) -> MetricsProvider:
    from switchover.metrics.base import provider_for

    return provider_for(plan)


def _interval_reason(verdicts: list[Verdict], outcome: Outcome) -> str:
    if outcome is Outcome.PASS:
        return f"{len(verdicts)} gates passed"
    chosen = [v for v in verdicts if v.outcome is outcome]
    return "; ".join(f"{v.gate}: {v.reason}" for v in chosen[:3])


class GuardedRouter:
    """The router steps see: before moving traffic it re-reads the journal (a rollback recorded by
    anyone wins) and after it journals ``weight_set``."""

    def __init__(self, inner: Router, controller: Controller) -> None:
        self.inner = inner
        self.name = inner.name
        self._c = controller

    def sync(self, plan: Plan) -> None:
        self.inner.sync(plan)

    def set_routes(self, weight: int, mirror_percent: int) -> None:
        state = self._c.refresh()
        if state.rollback_at is not None or state.abort_requested:
            raise RunStopped("a rollback or abort is recorded: no more traffic moves")
        self.inner.set_routes(weight, mirror_percent)
        self._c.journal("weight_set", {"weight": weight, "mirror": mirror_percent, "step": state.step_index,
                                        "reason": "step"})
        self._c.weight_changed()

    def get_routes(self) -> tuple[int, int]:
        return self.inner.get_routes()

    def is_online(self) -> bool:
        return self.inner.is_online()


class Controller:
    """One run of a plan (new, or resumed from the journal). ``run()`` returns the outcome:
    "promoted", "rolled_back" or "aborted"."""

    def __init__(self, plan: Plan, store: StateStore, router: Router, metrics: MetricsProvider, *,
                 view: View | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, tick: float = 0.2, serve_api: bool = True) -> None:
        self.plan = plan
        self.store = store
        self.raw_router = router
        self.router = GuardedRouter(router, self)
        self.metrics = metrics
        self.view: View = view or QuietView()
        self.clock = clock
        self.sleep = sleep
        self.tick = min(tick, plan.analysis.interval / 4)
        self.serve_api = serve_api
        self.gauges = Gauges()
        self.run_id = ""
        self.state = RunState()
        self.step_index = -1
        self.started_at = 0.0  # this process
        self._last_eval = 0.0
        self._next_eval = 0.0
        self._gates: list[tuple[Gate, str]] = []
        self._backgrounds: dict[str, Background] = {}
        self._saturation: list[float] = []
        self._api: ControllerApi | None = None
        self._lock_name = f"run:{plan.name}"
        self.info: dict[str, Any] = {"saturation_source": has_source(plan)}

    # ---------------------------------------------------------------- journal

    def journal(self, kind: str, payload: dict[str, Any] | None = None, actor: str = ACTOR) -> Event:
        event = self.store.append(self.run_id, kind, actor, payload, at=self.clock())
        self.refresh()
        return event

    def refresh(self) -> RunState:
        """Fold the events appended since the last look (by anyone)."""
        for event in self.store.events(self.run_id, after_seq=self.state.last_seq):
            self.state = apply(self.state, event)
        return self.state

    # ---------------------------------------------------------------- StepContext

    def now(self) -> float:
        return self.clock()

    def step_events(self) -> list[Event]:
        out: list[Event] = []
        for event in self.store.events(self.run_id):
            if event.kind == "step_entered":
                out = [event] if int(event.payload.get("index", -1)) == self.step_index else []
            elif out:
                out.append(event)
        return out

    def add_gate(self, gate: Gate, scope: str = "step") -> None:
        if all(g.name != gate.name for g, _ in self._gates):
            self._gates.append((gate, scope))

    def start_background(self, activity: Background) -> None:
        self._backgrounds[activity.name] = activity
        self.journal("background_started", {"name": activity.name})

    def background(self, name: str) -> Background | None:
        return self._backgrounds.get(name)

    def export_metric(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self.gauges.set(name, value, labels)

    def say(self, message: str) -> None:
        self.view.say(secrets.redact(message))

    def wait(self, seconds: float) -> Signal | None:
        """Sleep up to ``seconds`` evaluating gates every interval; an operator pause stops the clock."""
        deadline = self.clock() + seconds
        last = self.clock()
        while True:
            signal = self._tick()
            now = self.clock()
            if self.state.paused:
                deadline += now - last
            last = now
            if signal is not None:
                return signal
            if now >= deadline:
                return None
            self.sleep(max(0.0, min(self.tick, deadline - now, max(self._next_eval - now, 0.01))))

    def hold(self, seconds: float) -> Signal | None:
        """``wait`` for the hold, then until the latest interval judged by this process passed
        (when any gate applies). What canary and hold steps use."""
        self.info["hold_until"] = self.clock() + seconds
        signal = self.wait(seconds)
        self.info["hold_until"] = None
        while signal is None and self._gates_apply() and \
                not may_advance(self.state.intervals, since=max(self.started_at, self.state.step_entered_at)):
            signal = self.wait(self.plan.analysis.interval)
        return signal

    # ---------------------------------------------------------------- evaluation

    def weight_changed(self) -> None:
        """A new weight starts a fresh window: counts from before would judge the old split."""
        now = self.clock()
        self._last_eval = now
        self._next_eval = now + self.plan.analysis.interval
        prime = getattr(self.metrics, "prime", None)
        if callable(prime):
            prime(now)

    def _gates_apply(self) -> bool:
        return self.state.weight > 0 or bool(self._gates)

    def _tick(self) -> Signal | None:
        self.store.heartbeat(self._lock_name)
        state = self.refresh()
        if state.rollback_at is not None:
            return Signal.ROLLBACK
        if state.abort_requested:
            return Signal.ABORT
        if state.step_index in state.promoted_steps:
            return Signal.PROMOTE
        if state.step_index in state.confirmed_steps and state.step_kind == "manual":
            return Signal.CONFIRM
        now = self.clock()
        if now >= self._next_eval:
            signal = self._evaluate(now)
            if signal is not None:
                return signal
        self.view.update(self.state, self._view_info())
        return None

    def _view_info(self) -> dict[str, Any]:
        return {**self.info, "next_eval": self._next_eval, "now": self.clock()}

    def _evaluate(self, now: float) -> Signal | None:
        window = Window(self._last_eval, now)
        self._last_eval = now
        self._next_eval = now + self.plan.analysis.interval
        verdicts: list[Verdict] = []
        weight = self.state.weight
        if weight > 0:
            canary = self._observe("canary", window)
            stable = self._observe("stable", window)
            saturation = canary.saturation if canary is not None else None
            if saturation is None and has_source(self.plan):
                saturation = read_saturation(self.plan)
            if saturation is not None:
                self._saturation = [*self._saturation, saturation][-self.plan.analysis.saturation_windows:]
            elif has_source(self.plan):
                verdicts.append(Verdict("slo.saturation", Outcome.INCONCLUSIVE, "saturation source gave no reading"))
            verdicts += judge_window(canary, stable, weight=weight, slo=self.plan.slo, analysis=self.plan.analysis,
                                     saturation=self._saturation if saturation is not None else ())
            if canary is not None:
                self.info["canary"] = {"requests": canary.requests, "errors": canary.errors}
            if stable is not None:
                self.info["stable"] = {"requests": stable.requests, "errors": stable.errors}
        for gate, _scope in list(self._gates):
            try:
                verdicts += gate.evaluate(now)
            except Exception as exc:  # a broken gate cannot judge: inconclusive, never pass
                verdicts.append(Verdict(gate.name, Outcome.INCONCLUSIVE, f"gate error: {exc.__class__.__name__}: {exc}"))
        if not verdicts:
            return None
        outcome = combine(verdicts)
        self.journal("gate_evaluated", {
            "step": self.step_index, "weight": weight, "outcome": str(outcome),
            "reason": _interval_reason(verdicts, outcome), "window": [window.start, window.end],
            "verdicts": [v.to_json() for v in verdicts]})
        history = self.state.intervals
        decision = decide(history, now, self.plan.analysis)
        if decision.action is Action.ROLLBACK:
            self._rollback(decision.reason)
            return Signal.ROLLBACK
        if decision.action is Action.PAUSE and not self.state.paused:
            self.journal("paused", {"reason": decision.reason})
            self.say(f"paused: {decision.reason}; `switchover resume` or `switchover rollback`")
            notify(self.plan, "paused", f"paused: {decision.reason}")
        return None

    def _observe(self, role: str, window: Window) -> Observation | None:
        try:
            return self.metrics.observe(role, window)
        except Exception as exc:  # a provider that breaks has no data: inconclusive, never a crash
            self.info["provider_error"] = f"{exc.__class__.__name__}: {secrets.redact(str(exc))}"
            return None

    def _rollback(self, reason: str, actor: str = ACTOR) -> None:
        self.say(f"rolling back: {reason}")
        rollback(self.plan, self.store, actor, reason, router=self.raw_router, run_id=self.run_id)
        self.refresh()

    # ---------------------------------------------------------------- the run

    def _start_or_resume(self) -> bool:
        """Open the run; True when resuming one a previous controller left unfinished."""
        latest = self.store.latest_run()
        if latest is not None:
            previous = fold(self.store.events(latest))
            if not previous.finished:
                self.run_id = latest
                self.state = previous
                return True
        weight, _mirror = self.raw_router.get_routes()
        if weight != 0:
            # A new run starts with every user on stable; moving from here to the first step's weight
            # could send users who are on the candidate back to stable.
            raise UserError(f"the router already sends {weight}% of users to the candidate; a new run starts from "
                            f"0%: point the plan's stable at the current version, or `switchover rollback` first")
        self.run_id = new_run_id(self.plan, self.clock())
        self.state = RunState()
        kinds = [str(getattr(s, "kind", "")) for s in self.plan.step_list()]
        self.journal("run_started", {"plan": self.plan.name, "steps": kinds,
                                     "source": self.plan.source_path or ""}, actor=_operator())
        return False

    def _checks_before_traffic(self) -> str | None:
        """Preflight (when the plan has no preflight step) and readiness; the reason to abort, or None."""
        kinds = [str(getattr(s, "kind", "")) for s in self.plan.step_list()]
        if "preflight" not in kinds:
            try:
                module = importlib.import_module("switchover.probes.preflight")
            except ModuleNotFoundError:
                module = None
            if module is not None:
                report = module.run_preflight(self.plan, router=self.raw_router, metrics=self.metrics,
                                              store=self.store, rehearse=True,
                                              journal=lambda kind, payload: self.journal(kind, payload))
                body = report.to_json()
                self.journal("preflight", {"ok": bool(report.ok), "report": body})
                if not report.ok:
                    failed = [f"{c.get('name')}: {c.get('reason')}" for c in body.get("checks", [])
                              if str(c.get("status")) == "fail"]
                    return "preflight failed: " + ("; ".join(failed[:4]) or "see the journal")
        probes = check_ready(self.plan)
        ok = all(p.ok for p in probes)
        self.journal("readiness", {"ok": ok, "probes": [p.to_json() for p in probes]})
        if not ok:
            bad = "; ".join(f"{p.role} {p.url}: {p.detail}" for p in probes if not p.ok)
            return f"not ready: {bad}"
        return None

    def _finish(self, outcome: str, reason: str) -> str:
        self.journal("run_finished", {"outcome": outcome, "reason": reason})
        text = {"promoted": "candidate promoted", "rolled_back": f"rolled back: {reason}",
                "aborted": f"aborted: {reason}"}[outcome]
        deliveries = notify(self.plan, "run_finished", text, {"outcome": outcome, "reason": reason})
        if deliveries:
            self.journal("notification", {"event": "run_finished", "deliveries": [d.to_json() for d in deliveries]})
        self.view.update(self.state, self._view_info())  # the last events, in the live view too
        self.say(text)
        return outcome

    def _steps_rollback(self, upto: int) -> None:
        """Every entered step's ``on_rollback``, last first; errors are journaled, never stop the rest."""
        steps = self.plan.step_list()
        for index in range(min(upto, len(steps) - 1), -1, -1):
            cls = step_class(str(getattr(steps[index], "kind", "")))
            if cls is None:
                continue
            self.step_index = index
            try:
                cls(steps[index]).on_rollback(self)  # type: ignore[arg-type]
            except Exception as exc:
                self.journal("step_rollback_failed", {"index": index, "error": f"{exc.__class__.__name__}: {exc}"})

    def _stop_backgrounds(self) -> None:
        for name, activity in list(self._backgrounds.items()):
            try:
                activity.stop()
                self.journal("background_stopped", {"name": name})
            except Exception as exc:
                self.journal("background_stopped", {"name": name, "error": f"{exc.__class__.__name__}: {exc}"})
        self._backgrounds.clear()

    def _stopped(self) -> str:
        """The run stops moving traffic: a rollback is recorded, or an abort asked for one."""
        state = self.refresh()
        at = state.step_index
        if state.rollback_at is None:
            reason = f"aborted by {state.abort_actor or 'an operator'}"
            self._rollback(reason, actor=state.abort_actor or ACTOR)
            self._steps_rollback(at)
            self._stop_backgrounds()
            return self._finish("aborted", reason)
        self._steps_rollback(at)
        self._stop_backgrounds()
        state = self.refresh()
        who = "" if state.rollback_actor == ACTOR else f" (by {state.rollback_actor})"
        return self._finish("rolled_back", f"{state.rollback_reason}{who}")

    def run(self) -> str:
        missing = unsupported_kinds(self.plan)
        if missing:
            raise UserError(f"{self.plan.source_path or 'plan'}: step kinds not supported yet by this build: "
                            f"{', '.join(missing)}")
        holder = self.store.acquire_lock(self._lock_name, f"{_operator()} pid {os.getpid()}")
        if holder is not None:
            raise UserError(f"another controller runs this plan: {holder.holder} on {holder.host} (pid {holder.pid}); "
                            f"one controller per plan")
        beating = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(beating,), name="lock-heartbeat", daemon=True)
        heart.start()
        try:
            return self._run_locked()
        finally:
            beating.set()
            heart.join(5)
            if self._api is not None:
                self._api.stop()
            self.store.release_lock(self._lock_name)
            self.view.close()

    def _resume_backgrounds(self, steps: list[Any], done: set[int]) -> None:
        """Done steps that left a background running (CDC) start it again after a restart, unless
        the run was finalized; they resume from their own stored position."""
        if not done or _has_finalized(steps, done):
            return
        for index in sorted(done):
            spec = steps[index]
            cls = step_class(str(getattr(spec, "kind", "")))
            resume = getattr(cls, "resume_background", None) if cls is not None else None
            if resume is None:
                continue
            self.step_index = index
            resume(cls(spec), self)  # type: ignore[misc]
            self.journal("background_resumed", {"index": index, "kind": str(getattr(spec, "kind", ""))})

    def _heartbeat(self, stop: threading.Event) -> None:
        """Keep the run lock fresh even while a step works without waiting (a long backfill)."""
        store = StateStore(self.plan.state_url(), self.plan.base_dir())
        try:
            while not stop.wait(5.0):
                store.heartbeat(self._lock_name)
        finally:
            store.close()

    def _run_locked(self) -> str:
        self.raw_router.sync(self.plan)
        resumed = self._start_or_resume()
        self.started_at = self.clock()
        self.journal("controller_started", {"pid": os.getpid(), "host": socket.gethostname(), "resumed": resumed,
                                            "step": self.state.step_index, "weight": self.state.weight})
        if self.serve_api:
            self._api = ControllerApi(self.plan, lambda: self.run_id, self.gauges)
            self._api.start()
        state = self.state
        if state.rollback_at is not None or state.abort_requested:
            return self._stopped()
        if resumed and state.weight_committed:
            # Re-assert what the journal says was committed; never a move of its own.
            self.raw_router.set_routes(state.weight, state.mirror)
            self.journal("weight_set", {"weight": state.weight, "mirror": state.mirror, "step": state.step_index,
                                        "reason": "reassert after restart"})
            self.say(f"resumed run {self.run_id} at step {state.step_index + 1}, weight {state.weight}%")
        if state.weight == 0:
            reason = self._checks_before_traffic()
            if reason is not None:
                self.say(f"nothing moved: {reason}")
                return self._finish("aborted", reason)
        self.weight_changed()
        steps = self.plan.step_list()
        first = max(state.step_index, 0)
        done_indices = {int(e.payload.get("index", -1)) for e in self.store.events(self.run_id)
                        if e.kind == "step_done"}
        self._resume_backgrounds(steps, done_indices)
        for index in range(first, len(steps)):
            if index in done_indices:
                continue
            spec = steps[index]
            kind = str(getattr(spec, "kind", ""))
            self.step_index = index
            if self.refresh().rollback_at is not None or self.state.abort_requested:
                return self._stopped()
            if self.state.step_index != index:
                self.journal("step_entered", {"index": index, "kind": kind,
                                              "spec": spec.model_dump(mode="json")})
                deliveries = notify(self.plan, "step_entered", f"step {index + 1}/{len(steps)}: {kind}")
                if deliveries:
                    self.journal("notification", {"event": "step_entered",
                                                  "deliveries": [d.to_json() for d in deliveries]})
            cls = step_class(kind)
            assert cls is not None  # unsupported kinds were refused above
            step: Step = cls(spec)
            try:
                result = step.run(self)  # type: ignore[arg-type]
            except RunStopped:
                result = StepResult(StepStatus.ABORTED, "stopped")
            except UserError as exc:
                result = StepResult(StepStatus.FAILED, str(exc))
            self._gates = [(g, s) for g, s in self._gates if s != "step"]
            if result.status is StepStatus.DONE:
                self.journal("step_done", {"index": index, "kind": kind, "status": "done", "reason": result.reason})
                continue
            if result.status is StepStatus.FAILED and self.refresh().rollback_at is None:
                self.journal("step_done", {"index": index, "kind": kind, "status": "failed", "reason": result.reason})
                self._rollback(f"step {index + 1} ({kind}) failed: {result.reason}")
            return self._stopped()
        self._stop_backgrounds()
        return self._finish("promoted", "every step done")


def _has_finalized(steps: list[Any], done: set[int]) -> bool:
    return any(str(getattr(steps[i], "kind", "")) == "finalize" for i in done if 0 <= i < len(steps))


def _operator() -> str:
    from switchover.engine.store import whoami

    return whoami()
