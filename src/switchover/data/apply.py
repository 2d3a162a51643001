"""Applying captured changes to the target: in commit order, idempotently, position in the same transaction.

Every CDC source (PostgreSQL logical decoding, MySQL binlog, SQLite changelog, Debezium JSON lines)
produces ``Transaction`` objects; ``Applier.apply`` writes a batch of them in one target transaction
that also upserts the stream's position row in ``switchover_cdc_position``. Reading is
at-least-once (a restart re-reads from the last confirmed position), the effect exactly-once: a
transaction at or before the stored position is skipped by the reader, and each change is an upsert
or delete by key, so replaying one changes nothing.

Our own writes are marked so that a stream reading this database (reverse CDC) skips them instead of
echoing them back: PostgreSQL by the session's replication origin (set by the stream), MySQL/MariaDB by
the position row written in the same transaction (the binlog reader drops transactions that touch it),
SQLite by an ``origin`` on the changelog rows the transaction produced (``cdc/sqlite.py``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from switchover.data import apply_lock
from switchover.data.cdc.recent import RecentKeys
from switchover.data.move_tables import (
    BACKFILL_TABLE,
    GUARD_TTL,
    POSITION_TABLE,
    TOUCHED_TABLE,
    Side,
    TablePair,
    ensure_coordination_tables,
    key_text,
    upsert_sql,
)


@dataclass(frozen=True)
class Change:
    op: str  # insert | update | delete | truncate
    table: str  # source table
    row: dict[str, Any] | None = None  # new values by source column (insert, update)
    old_key: dict[str, Any] | None = None  # key before the change (update, delete)


@dataclass(frozen=True)
class Transaction:
    position: str  # where the source is after this transaction (LSN, binlog file:pos, changelog id)
    commit_at: float | None  # source commit time, epoch seconds
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class ApplyResult:
    transactions: int
    changes: int
    position: str | None
    lag_ms: float | None  # now - the last applied transaction's source commit time
    lags_ms: tuple[float, ...] = ()  # the same for every transaction of the batch


class Applier:
    """Writes transactions into the target. One per stream; not thread-safe."""

    def __init__(self, dst: Side, pairs: dict[str, TablePair], stream: str, *, mark_touched: bool = True,
                 recent: RecentKeys | None = None, origin: str | None = None) -> None:
        self.dst, self.pairs, self.stream, self.mark_touched = dst, pairs, stream, mark_touched
        self.origin = origin or f"sw_apply_{stream}"  # SQLite: what our changelog rows are marked with
        self.recent = recent  # told every key written or deleted, once committed (rollback_safe row diff)
        ensure_coordination_tables(dst)
        self._upserts = {t: upsert_sql(dst, p.target.name, p.target_columns, p.target_key) for t, p in pairs.items()}
        self._guard: frozenset[str] = frozenset()
        self._guard_read_at = float("-inf")

    def position(self) -> str | None:
        rows = self.dst.execute(f"SELECT position FROM {POSITION_TABLE} WHERE stream = {self.dst.ph}", (self.stream,))
        self.dst.finish_read()
        return str(rows[0][0]) if rows else None

    def record_start(self, position: str, now: float) -> None:
        """Where capture started (MySQL: the binlog position at prepare), unless a position is already stored."""
        if self.position() is None:
            self.dst.begin()
            self._save_position(position, None, now, None)
            self.dst.commit()

    def apply(self, txns: Sequence[Transaction], now: float) -> ApplyResult:
        """Apply ``txns`` (in order) and record the last one's position, all in one target transaction.
        ``now`` is the apply time recorded with the position (lag = now - source commit time)."""
        if not txns:
            return ApplyResult(0, 0, None, None)
        d = self.dst
        guarded = self._guarded()
        # Only tables a backfill is copying need the lock and the touched marks (see apply_lock).
        tables = sorted({self.pairs[c.table].target.name for t in txns for c in t.changes
                         if c.table in self.pairs and self.pairs[c.table].target.name in guarded})
        count = 0
        try:
            d.begin()
            own_from = self._own_changes_start()
            for name in tables:  # sorted: two appliers never wait on each other in opposite order
                apply_lock.acquire(d, name)
            written: list[tuple[str, list[Any]]] = []
            # Consecutive statements with the same SQL (e.g. upserts of one table) are sent together.
            run_sql = ""
            run_rows: list[list[Any]] = []
            for txn in txns:
                for change in txn.changes:
                    pair = self.pairs.get(change.table)
                    if pair is None:
                        continue
                    count += 1
                    for sql, params, key in self._statements(pair, change):
                        if sql != run_sql:
                            self._send(run_sql, run_rows)
                            run_sql, run_rows = sql, []
                        run_rows.append(params)
                        if key is not None:
                            written.append(key)
            self._send(run_sql, run_rows)
            touched = [(t, key_text(k)) for t, k in written if t in guarded]
            if touched:
                self._mark(touched)
            last = txns[-1]
            lag_ms = None if last.commit_at is None else max(0.0, (now - last.commit_at) * 1000.0)
            self._save_position(last.position, last.commit_at, now, lag_ms)
            if own_from is not None:
                from switchover.data.cdc.sqlite import mark_own_changes

                mark_own_changes(d, own_from, self.origin)
            d.commit()
        except BaseException:
            d.rollback()
            raise
        finally:
            if d.engine == "mysql":
                for name in tables:
                    with contextlib.suppress(Exception):  # the session is gone, and its locks with it
                        apply_lock.release(d, name)
        # Reported lag runs to the end of the commit: when the change became visible in the target.
        done = time.time()
        if self.recent is not None:
            by_table: dict[str, list[list[Any]]] = {}
            for t, k in written:
                by_table.setdefault(t, []).append(k)
            for t, keys in by_table.items():
                self.recent.applied(t, keys, done)
        lags = tuple(max(0.0, (done - t.commit_at) * 1000.0) for t in txns if t.commit_at is not None)
        return ApplyResult(len(txns), count, last.position, lags[-1] if lags else lag_ms, lags)

    # ------------------------------------------------------------------

    def _own_changes_start(self) -> int | None:
        """SQLite: the changelog's last id at the start of our transaction (None: no changelog here)."""
        if self.dst.engine != "sqlite":
            return None
        from switchover.data.cdc.sqlite import own_changes_start

        return own_changes_start(self.dst)

    def _guarded(self) -> frozenset[str]:
        """Target tables a backfill is copying now, re-read at most every GUARD_TTL seconds."""
        if not self.mark_touched:
            return frozenset()
        now = time.monotonic()
        if now - self._guard_read_at >= GUARD_TTL:
            rows = self.dst.execute(f"SELECT tbl FROM {BACKFILL_TABLE}")
            self.dst.finish_read()
            self._guard = frozenset(str(r[0]) for r in rows)
            self._guard_read_at = now
        return self._guard

    def _statements(self, pair: TablePair, change: Change) -> list[tuple[str, list[Any], tuple[str, list[Any]] | None]]:
        """One change as statements in order: (SQL, parameters, (target table, key) written or deleted)."""
        d, target = self.dst, pair.target.name
        if change.op == "truncate":
            return [(f"DELETE FROM {d.q(target)}", [], None)]
        out: list[tuple[str, list[Any], tuple[str, list[Any]] | None]] = []
        old = self._target_key(pair, change.old_key) if change.old_key else None
        new_row = self._target_row(pair, change.row) if change.row else None
        new = [new_row[k] for k in pair.target_key] if new_row else None
        if old is not None and (change.op == "delete" or (new is not None and old != new)):
            where = " AND ".join(f"{d.q(k)} = {d.ph}" for k in pair.target_key)
            out.append((f"DELETE FROM {d.q(target)} WHERE {where}", old, (target, old)))
        if change.op in ("insert", "update") and new_row is not None and new is not None:
            cols = [c for c in pair.target_columns if c in new_row]
            sql = self._upserts[change.table] if len(cols) == len(pair.target_columns) else \
                upsert_sql(d, target, cols, pair.target_key)  # an update without unchanged TOASTed values
            out.append((sql, [new_row[c] for c in cols], (target, new)))
        return out

    def _send(self, sql: str, rows: list[list[Any]]) -> None:
        """Run ``sql`` for each of ``rows``, in order, in as few round trips as the driver allows: PyMySQL
        sends an INSERT ... VALUES for many rows as one multi-row INSERT (rows apply in order, the last
        upsert of a key wins), psycopg pipelines. Measured: one round trip per change capped a MariaDB
        apply at ~4,000 changes/s, so a backlog (after a stall) took long to clear."""
        if not rows:
            return
        if len(rows) == 1 or not rows[0]:
            for params in rows:
                self.dst.execute(sql, params)
            return
        self.dst.executemany(sql, rows)

    def _target_row(self, pair: TablePair, row: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for s, t in zip(pair.source_columns, pair.target_columns, strict=True):
            if s in row:
                out[t] = convert(row[s], pair.source.column(s).type, self.dst.engine, pair.target.column(t).type)
        return out

    def _target_key(self, pair: TablePair, key: dict[str, Any]) -> list[Any]:
        return [convert(key[s], pair.source.column(s).type, self.dst.engine, pair.target.column(t).type)
                for s, t in zip(pair.source_key, pair.target_key, strict=True)]

    def _mark(self, touched: list[tuple[str, str]]) -> None:
        d = self.dst
        rows = sorted(set(touched))
        if d.engine == "mysql":
            d.executemany(f"INSERT IGNORE INTO {TOUCHED_TABLE} (tbl, k) VALUES (%s, %s)", rows)
        else:
            d.executemany(f"INSERT INTO {TOUCHED_TABLE} (tbl, k) VALUES ({d.ph}, {d.ph}) "
                          "ON CONFLICT (tbl, k) DO NOTHING", rows)

    def _save_position(self, position: str, commit_at: float | None, now: float, lag_ms: float | None) -> None:
        d = self.dst
        cols = ["stream", "position", "source_commit_at", "applied_at", "lag_ms"]
        d.execute(upsert_sql(d, POSITION_TABLE, cols, ["stream"]), (self.stream, position, commit_at, now, lag_ms))


def read_position(dst: Side, stream: str) -> dict[str, Any] | None:
    """The stream's row in the target's position table (for status, lag gates and rollback drains)."""
    if not dst.table_exists(POSITION_TABLE):
        dst.finish_read()
        return None
    rows = dst.execute(f"SELECT position, source_commit_at, applied_at, lag_ms FROM {POSITION_TABLE} "
                       f"WHERE stream = {dst.ph}", (stream,))
    dst.finish_read()
    if not rows:
        return None
    pos, commit_at, applied_at, lag = rows[0]
    return {"position": pos, "source_commit_at": commit_at, "applied_at": applied_at, "lag_ms": lag}


def convert(value: Any, source_type: str, target_engine: str, target_type: str = "") -> Any:
    """A value as a source delivers it (PostgreSQL text from pgoutput, Python values from the binlog,
    SQLite or a SELECT) -> what the target's driver binds correctly."""
    if value is None:
        return None
    typ = source_type.lower()
    if target_type == "boolean" and isinstance(value, int | str) and not isinstance(value, bool):
        return str(value).lower() in ("1", "t", "true")  # MySQL tinyint(1) / SQLite 0-1 -> PostgreSQL boolean
    if isinstance(value, str) and target_engine != "postgresql":
        # pgoutput sends PostgreSQL's text format; other engines want typed values.
        if typ == "boolean":
            return int(value in ("t", "true", "1"))
        if typ in ("smallint", "integer", "bigint") and value.lstrip("-").isdigit():
            return int(value)
    if typ == "bytea" and isinstance(value, str):
        raw = value[2:] if value.startswith("\\x") else value
        return bytes.fromhex(raw)
    if isinstance(value, str) and typ.startswith("timestamp") and target_engine != "postgresql":
        parsed = _parse_pg_timestamp(value)
        if parsed is not None:
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
            return parsed.isoformat(sep=" ") if target_engine == "sqlite" else parsed
    if isinstance(value, dt.datetime) and value.tzinfo is not None and target_engine != "postgresql":
        value = value.astimezone(dt.UTC).replace(tzinfo=None)  # MySQL DATETIME / SQLite text hold UTC
    if target_engine == "sqlite":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, dt.datetime | dt.date | dt.time):
            return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _parse_pg_timestamp(text: str) -> dt.datetime | None:
    t = text.strip()
    # PostgreSQL prints offsets as +00 or +05:30; fromisoformat wants +00:00.
    if len(t) >= 3 and t[-3] in "+-" and t[-2:].isdigit():
        t = t + ":00"
    try:
        return dt.datetime.fromisoformat(t)
    except ValueError:
        return None


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()
