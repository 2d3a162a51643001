"""Reverse CDC with loop prevention when the candidate's database is MariaDB or SQLite: forward and
reverse streams run at once on the same table; a stable write reaches the candidate and is not
echoed back (the reverse stream's counters and stored position stay still), a candidate write
reaches stable and is not echoed forward, a backfill into the candidate is not echoed, and writes the
candidate took while the controller was dead survive a rollback (``rollback_participant`` drains
the reverse stream, running it itself, or waiting for a live one)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from switchover.analysis.verdict import Outcome
from switchover.data.backfill import Backfill, BackfillOptions
from switchover.data.backfill_state import StoreControl
from switchover.data.cdc import sqlite as sqlite_cdc
from switchover.data.cdc.stream import CdcBackground
from switchover.data.move_tables import Side
from switchover.engine.steps.movement import (
    RollbackSafeGate,
    forward_stream,
    reverse_stream,
    rollback_participant,
)
from switchover.engine.store import StateStore
from switchover.plan import Plan
from tests.integration.datamove.datamove_helpers import (
    assert_identical,
    reverse_cdc_plan,
    row_status,
    wait_for,
)

pytestmark = [pytest.mark.timeout(180)]

TABLE = "rcdc_orders"
PG_DDL = f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, customer int NOT NULL, status text, amount numeric(12,2))"
MY_DDL = f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, customer int NOT NULL, status text, amount decimal(12,2))"
SQLITE_DDL = f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL, status TEXT, amount NUMERIC)"


def _plan(tmp_path: Path, stable: str, candidate: str) -> Plan:
    return reverse_cdc_plan(tmp_path, f"rcdc{time.time_ns() % 10**9}", stable, candidate, TABLE)


def _backfill_without_echo(tmp_path: Path, pair: _Pair, stable: str, candidate: str, rows: int) -> None:
    """Backfill the table into the candidate while both streams run: all ``rows`` copied, and the
    reverse stream carries none of the copy back to stable."""
    s, d = Side.open(stable, autocommit=True), Side.open(candidate)
    try:
        done = Backfill(s, d, BackfillOptions(TABLE, chunk_time=0.05, initial_chunk=50),
                        StoreControl(StateStore(f"sqlite:///{tmp_path}/bf.db"), TABLE, "run", "test")).run()
    finally:
        s.close()
        d.close()
    assert done.state == "done" and done.rows == rows
    pair.settle()
    assert pair.rev.status.changes == 0, pair.rev.status


def _exec(url: str, *sql: str) -> None:
    side = Side.open(url, autocommit=True)
    try:
        for statement in sql:
            side.execute(statement)
    finally:
        side.close()


def _status(url: str, key: int) -> str | None:
    return row_status(url, TABLE, key)


def _count(url: str, where: str) -> int:
    side = Side.open(url, autocommit=True)
    try:
        return int(side.execute(f"SELECT count(*) FROM {TABLE} WHERE {where}")[0][0])
    finally:
        side.close()


class _Pair:
    """Forward (stable -> candidate) and reverse (candidate -> stable) streams of one plan, running."""

    def __init__(self, plan: Plan) -> None:
        tables = plan.data.tables if plan.data else []
        self.fwd, self.rev = forward_stream(plan, tables), reverse_stream(plan, tables)
        self.fwd.prepare()
        self.rev.prepare()
        self.fwd_bg, self.rev_bg = CdcBackground(self.fwd), CdcBackground(self.rev, "cdc-reverse")
        self.fwd_bg.start()
        self.rev_bg.start()
        wait_for(lambda: self.fwd.status.state == "streaming" and self.rev.status.state == "streaming", 30,
                 lambda: f"streams up ({self.fwd.status}, {self.rev.status})")

    def stop(self) -> None:
        self.fwd_bg.stop()
        self.rev_bg.stop()

    def settle(self, seconds: float = 1.5) -> None:
        """Long enough for an echo, if there were one, to be read and applied (polls run every 0.2 s)."""
        time.sleep(seconds)
        for bg in (self.fwd_bg, self.rev_bg):
            assert bg.alive(), bg.error


def _no_ping_pong(pair: _Pair, stable: str, candidate: str, stable_id: int, candidate_id: int) -> None:
    """The heart of loop prevention, the same for every engine pair."""
    rev_before = (pair.rev.status.transactions, pair.rev.status.changes, pair.rev.stored_position())
    fwd_changes = pair.fwd.status.changes
    _exec(stable, f"INSERT INTO {TABLE} (id, customer, status) VALUES ({stable_id}, 1, 'from-stable')")
    wait_for(lambda: _status(candidate, stable_id) == "from-stable", 30, "forward CDC")
    pair.settle()
    # Forward applied exactly the one change; reverse read nothing back: counters and position still.
    assert pair.fwd.status.changes == fwd_changes + 1
    assert (pair.rev.status.transactions, pair.rev.status.changes, pair.rev.stored_position()) == rev_before

    fwd_before = (pair.fwd.status.transactions, pair.fwd.status.changes)
    _exec(candidate, f"INSERT INTO {TABLE} (id, customer, status) VALUES ({candidate_id}, 2, 'from-candidate')",
          f"UPDATE {TABLE} SET status = 'candidate-updated' WHERE id = {stable_id}")
    wait_for(lambda: _status(stable, candidate_id) == "from-candidate"
             and _status(stable, stable_id) == "candidate-updated", 30, "reverse CDC")
    pair.settle()
    assert pair.rev.status.changes == rev_before[1] + 2
    assert (pair.fwd.status.transactions, pair.fwd.status.changes) == fwd_before  # not carried forward again
    assert _status(candidate, stable_id) == "candidate-updated"


def _rollback_safe_passes(plan: Plan, pair: _Pair) -> None:
    """The rollback_safe gate passes on reverse lag and on the row diff (candidate vs stable) of the keys
    the reverse stream applied."""
    gate = RollbackSafeGate(plan, StateStore(plan.state_url()), pair.rev_bg, max_lag_s=30, interval=0.0,
                            confirm_timeout=5)
    deadline = time.monotonic() + 30
    verdict = gate.evaluate(time.time())[0]
    while (gate.row_check is None or gate.row_check.checked < 2) and time.monotonic() < deadline:
        gate.wait_check(15)
        time.sleep(0.3)
        verdict = gate.evaluate(time.time())[0]
    assert verdict.outcome is Outcome.PASS, verdict
    assert verdict.numbers["keys_checked"] >= 2 and "identical" in verdict.reason, verdict


# ---------------------------------------------------------------------- PostgreSQL stable, MariaDB candidate


@pytest.mark.postgres
@pytest.mark.mariadb
def test_datamove_rcdc_mariadb_candidate_no_echo_and_survives_rollback(
        pg_pair: tuple[str, str], my_db: str, tmp_path: Path) -> None:
    stable, candidate = pg_pair[0], my_db
    _exec(stable, PG_DDL, f"INSERT INTO {TABLE} SELECT g, g % 10, 'old', g FROM generate_series(1, 300) g")
    _exec(candidate, MY_DDL)
    plan = _plan(tmp_path, stable, candidate)
    pair = _Pair(plan)
    try:
        # The backfill's copy into the candidate is not echoed back to stable either.
        _backfill_without_echo(tmp_path, pair, stable, candidate, rows=300)

        _no_ping_pong(pair, stable, candidate, 5001, 6001)

        _rollback_safe_passes(plan, pair)  # row diff of the candidate's keys: PostgreSQL vs MariaDB
    finally:
        pair.stop()

    # The controller is dead (both streams stopped); the candidate keeps taking writes.
    _exec(candidate, *[f"INSERT INTO {TABLE} (id, customer, status) VALUES ({i}, 3, 'while-dead')"
                       for i in range(7001, 7051)],
          f"DELETE FROM {TABLE} WHERE id = 6001", f"UPDATE {TABLE} SET status = 'late' WHERE id = 17")
    store = StateStore(plan.state_url())
    store.append("run-1", "run_started", "test", {})
    report = rollback_participant(plan, store, "oncall@test", timeout=60)
    assert report["ok"], report
    assert _count(stable, "status = 'while-dead'") == 50
    assert _status(stable, 6001) is None and _status(stable, 17) == "late"
    assert any(e.kind == "reverse_cdc_drain" for e in store.events("run-1"))
    assert_identical(stable, candidate, TABLE)


@pytest.mark.postgres
@pytest.mark.mariadb
def test_datamove_rcdc_mariadb_drain_waits_for_a_live_reverse_stream(
        pg_pair: tuple[str, str], my_db: str, tmp_path: Path) -> None:
    """The controller is alive and still streaming: the drain waits for its stream (a second reader of
    the same binlog stream never runs), and says done once the candidate's writes are on stable."""
    stable, candidate = pg_pair[0], my_db
    _exec(stable, PG_DDL)
    _exec(candidate, MY_DDL)
    plan = _plan(tmp_path, stable, candidate)
    pair = _Pair(plan)
    try:
        assert pair.rev.consumer_alive()
        _exec(candidate, *[f"INSERT INTO {TABLE} (id, customer, status) VALUES ({i}, 3, 'live')"
                           for i in range(1, 21)])
        store = StateStore(plan.state_url())
        store.append("run-1", "run_started", "test", {})
        report = rollback_participant(plan, store, "oncall@test", timeout=60)
        assert report["ok"], report
        assert _count(stable, "status = 'live'") == 20
        assert pair.rev_bg.alive() and pair.rev_bg.error is None  # the live stream was not disturbed
    finally:
        pair.stop()
    assert not pair.rev.consumer_alive()


