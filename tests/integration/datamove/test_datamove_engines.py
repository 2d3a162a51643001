"""The other engine pairs: SQLite -> SQLite (the embedded default: triggers + changelog) and
MariaDB -> PostgreSQL (ROW binlog), each a backfill while writes arrive and CDC runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from switchover.data.backfill import Backfill, BackfillOptions
from switchover.data.backfill_state import StoreControl
from switchover.data.cdc.stream import CdcBackground, CdcStream, TableRoute
from switchover.data.move_tables import Side
from switchover.data.urls import parse_db_url
from switchover.engine.store import StateStore
from tests.integration.datamove.datamove_helpers import (
    MY_ORDERS,
    PG_ORDERS,
    SQLITE_ORDERS,
    Writer,
    assert_identical,
    wait_for,
)

pytestmark = [pytest.mark.timeout(120)]


def _run(src: str, dst: str, rows: int, tmp_path: Path) -> None:
    stream = CdcStream(parse_db_url(src), parse_db_url(dst), [TableRoute("orders")])
    stream.prepare()
    cdc = CdcBackground(stream)
    cdc.start()
    writer = Writer(src, rows, pause=0.002).start()
    control = StoreControl(StateStore(f"sqlite:///{tmp_path}/state.db"), "orders", "run", "test")
    s, d = Side.open(src, autocommit=True), Side.open(dst)
    try:
        result = Backfill(s, d, BackfillOptions("orders", chunk_time=0.05, initial_chunk=500), control).run()
    finally:
        s.close()
        d.close()
    assert result.state == "done"
    wait_for(lambda: writer.done >= 300, 60, "300 writes")  # some during the copy, the rest after it
    writer.stop()
    side = Side.open(src, autocommit=True)
    side.execute("INSERT INTO orders (id, customer, status) VALUES (999999999, 0, 'sentinel')")
    side.close()

    def arrived() -> bool:
        t = Side.open(dst, autocommit=True)
        try:
            return bool(t.execute("SELECT 1 FROM orders WHERE id = 999999999"))
        finally:
            t.close()

    wait_for(arrived, 60, lambda: f"the sentinel ({stream.status}, {cdc.error!r})")
    cdc.stop()
    assert_identical(src, dst)


def test_datamove_sqlite_to_sqlite_with_writes_and_cdc(tmp_path: Path) -> None:
    src, dst = tmp_path / "v1.db", tmp_path / "v2.db"
    with sqlite3.connect(src) as conn:
        conn.execute(SQLITE_ORDERS)
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [(i, i % 100, f"{i % 1000}.25", "new", f"2026-01-01 00:00:{i % 60:02d}", i % 2,
                           None if i % 7 == 0 else f"n{i}") for i in range(1, 20_001)])
    with sqlite3.connect(dst) as conn:
        conn.execute(SQLITE_ORDERS)
    _run(f"sqlite:///{src}", f"sqlite:///{dst}", 20_000, tmp_path)


@pytest.mark.mariadb
@pytest.mark.postgres
def test_datamove_mariadb_to_postgres_binlog_with_writes(my_db: str, pg_pair: tuple[str, str],
                                                         tmp_path: Path) -> None:
    _, dst = pg_pair
    side = Side.open(my_db, autocommit=True)
    side.execute(MY_ORDERS)
    side.execute("INSERT INTO orders SELECT seq, seq % 100, seq / 100, 'new', '2026-01-01 00:00:00', seq % 2, "
                 "CONCAT('n', seq) FROM seq_1_to_20000")
    side.close()
    Side.open(dst, autocommit=True).execute(PG_ORDERS)
    _run(my_db, dst, 20_000, tmp_path)


@pytest.mark.postgres
@pytest.mark.mariadb
@pytest.mark.parametrize("target", ["postgresql", "mariadb"])
def test_datamove_rerun_over_populated_target_updates_changed_rows(target: str, pg_pair: tuple[str, str],
                                                                   my_db: str, tmp_path: Path) -> None:
    """A second backfill finds the keys already there (the bulk fast path cannot insert them) and merges:
    rows changed in the source since the first copy are updated, none duplicated."""
    src, pg_dst = pg_pair
    from tests.integration.datamove.datamove_helpers import fill_pg

    fill_pg(src, 5_000)
    dst = pg_dst if target == "postgresql" else my_db
    Side.open(dst, autocommit=True).execute(PG_ORDERS if target == "postgresql" else MY_ORDERS)
    control = StoreControl(StateStore(f"sqlite:///{tmp_path}/state.db"), "orders", "run", "test")
    for run in range(2):
        s, d = Side.open(src, autocommit=True), Side.open(dst)
        assert Backfill(s, d, BackfillOptions("orders"), control).run().state == "done"
        if run == 0:
            s.execute("UPDATE orders SET status = 'changed-after-first-copy' WHERE id % 100 = 0")
        s.close()
        d.close()
    assert_identical(src, dst)
