"""Backfill while writes arrive and CDC runs: the row diff finds source and target identical."""

from __future__ import annotations

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
    Writer,
    assert_identical,
    fill_pg,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(240)]


def _sentinel_arrived(src: str, dst: str, key: int) -> bool:
    side = Side.open(dst, autocommit=True)
    try:
        return bool(side.execute(f"SELECT 1 FROM orders WHERE id = {key}"))
    finally:
        side.close()


def _move_with_writes(src: str, dst: str, rows: int, tmp_path: Path, *, chunk_time: float = 0.5) -> StateStore:
    stream = CdcStream(parse_db_url(src), parse_db_url(dst), [TableRoute("orders")])
    stream.prepare()  # capture starts before the copy reads anything
    cdc = CdcBackground(stream)
    cdc.start()
    writer = Writer(src, rows, pause=0.002).start()
    store = StateStore(f"sqlite:///{tmp_path}/state.db")
    control = StoreControl(store, "orders", "test-run", "test")
    s, d = Side.open(src, autocommit=True), Side.open(dst)
    try:
        result = Backfill(s, d, BackfillOptions("orders", chunk_time=chunk_time), control).run()
    finally:
        s.close()
        d.close()
    writes = writer.stop()
    assert result.state == "done" and result.rows >= rows
    assert writes > 50, "the writer must have changed rows during the copy"
    side = Side.open(src, autocommit=True)
    side.execute("INSERT INTO orders (id, customer, amount, status) VALUES (999999999, 0, 0, 'sentinel')")
    side.close()
    wait_for(lambda: _sentinel_arrived(src, dst, 999999999), 60,
             lambda: f"CDC to apply the sentinel row ({stream.status}, {cdc.error!r})")
    cdc.stop()
    assert cdc.error is None
    assert stream.status.changes >= writes // 2
    return store


@pytest.mark.mariadb
@pytest.mark.slow
def test_datamove_pg_to_mariadb_1m_rows_with_writes_and_cdc(pg_pair: tuple[str, str], my_db: str,
                                                            tmp_path: Path) -> None:
    src, _ = pg_pair
    fill_pg(src, 1_000_000)
    target = Side.open(my_db, autocommit=True)
    target.execute(MY_ORDERS)
    target.close()
    store = _move_with_writes(src, my_db, 1_000_000, tmp_path)
    assert_identical(src, my_db)
    started = [e for e in store.events("test-run") if e.kind == "backfill_started"]
    assert started and started[0].payload["cdc_guard"] is True and started[0].payload["bulk"] is True


def test_datamove_pg_to_pg_with_writes_and_cdc(pg_pair: tuple[str, str], tmp_path: Path) -> None:
    src, dst = pg_pair
    fill_pg(src, 60_000)
    target = Side.open(dst, autocommit=True)
    target.execute(PG_ORDERS)
    target.close()
    _move_with_writes(src, dst, 60_000, tmp_path, chunk_time=0.05)
    assert_identical(src, dst)