@pytest.mark.mariadb
def test_datamove_rcdc_mariadb_both_sides_no_ping_pong(my_db: str, tmp_path: Path) -> None:
    """MariaDB stable and MariaDB candidate: both directions read a binlog, the loop-prone case."""
    candidate = my_db + "_c"
    _exec(my_db.rsplit("/", 1)[0] + "/mysql", f"DROP DATABASE IF EXISTS `{candidate.rsplit('/', 1)[1]}`",
          f"CREATE DATABASE `{candidate.rsplit('/', 1)[1]}`")
    try:
        _exec(my_db, MY_DDL)
        _exec(candidate, MY_DDL)
        pair = _Pair(_plan(tmp_path, my_db, candidate))
        try:
            _no_ping_pong(pair, my_db, candidate, 5001, 6001)
            _no_ping_pong(pair, my_db, candidate, 5002, 6002)
        finally:
            pair.stop()
        assert_identical(my_db, candidate, TABLE)
    finally:
        _exec(my_db.rsplit("/", 1)[0] + "/mysql", f"DROP DATABASE IF EXISTS `{candidate.rsplit('/', 1)[1]}`")


# ---------------------------------------------------------------------- SQLite


def _sqlite(path: Path, rows: int = 0) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute(SQLITE_DDL)
        conn.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?)", [(i, i % 10, "old", i) for i in range(1, rows + 1)])
    conn.close()
    return f"sqlite:///{path}"


