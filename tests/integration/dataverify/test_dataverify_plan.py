"""The plan integration on real databases: the `verify` step (pass/fail with reasons, resumable,
journaled) and the `reconcile` gate (drift beyond data.drift_threshold fails; unreachable is
inconclusive; evaluate() never blocks)."""

from __future__ import annotations

import decimal
from pathlib import Path
from typing import Any

import pytest

from switchover.analysis.verdict import Outcome
from switchover.engine.steps.base import StepStatus, step_class
from switchover.engine.steps.verify import ReconcileGate, VerifyStep
from switchover.engine.store import Event, StateStore
from switchover.plan import Plan, plan_from_dict
from switchover.plan.steps import Verify
from tests.integration.dataverify.conftest import MY_URL, PG_URL, Tables, base_rows

pytestmark = [pytest.mark.postgres, pytest.mark.mariadb]


class Ctx:
    """The part of the controller's StepContext that the verify step uses, journaling to a real store."""

    def __init__(self, plan: Plan, store: StateStore) -> None:
        self.plan = plan
        self.store = store
        self.run_id = "run-1"
        self.step_index = 3
        self.said: list[str] = []

    def journal(self, kind: str, payload: dict[str, Any] | None = None) -> Event:
        return self.store.append(self.run_id, kind, "controller", {**(payload or {}), "step": self.step_index})

    def step_events(self) -> list[Event]:
        return [e for e in self.store.events(self.run_id) if e.payload.get("step") == self.step_index]

    def say(self, message: str) -> None:
        self.said.append(message)


def _plan(target: str = MY_URL, threshold: float = 0.001, **table: Any) -> Plan:
    return plan_from_dict({
        "name": "orders",
        "stable": {"url": "http://127.0.0.1:8081"},
        "candidate": {"url": "http://127.0.0.1:8082"},
        "data": {"source": PG_URL, "target": {"url": target}, "drift_threshold": threshold,
                 "tables": [{"name": "sw_dataverify_plan_orders", "key": ["id"],
                             "checks": ["count", "sum:amount", "max:created"], **table}]},
        "steps": [{"verify": {"rowdiff": True}}],
    })


@pytest.fixture
def orders(tables: Tables) -> Tables:
    rows = base_rows(1000)
    tables.make("postgresql", "sw_dataverify_plan_orders", rows)
    tables.make("mysql", "sw_dataverify_plan_orders", rows)
    return tables


def test_verify_step_is_registered_and_passes_on_equal_data(orders: Tables, tmp_path: Path) -> None:
    assert step_class("verify") is VerifyStep
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    ctx = Ctx(_plan(), store)
    result = VerifyStep(Verify(rowdiff=True)).run(ctx)  # type: ignore[arg-type]
    assert result.status is StepStatus.DONE, result.reason
    events = [e for e in ctx.step_events() if e.kind == "verify_table"]
    assert [(e.payload["table"], e.payload["ok"], e.payload["differing_rows"]) for e in events] == [
        ("sw_dataverify_plan_orders", True, 0)]


def test_verify_step_fails_with_reasons_and_resumes(orders: Tables, tmp_path: Path) -> None:
    orders.execute("mysql", "DELETE FROM sw_dataverify_plan_orders WHERE id IN (5, 6)")
    orders.execute("mysql", "UPDATE sw_dataverify_plan_orders SET amount = amount + 1 WHERE id = 9")
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    ctx = Ctx(_plan(), store)
    result = VerifyStep(Verify(rowdiff=True)).run(ctx)  # type: ignore[arg-type]
    assert result.status is StepStatus.FAILED
    assert "count source=1000 target=998" in result.reason
    assert "2 missing, 0 extra, 1 changed of 1000" in result.reason
    # aggregates only, within a tolerance: 2 rows of 1000 is 0.2%
    loose = VerifyStep(Verify(checks=True, rowdiff=False, tolerance=0.01))
    ctx2 = Ctx(_plan(**{"checks": ["count"]}), StateStore(f"sqlite:///{tmp_path / 'state2.db'}"))
    assert loose.run(ctx2).status is StepStatus.DONE  # type: ignore[arg-type]

    # after a controller restart a table verified before is not verified again
    orders.execute("mysql", "INSERT INTO sw_dataverify_plan_orders (id, name) VALUES (5, 'a'), (6, 'b')")
    ctx2.said.clear()
    assert loose.run(ctx2).status is StepStatus.DONE  # type: ignore[arg-type]
    assert any("verified before the restart" in line for line in ctx2.said)


