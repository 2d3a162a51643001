"""Writes taken by the candidate during a canary survive a rollback: reverse CDC carries them to the
stable database without echoing forward changes back, and rollback_participant drains the reverse
stream (running it itself when the controller is dead) before the rollback says done."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchover.data.cdc.stream import CdcBackground
from switchover.data.move_tables import Side
from switchover.engine.steps.movement import forward_stream, reverse_stream, rollback_participant
from switchover.engine.store import StateStore
from switchover.plan import Plan, load_plan
from tests.integration.datamove.datamove_helpers import (
    PG_ORDERS,
    assert_identical,
    fill_pg,
    reverse_cdc_plan,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def _plan(tmp_path: Path, src: str, dst: str) -> Plan:
    name = "rb" + Path(src).name[-12:].replace("-", "_")
    return reverse_cdc_plan(tmp_path, name, src, dst, steps=("backfill: {tables: [orders]}",))


def _has(url: str, key: int, status: str | None = None) -> bool:
    side = Side.open(url, autocommit=True)
    try:
        rows = side.execute(f"SELECT status FROM orders WHERE id = {key}")
        return bool(rows) and (status is None or rows[0][0] == status)
    finally:
        side.close()


def test_datamove_candidate_writes_survive_rollback(pg_pair: tuple[str, str], tmp_path: Path) -> None:
    src, dst = pg_pair
    fill_pg(src, 500)
    Side.open(dst, autocommit=True).execute(PG_ORDERS)
    plan = _plan(tmp_path, src, dst)
    tables = plan.data.tables if plan.data else []
    fwd, rev = forward_stream(plan, tables), reverse_stream(plan, tables)
    fwd.prepare()
    rev.prepare()
    fwd_bg, rev_bg = CdcBackground(fwd), CdcBackground(rev, "cdc-reverse")
    fwd_bg.start()
    rev_bg.start()
    s, d = Side.open(src, autocommit=True), Side.open(dst, autocommit=True)
    # stable writes -> forward; candidate writes -> reverse
    s.execute("INSERT INTO orders (id, customer, status) VALUES (5001, 1, 'from-stable')")
    wait_for(lambda: _has(dst, 5001), 30, "forward CDC")
    d.execute("INSERT INTO orders (id, customer, status) VALUES (6001, 2, 'from-candidate')")
    d.execute("UPDATE orders SET status = 'candidate-updated' WHERE id = 5001")
    wait_for(lambda: _has(src, 6001) and _has(src, 5001, "candidate-updated"), 30, "reverse CDC")
    forward_changes = fwd.status.changes
    s.execute("INSERT INTO orders (id, customer, status) VALUES (5002, 1, 'marker')")
    wait_for(lambda: _has(dst, 5002), 30, "forward CDC marker")
    # Only the marker came forward: the reverse stream's own writes were not echoed back.
    assert fwd.status.changes == forward_changes + 1
    assert rev.status.changes == 2

    # The controller dies: both streams stop. The candidate keeps taking writes meanwhile.
    fwd_bg.stop()
    rev_bg.stop()
    for i in range(7001, 7051):
        d.execute(f"INSERT INTO orders (id, customer, status) VALUES ({i}, 3, 'while-controller-dead')")
    d.execute("DELETE FROM orders WHERE id = 6001")
    store = StateStore(plan.state_url())
    store.append("run-1", "run_started", "test", {})
    report = rollback_participant(plan, store, "oncall@test", timeout=30)
    assert report["ok"], report
    assert _has(src, 7050, "while-controller-dead") and not _has(src, 6001)
    assert any(e.kind == "reverse_cdc_drain" for e in store.events("run-1"))
    s.close()
    d.close()
    stable = Side.open(src, autocommit=True)
    assert stable.execute("SELECT count(*) FROM orders WHERE id BETWEEN 7001 AND 7050")[0][0] == 50
    stable.close()


def test_datamove_rollback_participant_without_reverse_cdc_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("""
name: plain
stable: {url: "http://127.0.0.1:18081"}
candidate: {url: "http://127.0.0.1:18082"}
steps: [{canary: {weight: 10}}]
""")
    plan = load_plan(path)
    store = StateStore(f"sqlite:///{tmp_path}/s.db")
    assert rollback_participant(plan, store, "me")["ok"] is True


def test_datamove_proof_helper_sees_a_missing_row(pg_pair: tuple[str, str]) -> None:
    """The row-diff proof used by these tests fails when a row is missing (so it can fail)."""
    src, dst = pg_pair
    Side.open(src, autocommit=True).execute(PG_ORDERS)
    Side.open(dst, autocommit=True).execute(PG_ORDERS)
    Side.open(src, autocommit=True).execute("INSERT INTO orders (id, customer) VALUES (1, 1)")
    with pytest.raises(AssertionError):
        assert_identical(src, dst)