def test_datamove_rcdc_sqlite_candidate_no_echo_and_survives_rollback(tmp_path: Path) -> None:
    stable, candidate = _sqlite(tmp_path / "v1.db", 200), _sqlite(tmp_path / "v2.db")
    plan = _plan(tmp_path, stable, candidate)
    pair = _Pair(plan)
    try:
        _backfill_without_echo(tmp_path, pair, stable, candidate, rows=200)
        _no_ping_pong(pair, stable, candidate, 5001, 6001)
        _rollback_safe_passes(plan, pair)
    finally:
        pair.stop()

    _exec(candidate, *[f"INSERT INTO {TABLE} (id, customer, status) VALUES ({i}, 3, 'while-dead')"
                       for i in range(7001, 7031)], f"DELETE FROM {TABLE} WHERE id = 6001")
    store = StateStore(plan.state_url())
    store.append("run-1", "run_started", "test", {})
    report = rollback_participant(plan, store, "oncall@test", timeout=60)
    assert report["ok"], report
    assert _count(stable, "status = 'while-dead'") == 30 and _status(stable, 6001) is None
    assert_identical(stable, candidate, TABLE)


def test_datamove_rcdc_sqlite_drain_with_nothing_to_carry(tmp_path: Path) -> None:
    """Only the forward stream's own (skipped) rows follow the stored position: the drain marker still
    lets the drain finish instead of waiting for its timeout."""
    stable, candidate = _sqlite(tmp_path / "v1.db"), _sqlite(tmp_path / "v2.db")
    plan = _plan(tmp_path, stable, candidate)
    pair = _Pair(plan)
    try:
        _exec(stable, f"INSERT INTO {TABLE} (id, customer, status) VALUES (1, 1, 'from-stable')")
        wait_for(lambda: _status(candidate, 1) == "from-stable", 30, "forward CDC")
    finally:
        pair.stop()
    store = StateStore(plan.state_url())
    started = time.monotonic()
    report = rollback_participant(plan, store, "oncall@test", timeout=30)
    assert report["ok"], report
    assert time.monotonic() - started < 25


