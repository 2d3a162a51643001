"""Shared by the data-movement integration tests: tables, a bounded writer, the row diff as proof."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from switchover.data.move_tables import Side
from switchover.data.rowdiff import TableSpec, diff_tables
from switchover.data.urls import parse_db_url
from switchover.plan import Plan, load_plan

PG_ORDERS = ("CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, amount numeric(12,2), "
             "status text, created_at timestamptz DEFAULT now(), paid boolean, note text)")
MY_ORDERS = ("CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, amount decimal(12,2), "
             "status text, created_at datetime(6), paid tinyint(1), note text)")
SQLITE_ORDERS = ("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL, amount NUMERIC, "
                 "status TEXT, created_at TIMESTAMP, paid INTEGER, note TEXT)")


def fill_pg(url: str, rows: int) -> None:
    side = Side.open(url, autocommit=True)
    side.execute(PG_ORDERS)
    side.execute(
        "INSERT INTO orders SELECT g, g % 1000, (g % 10000) / 100.0, 'new', "
        "timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second', g % 2 = 0, "
        f"CASE WHEN g % 7 = 0 THEN NULL ELSE E'note\\t' || g END FROM generate_series(1, {rows}) g")
    side.execute("ANALYZE orders")
    side.close()


class Writer:
    """Inserts, updates, deletes and key changes against the source until stopped (bounded in count)."""

    def __init__(self, url: str, max_id: int, *, limit: int = 100_000, pause: float = 0.001,
                 seed: int = 7) -> None:
        self.url, self.next_id, self.max_id, self.limit, self.pause = url, max_id + 1, max_id, limit, pause
        self.rng = random.Random(seed)
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def _run(self) -> None:
        side = Side.open(self.url, autocommit=True)
        ph = side.ph
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and self.done < self.limit and time.monotonic() < deadline:
            op = self.rng.random()
            target = self.rng.randint(1, self.max_id)
            if op < 0.4:
                side.execute(f"INSERT INTO orders (id, customer, amount, status, created_at, paid, note) "
                             f"VALUES ({ph}, 1, 9.99, 'live', '2026-02-02 00:00:00', {ph}, 'w')",
                             (self.next_id, True if side.engine == "postgresql" else 1))
                self.next_id += 1
            elif op < 0.8:
                side.execute(f"UPDATE orders SET status = 'changed', amount = amount + 1 WHERE id = {ph}", (target,))
            elif op < 0.95:
                side.execute(f"DELETE FROM orders WHERE id = {ph}", (target,))
            else:  # a key change: the row moves to a new id
                side.execute(f"UPDATE orders SET id = {ph} WHERE id = {ph}", (self.next_id + 10_000_000, target))
                self.next_id += 1
            self.done += 1
            if self.pause:
                time.sleep(self.pause)
        side.close()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.done


def assert_identical(src: str, dst: str, table: str = "orders") -> None:
    result = diff_tables(parse_db_url(src), parse_db_url(dst), TableSpec(table))
    assert result.equal, (f"missing {result.missing[:5]} extra {result.extra[:5]} changed {result.changed[:3]} "
                          f"({result.source_rows} vs {result.target_rows} rows)")
    assert result.source_rows == result.target_rows


def wait_for(predicate, timeout: float = 60.0, what="condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")


def data_plan(tmp_path: Path, name: str, src: str, dst: str, steps: tuple[str, ...],
              table: str = "orders") -> Plan:
    """A plan moving ``table`` (key ``id``) from ``src`` to ``dst`` with ``steps`` (YAML step lines,
    e.g. ``"backfill: {tables: [orders]}"``); its state in ``tmp_path``."""
    return load_plan(write_data_plan(tmp_path, name, src, dst, steps, table))


def write_data_plan(tmp_path: Path, name: str, src: str, dst: str, steps: tuple[str, ...],
                    table: str = "orders", state: str | None = None) -> Path:
    """``data_plan``'s file (``tmp_path/plan.yaml``); ``state`` as written in it (default: an
    absolute SQLite file in ``tmp_path``)."""
    lines = "".join(f"  - {step}\n" for step in steps)
    path = tmp_path / "plan.yaml"
    path.write_text(f"""
name: {name}
stable: {{url: "http://127.0.0.1:18081"}}
candidate: {{url: "http://127.0.0.1:18082"}}
state: "{state or f'sqlite:///{tmp_path}/state.db'}"
data:
  source: "{src}"
  target: "{dst}"
  tables: [{{name: {table}, key: [id]}}]
steps:
{lines}""")
    return path


def reverse_cdc_plan(tmp_path: Path, name: str, src: str, dst: str, table: str = "orders",
                     steps: tuple[str, ...] = ()) -> Plan:
    """Forward and reverse CDC of ``table``, then ``steps``, then a canary."""
    return data_plan(tmp_path, name, src, dst, (f"cdc: {{tables: [{table}], reverse: true}}", *steps,
                                                "canary: {weight: 10}"), table)


def row_status(url: str, table: str, key: int) -> str | None:
    """The ``status`` column of row ``key`` (None: no such row)."""
    side = Side.open(url, autocommit=True)
    try:
        rows = side.execute(f"SELECT status FROM {table} WHERE id = {key}")
        return str(rows[0][0]) if rows else None
    finally:
        side.close()
