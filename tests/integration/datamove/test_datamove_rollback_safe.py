"""The rollback_safe gate row-diffs the keys the reverse stream applied recently: a candidate write
that reached stable passes; a row on stable changed behind the stream's back (a rollback would serve
it, not the candidate's) fails the gate, naming table, key and column; an unreachable database is
inconclusive. Only the reverse stream runs here, so a write planted on stable is not carried forward."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from switchover.analysis.verdict import Outcome, Verdict
from switchover.data.cdc.stream import CdcBackground, CdcStream
from switchover.data.move_tables import Side
from switchover.data.urls import parse_db_url
from switchover.engine.steps.movement import RollbackSafeGate, check_recent_keys, reverse_stream
from switchover.engine.store import StateStore
from switchover.plan import Plan
from tests.integration.datamove.conftest import _drop_pg_db, _pg_db
from tests.integration.datamove.datamove_helpers import fill_pg, reverse_cdc_plan, row_status, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


@pytest.fixture
def rb_pair(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    base = "sw_rbsafe_" + request.node.name.lower()[-20:]
    names = (base + "_s", base + "_t")
    urls = [_pg_db(n) for n in names]
    yield urls[0], urls[1]
    for n in names:
        _drop_pg_db(n)


def _plan(tmp_path: Path, src: str, dst: str) -> Plan:
    return reverse_cdc_plan(tmp_path, f"rbsafe{int(time.time()) % 100000}", src, dst)


def _status(url: str, key: int) -> str | None:
    return row_status(url, "orders", key)


def _verdict_after_check(gate: RollbackSafeGate, want: Outcome, timeout: float = 30) -> Verdict:
    """Evaluate (starting row checks in the background) until the gate says ``want``."""
    deadline = time.monotonic() + timeout
    verdict = gate.evaluate(time.time())[0]
    while verdict.outcome is not want and time.monotonic() < deadline:
        gate.wait_check(15)
        time.sleep(0.2)
        verdict = gate.evaluate(time.time())[0]
    return verdict


def test_datamove_rollback_safe_row_diffs_recent_keys(rb_pair: tuple[str, str], tmp_path: Path) -> None:
    stable, candidate = rb_pair
    fill_pg(stable, 200)
    fill_pg(candidate, 200)
    plan = _plan(tmp_path, stable, candidate)
    tables = plan.data.tables if plan.data else []
    rev = reverse_stream(plan, tables)
    rev.prepare()
    bg = CdcBackground(rev, "cdc-reverse")
    bg.start()
    gate = RollbackSafeGate(plan, StateStore(plan.state_url()), bg, max_lag_s=30, interval=0.0,
                            confirm_timeout=10)
    cand = Side.open(candidate, autocommit=True)
    st = Side.open(stable, autocommit=True)
    try:
        cand.execute("INSERT INTO orders (id, customer, status) VALUES (6001, 2, 'from-candidate')")
        cand.execute("UPDATE orders SET status = 'candidate-updated' WHERE id = 17")
        cand.execute("DELETE FROM orders WHERE id = 18")
        wait_for(lambda: _status(stable, 6001) == "from-candidate" and _status(stable, 17) == "candidate-updated"
                 and _status(stable, 18) is None, 30, "reverse CDC")

        ok = _verdict_after_check(gate, Outcome.PASS)
        deadline = time.monotonic() + 30
        while (gate.row_check is None or gate.row_check.checked < 3) and time.monotonic() < deadline:
            ok = _verdict_after_check(gate, Outcome.PASS)
        assert ok.outcome is Outcome.PASS, ok
        assert ok.numbers["keys_checked"] >= 3, ok  # 6001, 17 and the deleted 18 were diffed
        assert "identical" in ok.reason

        # Stable's copy of a key the candidate changed is altered behind the stream's back.
        st.execute("UPDATE orders SET status = 'diverged' WHERE id = 17")
        bad = _verdict_after_check(gate, Outcome.FAIL)
        assert bad.outcome is Outcome.FAIL, bad
        assert "orders key (17) changed: column(s) status" in bad.reason, bad.reason
        assert "6001" not in bad.reason
        assert gate.row_check is not None and [d.key for d in gate.row_check.divergences] == [(17,)]

        # A row the candidate deleted comes back on stable: it is named too.
        st.execute("INSERT INTO orders (id, customer, status) VALUES (18, 1, 'resurrected')")
        bad = _verdict_after_check(gate, Outcome.FAIL)
        deadline = time.monotonic() + 30
        while "key (18)" not in bad.reason and time.monotonic() < deadline:
            bad = _verdict_after_check(gate, Outcome.FAIL)
        assert "orders key (18) only in stable" in bad.reason, bad.reason

        # The candidate's next write to key 17 carries its value to stable: the divergence heals.
        st.execute("DELETE FROM orders WHERE id = 18")
        cand.execute("UPDATE orders SET status = 'fixed' WHERE id = 17")
        wait_for(lambda: _status(stable, 17) == "fixed", 30, "reverse CDC of the fix")
        healed = _verdict_after_check(gate, Outcome.PASS)
        assert healed.outcome is Outcome.PASS, healed

        # The row diff cannot reach the candidate's database: inconclusive, not a pass or a fail.
        unreachable = SimpleNamespace(recent=rev.recent, pairs=rev.pairs, dst_url=rev.dst_url,
                                      src_url=parse_db_url("postgresql://postgres@127.0.0.1:1/nowhere"))
        check = check_recent_keys(cast(CdcStream, unreachable), 50, confirm_timeout=1)
        assert check.outcome is Outcome.INCONCLUSIVE, check
        assert "orders" in check.detail
    finally:
        cand.close()
        st.close()
        bg.stop()