def test_datamove_rcdc_sqlite_changelog_from_before_origin_is_migrated(tmp_path: Path) -> None:
    """A changelog made by an earlier version (no ``origin`` column) keeps working: its pending rows are
    read, and the column is added."""
    path = tmp_path / "old.db"
    url = _sqlite(path)
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE {sqlite_cdc.CHANGELOG} (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, "
                     "op TEXT NOT NULL, old_key TEXT, row TEXT, at REAL NOT NULL)")
        conn.execute(f"INSERT INTO {sqlite_cdc.CHANGELOG} (tbl, op, old_key, row, at) VALUES "
                     f"('{TABLE}', 'insert', NULL, '{{\"id\": 9, \"customer\": 1, \"status\": \"x\", \"amount\": 1}}', 1.0)")
    conn.close()
    side = Side.open(url)
    sqlite_cdc.install_triggers(side, TABLE)
    reader = sqlite_cdc.SqliteReader(side, [TABLE], None, "rcdc_migrate")
    try:
        txns = reader.poll(0.5)
        assert [t.changes[0].row["id"] for t in txns if t.changes and t.changes[0].row] == [9]
    finally:
        reader.close()
    with sqlite3.connect(path) as conn:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({sqlite_cdc.CHANGELOG})")]
    conn.close()
    assert "origin" in cols


def test_datamove_rcdc_one_reader_per_stream(tmp_path: Path) -> None:
    """A second consumer of the same SQLite stream is refused with a clear error while the first runs."""
    url = _sqlite(tmp_path / "one.db")
    side = Side.open(url)
    sqlite_cdc.install_triggers(side, TABLE)
    first = sqlite_cdc.SqliteReader(side, [TABLE], None, "rcdc_one")
    try:
        with pytest.raises(Exception, match="another consumer"):
            sqlite_cdc.SqliteReader(Side.open(url), [TABLE], None, "rcdc_one", active_wait=0.3)
    finally:
        first.close()
    again = sqlite_cdc.SqliteReader(Side.open(url), [TABLE], None, "rcdc_one", active_wait=0.3)
    again.close()


@pytest.mark.mariadb
def test_datamove_rcdc_mariadb_marker_alone_is_not_a_change(my_db: str) -> None:
    """What the binlog reader does with each kind of transaction: a user's write is read; an applier's
    (position row in the same transaction) and a backfill chunk's (origin row) are dropped whole; a drain
    marker becomes an empty transaction that moves the position."""
    from switchover.data.cdc import mysql as mysql_cdc
    from switchover.data.move_tables import POSITION_TABLE, ensure_coordination_tables, introspect
    from switchover.data.urls import parse_db_url

    _exec(my_db, MY_DDL)
    side = Side.open(my_db)
    ensure_coordination_tables(side)
    mysql_cdc.ensure_origin_table(side)
    side.commit()
    info = introspect(side, TABLE)
    side.finish_read()
    start = mysql_cdc.current_position(side)
    reader = mysql_cdc.MysqlReader(parse_db_url(my_db), {TABLE: info}, start, "rcdc_marker")
    try:
        side.execute(f"INSERT INTO {TABLE} (id, customer, status) VALUES (1, 1, 'user')")
        side.commit()
        side.execute(f"INSERT INTO {TABLE} (id, customer, status) VALUES (2, 1, 'applier')")
        side.execute(f"INSERT INTO {POSITION_TABLE} (stream, position, applied_at) VALUES ('x', '1', 1) "
                     "ON DUPLICATE KEY UPDATE applied_at = applied_at + 1")
        side.commit()
        side.execute(f"INSERT INTO {TABLE} (id, customer, status) VALUES (3, 1, 'backfill')")
        mysql_cdc.mark_origin(side, "sw_apply_bf_test")
        side.commit()
        goal = mysql_cdc.request_drain(side, "rcdc_marker")
        side.commit()
        got: list[tuple[str, tuple[object, ...]]] = []
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            got += [(t.position, tuple(c.row["status"] for c in t.changes if c.row)) for t in reader.poll(0.5)]
        assert [statuses for _, statuses in got] == [("user",), ()]
        assert mysql_cdc.position_key(got[-1][0]) > mysql_cdc.position_key(goal)
    finally:
        reader.close()
        side.close()