def test_verify_step_unknown_table_or_unreachable_database_fails_clearly(orders: Tables, tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    unknown = VerifyStep(Verify(tables=["nope"])).run(Ctx(_plan(), store))  # type: ignore[arg-type]
    assert unknown.status is StepStatus.FAILED and "nope not in the plan's data.tables" in unknown.reason
    down = VerifyStep(Verify()).run(Ctx(_plan(target="mysql://root@127.0.0.1:1/x"), store))  # type: ignore[arg-type]
    assert down.status is StepStatus.FAILED and "cannot connect to mysql://root@127.0.0.1:1/x" in down.reason


def test_reconcile_gate_fails_on_drift_beyond_the_threshold(orders: Tables) -> None:
    gate = ReconcileGate(_plan(), every=3600.0)
    verdicts = gate.run_now(now=1000.0)
    assert [v.outcome for v in verdicts] == [Outcome.PASS]
    assert verdicts[0].gate == "reconcile" and verdicts[0].numbers["differing_rows"] == 0

    # one changed row in 1000 is 0.1%: within the default threshold; two changed rows are not
    orders.execute("mysql", "UPDATE sw_dataverify_plan_orders SET name = 'drift' WHERE id = 11")
    assert [v.outcome for v in gate.run_now(now=2000.0)] == [Outcome.PASS]
    orders.execute("mysql", "UPDATE sw_dataverify_plan_orders SET name = 'drift' WHERE id = 12")
    failed = gate.run_now(now=3000.0)
    assert [v.outcome for v in failed] == [Outcome.FAIL]
    assert "2 changed of 1000" in failed[0].reason and failed[0].numbers["drift"] == pytest.approx(0.002)


def test_reconcile_gate_runs_in_the_background_when_due(orders: Tables) -> None:
    gate = ReconcileGate(_plan(), every=60.0)
    assert gate.evaluate(0.0) == []  # the first run started; nothing known yet, so nothing judged
    gate.wait(60)
    first = gate.evaluate(10.0)  # not due: the latest verdicts again
    assert [v.outcome for v in first] == [Outcome.PASS]
    orders.execute("mysql", "DELETE FROM sw_dataverify_plan_orders WHERE id <= 10")
    assert [v.outcome for v in gate.evaluate(30.0)] == [Outcome.PASS]  # still not due
    gate.evaluate(61.0)  # due: re-runs
    gate.wait(60)
    assert [v.outcome for v in gate.evaluate(62.0)] == [Outcome.FAIL]


def test_reconcile_gate_unreachable_database_is_inconclusive(orders: Tables) -> None:
    verdicts = ReconcileGate(_plan(target="mysql://root@127.0.0.1:1/x"), every=60).run_now(0.0)
    assert [v.outcome for v in verdicts] == [Outcome.INCONCLUSIVE]
    assert "cannot connect" in verdicts[0].reason


def test_reconcile_uses_the_plans_threshold(orders: Tables) -> None:
    orders.execute("mysql", "UPDATE sw_dataverify_plan_orders SET amount = %s WHERE id = 20",
                   (decimal.Decimal("0.01"),))
    assert [v.outcome for v in ReconcileGate(_plan(threshold=0.0), every=60).run_now(0.0)] == [Outcome.FAIL]
    assert [v.outcome for v in ReconcileGate(_plan(threshold=0.01), every=60).run_now(0.0)] == [Outcome.PASS]
