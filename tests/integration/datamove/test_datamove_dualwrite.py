"""Dual writes: the secondary goes down -> the user's writes still succeed, dead letters are kept;
`switchover data dlq replay` (twice: idempotent) makes the two databases identical."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from switchover.data.move_tables import Side
from switchover.dualwrite import DualWriter
from switchover.engine.store import StateStore
from tests.integration.datamove.datamove_helpers import MY_ORDERS, PG_ORDERS, assert_identical

pytestmark = [pytest.mark.postgres, pytest.mark.mariadb, pytest.mark.timeout(120)]
DOWN = "mysql://root@127.0.0.1:1/nowhere"  # nothing listens on port 1: the secondary is down


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchover", "data", "dlq", *args], capture_output=True,
                          text=True, timeout=60)


def test_datamove_secondary_down_dead_letters_then_replay(pg_pair: tuple[str, str], my_db: str,
                                                          tmp_path: Path) -> None:
    primary, _ = pg_pair
    Side.open(primary, autocommit=True).execute(PG_ORDERS)
    Side.open(my_db, autocommit=True).execute(MY_ORDERS)
    state = f"sqlite:///{tmp_path}/plan.db"
    store = StateStore(state)
    store.set_flag("dual_write", True, "test")
    row = {"customer": 1, "amount": "10.50", "status": "new", "created_at": "2026-03-01 10:00:00", "paid": True,
           "note": "n"}

    healthy = DualWriter(primary, my_db, state=state)
    for i in range(1, 11):
        assert healthy.upsert("orders", {"id": i, **row}, key=["id"]).secondary == "written"
    healthy.close()

    broken = DualWriter(primary, DOWN, state=state, retry_after=0.0)
    outcomes = [broken.upsert("orders", {"id": i, **row, "status": "during-outage"}, key=["id"])
                for i in range(5, 26)]
    outcomes.append(broken.delete("orders", {"id": 1}, key=["id"]))
    broken.close()
    assert {o.secondary for o in outcomes} == {"dead_letter"}
    assert broken.counters.primary_writes == 22 and broken.counters.dead_letters == 22
    check = Side.open(primary, autocommit=True)
    assert check.execute("SELECT count(*) FROM orders")[0][0] == 24  # the users' writes all landed

    listed = _cli("list", primary, "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 22

    first = _cli("replay", primary, my_db, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"replayed": 22, "duplicates": 0, "failed": 0, "errors": []}
    again = _cli("replay", primary, my_db, "--json")
    assert json.loads(again.stdout)["replayed"] == 0
    assert json.loads(_cli("list", primary, "--json").stdout) == []
    assert_identical(primary, my_db)


def test_datamove_dual_write_flag_off_in_store_skips_secondary(pg_pair: tuple[str, str], my_db: str,
                                                               tmp_path: Path) -> None:
    primary, _ = pg_pair
    Side.open(primary, autocommit=True).execute(PG_ORDERS)
    Side.open(my_db, autocommit=True).execute(MY_ORDERS)
    state = f"sqlite:///{tmp_path}/plan.db"
    StateStore(state).set_flag("dual_write", False, "rollback")
    dw = DualWriter(primary, my_db, state=state)
    assert dw.upsert("orders", {"id": 1, "customer": 2}, key=["id"]).secondary == "off"
    assert Side.open(my_db, autocommit=True).execute("SELECT count(*) FROM orders")[0][0] == 0
    dw.close()