@pytest.mark.mariadb
def test_datamove_rcdc_mariadb_missing_replication_grant_is_a_clear_error(my_db: str) -> None:
    """Reverse CDC reads the candidate's binlog: a user without REPLICATION SLAVE gets told which
    grant to add, before any stream starts (not a traceback from the reader's thread)."""
    from switchover.data.cdc import mysql as mysql_cdc
    from switchover.errors import UserError

    database = my_db.rsplit("/", 1)[1]
    admin = my_db.rsplit("/", 1)[0] + "/mysql"
    _exec(admin, "DROP USER IF EXISTS 'rcdc_nogrant'@'127.0.0.1'",
          "CREATE USER 'rcdc_nogrant'@'127.0.0.1'", f"GRANT ALL ON `{database}`.* TO 'rcdc_nogrant'@'127.0.0.1'")
    try:
        side = Side.open(my_db.replace("root@", "rcdc_nogrant@"), autocommit=True)
        try:
            with pytest.raises(UserError, match=r"missing REPLICATION SLAVE, REPLICATION CLIENT.*GRANT "
                                                r"REPLICATION SLAVE, REPLICATION CLIENT ON \*\.\* TO 'rcdc_nogrant'"):
                mysql_cdc.check_settings(side)
        finally:
            side.close()
        _exec(admin, "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'rcdc_nogrant'@'127.0.0.1'")
        side = Side.open(my_db.replace("root@", "rcdc_nogrant@"), autocommit=True)
        try:
            mysql_cdc.check_settings(side)  # enough now
        finally:
            side.close()
    finally:
        _exec(admin, "DROP USER IF EXISTS 'rcdc_nogrant'@'127.0.0.1'")


