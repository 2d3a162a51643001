"""The movement plan steps against real PostgreSQL databases, driven by a minimal stand-in for the
controller's StepContext (the controller's own is on its branch; this one implements the contract of
engine/steps/base.py: journal, step events, wait, gates, backgrounds, metrics)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from switchover.analysis.verdict import Outcome
from switchover.data.backfill_state import StoreControl, backfill_key
from switchover.data.move_tables import Side
from switchover.data.urls import parse_db_url
from switchover.engine.steps.base import Background, Gate, Signal, StepStatus
from switchover.engine.steps.movement import BackfillStep, CdcStep, DualWriteStep, FinalizeStep
from switchover.engine.store import Event, StateStore
from switchover.plan import Plan
from tests.integration.datamove.datamove_helpers import (
    PG_ORDERS,
    assert_identical,
    data_plan,
    fill_pg,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


class Ctx:
    def __init__(self, plan: Plan, store: StateStore) -> None:
        self.plan, self.store, self.run_id, self.step_index = plan, store, "run-1", 0
        self.gates: list[Gate] = []
        self.backgrounds: dict[str, Background] = {}
        self.metrics: dict[str, float] = {}
        self.said: list[str] = []
        self.signal: Signal | None = None

    def now(self) -> float:
        return time.time()

    def journal(self, kind: str, payload: dict[str, Any] | None = None) -> Event:
        return self.store.append(self.run_id, kind, "controller", {"step": self.step_index, **(payload or {})})

    def step_events(self) -> list[Event]:
        return [e for e in self.store.events(self.run_id) if e.payload.get("step") == self.step_index]

    def wait(self, seconds: float) -> Signal | None:
        time.sleep(min(seconds, 0.05))
        return self.signal

    def add_gate(self, gate: Gate, scope: str = "step") -> None:
        self.gates.append(gate)

    def start_background(self, activity: Background) -> None:
        self.backgrounds[activity.name] = activity

    def background(self, name: str) -> Background | None:
        return self.backgrounds.get(name)

    def export_metric(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self.metrics[name] = value

    def say(self, message: str) -> None:
        self.said.append(message)


def _plan(tmp_path: Path, src: str, dst: str) -> Plan:
    return data_plan(tmp_path, f"steps{abs(hash(src)) % 10_000}", src, dst, (
        "cdc: {tables: [orders], max_lag: 500ms, sustained: 200ms, reverse: true}",
        "backfill: {tables: [orders], chunk_time: 100ms}",
        "dual_write: {enabled: true}",
        "finalize: {dual_write: false, keep_cdc: 300ms}"))


def test_datamove_steps_cdc_backfill_dual_write_finalize(pg_pair: tuple[str, str], tmp_path: Path) -> None:
    src, dst = pg_pair
    fill_pg(src, 30_000)
    Side.open(dst, autocommit=True).execute(PG_ORDERS)
    plan = _plan(tmp_path, src, dst)
    store = StateStore(plan.state_url())
    ctx = Ctx(plan, store)
    steps = [s for s in plan.step_list()]
    try:
        result = CdcStep(steps[0]).run(ctx)  # type: ignore[arg-type]
        assert result.status is StepStatus.DONE, result.reason
        assert {g.name for g in ctx.gates} == {"cdc.lag", "rollback_safe"}
        assert set(ctx.backgrounds) == {"cdc", "cdc-reverse"}

        ctx.step_index = 1
        assert BackfillStep(steps[1]).run(ctx).status is StepStatus.DONE  # type: ignore[arg-type]
        assert ctx.metrics["switchover_backfill_rows"] == 30_000
        # A restarted controller re-runs the step: the table journaled as done is not copied again.
        again = BackfillStep(steps[1]).run(ctx)  # type: ignore[arg-type]
        assert again.status is StepStatus.DONE and "0 rows" in again.reason

        Side.open(src, autocommit=True).execute("UPDATE orders SET status = 'live' WHERE id = 7")
        Side.open(dst, autocommit=True).execute("INSERT INTO orders (id, customer) VALUES (777777, 1)")
        wait_for(lambda: bool(Side.open(src, autocommit=True).execute("SELECT 1 FROM orders WHERE id = 777777")),
                 30, "the reverse stream")
        wait_for(lambda: bool(Side.open(dst, autocommit=True).execute(
            "SELECT 1 FROM orders WHERE id = 7 AND status = 'live'")), 30, "the forward stream")
        def verdicts() -> list[Any]:
            return [v for g in ctx.gates for v in g.evaluate(time.time())]

        # Both streams caught up (idle streams report 0 lag): every gate passes.
        wait_for(lambda: all(v.outcome is Outcome.PASS for v in verdicts()), 30, lambda: str(verdicts()))
        assert "switchover_cdc_lag_seconds" in ctx.metrics

        ctx.step_index = 2
        assert DualWriteStep(steps[2]).run(ctx).status is StepStatus.DONE  # type: ignore[arg-type]
        assert store.get_flag("dual_write") is True

        ctx.step_index = 3
        done = FinalizeStep(steps[3]).run(ctx)  # type: ignore[arg-type]
        assert done.status is StepStatus.DONE and "cdc" in done.reason
        assert store.get_flag("dual_write") is False
        assert not any(bg.status()["alive"] for bg in ctx.backgrounds.values())
        # With the streams stopped, the gate sees it: a rollback now would not be data-safe.
        lag_gate = next(g for g in ctx.gates if g.name == "cdc.lag")
        assert lag_gate.evaluate(time.time())[0].outcome is Outcome.FAIL
    finally:
        for bg in ctx.backgrounds.values():
            bg.stop()
    assert_identical(src, dst)


def test_datamove_backfill_step_stops_on_abort(pg_pair: tuple[str, str], tmp_path: Path) -> None:
    src, dst = pg_pair
    fill_pg(src, 20_000)
    Side.open(dst, autocommit=True).execute(PG_ORDERS)
    plan = _plan(tmp_path, src, dst)
    store = StateStore(plan.state_url())
    ctx = Ctx(plan, store)
    ctx.signal = Signal.ABORT
    # An operator pause holds the copy, so the abort lands while the step is still running.
    StoreControl(store, backfill_key(parse_db_url(dst).safe, "orders"), "x", "x").set_paused(True, "oncall")
    step = BackfillStep(plan.step_list()[1])  # type: ignore[arg-type]
    result = step.run(ctx)
    assert result.status is StepStatus.ABORTED
    assert any(e.kind == "backfill_throttled" and "paused" in e.payload["reason"] for e in store.events("run-1"))
    assert Side.open(dst, autocommit=True).execute("SELECT count(*) FROM orders")[0][0] == 0