@pytest.mark.postgres
@pytest.mark.mariadb
def test_datamove_rcdc_mariadb_drain_after_kill9_of_the_reverse_reader(
        pg_pair: tuple[str, str], my_db: str, tmp_path: Path) -> None:
    """The process streaming reverse CDC is killed -9 (a dead controller): its consumer lock goes with
    its connection, so the drain sees no live reader, runs the stream itself, and the candidate's
    writes reach stable."""
    import os
    import signal
    import subprocess
    import sys

    stable, candidate = pg_pair[0], my_db
    _exec(stable, PG_DDL)
    _exec(candidate, MY_DDL)
    plan = _plan(tmp_path, stable, candidate)
    rev = reverse_stream(plan, plan.data.tables if plan.data else [])
    rev.prepare()
    proc = subprocess.Popen([sys.executable, "-m", "switchover", "data", "cdc", candidate, stable,
                             "--table", TABLE, "--stream", rev.stream, "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _exec(candidate, f"INSERT INTO {TABLE} (id, customer, status) VALUES (1, 1, 'before-kill')")
        wait_for(lambda: _status(stable, 1) == "before-kill", 30, "the reverse stream in its own process")
        assert rev.consumer_alive()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    _exec(candidate, *[f"INSERT INTO {TABLE} (id, customer, status) VALUES ({i}, 3, 'after-kill')"
                       for i in range(2, 12)])
    store = StateStore(plan.state_url())
    report = rollback_participant(plan, store, "oncall@test", timeout=60)
    assert report["ok"], report
    assert _count(stable, "status = 'after-kill'") == 10
    assert not rev.consumer_alive()


@pytest.mark.postgres
@pytest.mark.mariadb
def test_datamove_rcdc_mariadb_candidate_plan_steps(pg_pair: tuple[str, str], my_db: str, tmp_path: Path) -> None:
    """The plan steps with a MariaDB candidate: cdc (reverse: true) starts both streams, backfill copies
    while they run (nothing echoed back), every gate passes once both are caught up, finalize stops
    them, and the two databases hold the same rows."""
    from switchover.data.move_tables import Side as _Side
    from switchover.engine.steps.base import StepStatus
    from switchover.engine.steps.movement import BackfillStep, CdcStep, FinalizeStep
    from tests.integration.datamove.datamove_helpers import MY_ORDERS, fill_pg
    from tests.integration.datamove.test_datamove_steps import Ctx
    from tests.integration.datamove.test_datamove_steps import _plan as steps_plan

    stable, candidate = pg_pair[0], my_db
    fill_pg(stable, 5_000)
    _exec(candidate, MY_ORDERS)
    plan = steps_plan(tmp_path, stable, candidate)
    ctx = Ctx(plan, StateStore(plan.state_url()))
    steps = list(plan.step_list())
    try:
        assert CdcStep(steps[0]).run(ctx).status is StepStatus.DONE  # type: ignore[arg-type]
        ctx.step_index = 1
        assert BackfillStep(steps[1]).run(ctx).status is StepStatus.DONE  # type: ignore[arg-type]
        reverse = ctx.backgrounds["cdc-reverse"]
        time.sleep(1.0)
        assert reverse.status()["changes"] == 0, reverse.status()  # the copy was not echoed back
        _exec(stable, "UPDATE orders SET status = 'live' WHERE id = 7")
        _exec(candidate, "INSERT INTO orders (id, customer, status) VALUES (777777, 1, 'from-candidate')")

        def has(url: str, sql: str) -> bool:
            side = _Side.open(url, autocommit=True)
            try:
                return bool(side.execute(sql))
            finally:
                side.close()

        wait_for(lambda: has(stable, "SELECT 1 FROM orders WHERE id = 777777"), 30, "the reverse stream")
        wait_for(lambda: has(candidate, "SELECT 1 FROM orders WHERE id = 7 AND status = 'live'"), 30, "forward")

        def verdicts() -> list[object]:
            return [v for g in ctx.gates for v in g.evaluate(time.time())]

        wait_for(lambda: all(v.outcome is Outcome.PASS for v in verdicts()), 30,  # type: ignore[attr-defined]
                 lambda: str(verdicts()))
        assert reverse.status()["changes"] == 1
        ctx.step_index = 3
        assert FinalizeStep(steps[3]).run(ctx).status is StepStatus.DONE  # type: ignore[arg-type]
    finally:
        for bg in ctx.backgrounds.values():
            bg.stop()
    assert_identical(stable, candidate)


def test_the_binlog_position_is_read_on_servers_without_show_binary_log_status(my_db: str) -> None:
    """MariaDB does not know SHOW BINARY LOG STATUS (MySQL 8.2+; 8.4 removed SHOW MASTER STATUS): the
    position comes from SHOW MASTER STATUS instead, and it moves past a committed write."""
    from switchover.data.cdc import mysql as mysql_cdc

    _exec(my_db, MY_DDL)
    side = Side.open(my_db)
    try:
        before = mysql_cdc.current_position(side)
        log_file, pos = side.execute("SHOW MASTER STATUS")[0][:2]
        side.finish_read()
        assert before == f"{log_file}:{pos}"
        side.execute(f"INSERT INTO {TABLE} (id, customer, status) VALUES (1, 1, 'paid')")
        side.commit()
        after = mysql_cdc.current_position(side)
        assert mysql_cdc.position_key(after) > mysql_cdc.position_key(before)
    finally:
        side.close()
