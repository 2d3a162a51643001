"""Backfill: copy a table's existing rows to the target while the source keeps serving.

- Keyset pagination on the primary key (``WHERE (k) > (last) ORDER BY k LIMIT n``), never OFFSET.
- Each chunk is bulk-loaded into a staging table in the target (COPY for PostgreSQL sources into
  PostgreSQL, ``COPY ... TO STDOUT`` into ``LOAD DATA LOCAL INFILE`` for MariaDB/MySQL, batched
  inserts otherwise) and merged server-side with ``INSERT ... SELECT ... ON CONFLICT`` /
  ``ON DUPLICATE KEY UPDATE``: idempotent, so a chunk copied twice (after kill -9) changes nothing.
- The merge skips keys CDC has already applied (``switchover_cdc_touched``), under the apply lock:
  capture starts before the copy, and a change that arrives during the copy is never overwritten by
  the older row the chunk read.
- Reading chunk n+1 overlaps with loading chunk n (a reader thread), chunk size adapts to
  ``chunk_time``, throttling is checked before every read, a checkpoint is saved after every merge.
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from switchover.data import apply_lock
from switchover.data.apply import convert
from switchover.data.backfill_control import (
    BackfillStatus,
    ThrottleInputs,
    next_chunk_size,
    throttle_reason,
)
from switchover.data.move_tables import (
    BACKFILL_TABLE,
    GUARD_TTL,
    POSITION_TABLE,
    TOUCHED_TABLE,
    ColumnMap,
    Side,
    TablePair,
    key_text_sql,
    on_conflict,
    pair_tables,
)
from switchover.errors import UserError
from switchover.secrets import redact

STAGING = "switchover_stage"


@dataclass(frozen=True)
class BackfillOptions:
    table: str
    target_table: str | None = None
    mapping: ColumnMap = field(default_factory=ColumnMap)
    chunk_time: float = 0.5
    max_lag_ms: float = 500.0
    throttle_query: str | None = None
    throttle_file: str | None = None
    initial_chunk: int = 5000
    throttle_poll: float = 0.25


class BackfillControl(Protocol):
    """Where the backfill keeps its checkpoint, reads operator commands and journals decisions."""

    def load(self) -> BackfillStatus | None: ...

    def save(self, status: BackfillStatus) -> None: ...

    def paused(self) -> bool: ...

    def journal(self, kind: str, payload: dict[str, Any]) -> None: ...


@dataclass
class _Chunk:
    rows: int
    last_key: list[str]
    data: bytes | list[tuple[Any, ...]]
    read_s: float


_END = object()


class Backfill:
    """One table's copy. ``run()`` returns the final status; it resumes from ``control``'s checkpoint."""

    def __init__(self, src: Side, dst: Side, options: BackfillOptions, control: BackfillControl,
                 on_progress: Callable[[BackfillStatus], None] | None = None) -> None:
        self.src, self.dst, self.opt, self.control = src, dst, options, control
        self.on_progress = on_progress or (lambda status: None)
        self.pair: TablePair = pair_tables(src, dst, options.table, options.target_table, options.mapping)
        self.target = self.pair.target.name
        self.bulk = src.engine == "postgresql" and dst.engine in ("postgresql", "mysql")
        self._chunk_size = options.initial_chunk
        self._stop = threading.Event()
        self._throttle: str | None = None
        self._lag_ms: float | None = None
        self._error: BaseException | None = None
        self._cdc_guard = False
        self._origin: str | None = None
        self._tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else None

    # ------------------------------------------------------------------ public

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> BackfillStatus:
        previous = self.control.load()
        resume = previous is not None and previous.state not in ("done",)
        now = time.time()
        status = BackfillStatus(
            table=self.opt.table, state="running", rows=previous.rows if resume and previous else 0,
            chunks=previous.chunks if resume and previous else 0,
            last_key=previous.last_key if resume and previous else None, chunk_size=self._chunk_size,
            rows_per_s=0.0, throttle=None, lag_ms=None, total_estimate=self._estimate_rows(),
            updated_at=now, started_at=now, pid=os.getpid())
        self._cdc_guard = self.dst.table_exists(TOUCHED_TABLE)
        self.dst.finish_read()
        if self._cdc_guard:
            self._announce()
        self.control.journal("backfill_started", {
            "table": self.opt.table, "target": self.target, "resumed_from": status.last_key,
            "rows_before": status.rows, "cdc_guard": self._cdc_guard, "bulk": self.bulk})
        self._prepare_staging()
        if self.dst.engine == "postgresql":
            # Mark the copy's writes with a replication origin: a reverse stream (target -> source)
            # skips them instead of echoing every copied row back to the source.
            from switchover.data.cdc.postgres import ensure_origin
            from switchover.data.cdc.stream import APPLY_ORIGIN_PREFIX

            self._origin = f"{APPLY_ORIGIN_PREFIX}bf_{self.target}"[:60]
            ensure_origin(self.dst, self._origin)
            self.dst.commit()
        elif self.dst.engine == "mysql":
            # The same for MySQL/MariaDB: a marker row in every chunk's transaction (cdc/mysql.py).
            from switchover.data.cdc.mysql import ensure_origin_table

            ensure_origin_table(self.dst)
            self.dst.commit()
        reader_src = Side(self.src.url, autocommit=True)
        q: queue.Queue[Any] = queue.Queue(maxsize=2)
        reader = threading.Thread(target=self._reader, args=(reader_src, status.last_key, q),
                                  name=f"backfill-read-{self.opt.table}", daemon=True)
        reader.start()
        copied_this_run = 0
        t0 = time.monotonic()
        try:
            while True:
                try:
                    item = q.get(timeout=0.5)
                except queue.Empty:
                    status = replace(status, throttle=self._throttle, lag_ms=self._lag_ms,
                                     state="throttled" if self._throttle else "running", updated_at=time.time())
                    self.on_progress(status)
                    if self._error is not None:
                        raise self._error from None
                    continue
                if item is _END:
                    break
                chunk: _Chunk = item
                w0 = time.monotonic()
                self._write_chunk(chunk)
                write_s = time.monotonic() - w0
                # The reader and writer overlap: the slower of the two sets the pace.
                self._chunk_size = next_chunk_size(self._chunk_size, max(write_s, chunk.read_s),
                                                   self.opt.chunk_time)
                copied_this_run += chunk.rows
                rate = copied_this_run / max(1e-6, time.monotonic() - t0)
                status = replace(status, rows=status.rows + chunk.rows, chunks=status.chunks + 1,
                                 last_key=chunk.last_key, chunk_size=self._chunk_size, rows_per_s=rate,
                                 throttle=self._throttle, lag_ms=self._lag_ms, state="running",
                                 updated_at=time.time())
                self.control.save(status)
                self.on_progress(status)
            if self._error is not None:
                raise self._error
        except BaseException as exc:
            self._stop.set()
            failed = replace(status, state="failed", updated_at=time.time())
            self.control.save(failed)
            self.control.journal("backfill_failed", {"table": self.opt.table, "error": redact(str(exc)),
                                                     "rows": status.rows, "last_key": status.last_key})
            raise
        finally:
            reader.join(timeout=5)
            reader_src.close()
            if self._cdc_guard:
                self._withdraw()
            if self._origin is not None:
                from switchover.data.cdc.postgres import release_origin

                release_origin(self.dst, self._origin)
        if self._stop.is_set():
            status = replace(status, state="stopped", updated_at=time.time())
            self.control.save(status)
            return status
        status = replace(status, state="done", throttle=None, updated_at=time.time())
        self.control.save(status)
        self.control.journal("backfill_done", {"table": self.opt.table, "rows": status.rows,
                                               "chunks": status.chunks,
                                               "seconds": round(time.monotonic() - t0, 3),
                                               "rows_per_s": round(status.rows_per_s, 1)})
        self.on_progress(status)
        return status

    def _announce(self) -> None:
        """Tell CDC this table is being copied, then wait until every applier has seen it: from then on
        CDC marks the keys it applies and takes the apply lock for this table."""
        d = self.dst
        d.begin()
        d.execute(f"DELETE FROM {BACKFILL_TABLE} WHERE tbl = {d.ph}", (self.target,))
        d.execute(f"INSERT INTO {BACKFILL_TABLE} (tbl, started_at) VALUES ({d.ph}, {d.ph})", (self.target, time.time()))
        d.commit()
        time.sleep(GUARD_TTL + 0.3)

    def _withdraw(self) -> None:
        with contextlib.suppress(Exception):  # a killed copy leaves the row: CDC keeps guarding (safe)
            self.dst.rollback()
            self.dst.begin()
            self.dst.execute(f"DELETE FROM {BACKFILL_TABLE} WHERE tbl = {self.dst.ph}", (self.target,))
            self.dst.commit()

    # ------------------------------------------------------------------ reading (its own thread)

    def _reader(self, src: Side, last_key: list[str] | None, q: queue.Queue[Any]) -> None:
        try:
            while not self._stop.is_set():
                if not self._wait_throttle(src):
                    break
                chunk = self._read_chunk(src, last_key, self._chunk_size)
                if chunk is None:
                    break
                q.put(chunk)
                last_key = chunk.last_key
        except BaseException as exc:  # surfaced by the writer loop
            self._error = exc
        finally:
            q.put(_END)

    def _wait_throttle(self, src: Side) -> bool:
        """Block while a throttle reason holds; journal each new reason. False when stopped."""
        started: float | None = None
        while not self._stop.is_set():
            reason = throttle_reason(self._throttle_inputs(src))
            if reason != self._throttle:
                if reason is not None:
                    self.control.journal("backfill_throttled", {"table": self.opt.table, "reason": reason})
                elif started is not None:
                    self.control.journal("backfill_unthrottled", {
                        "table": self.opt.table, "after_s": round(time.monotonic() - started, 3)})
                self._throttle = reason
            if reason is None:
                return True
            started = started or time.monotonic()
            time.sleep(self.opt.throttle_poll)
        return False

    def _throttle_inputs(self, src: Side) -> ThrottleInputs:
        query_value: float | None = None
        if self.opt.throttle_query:
            try:
                rows = src.execute(self.opt.throttle_query)
            except Exception as exc:
                raise UserError(f"--throttle-query failed on {src.url.safe}: {redact(str(exc)).strip()}") from None
            query_value = float(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else 0.0
        flag = self.opt.throttle_file if self.opt.throttle_file and os.path.exists(self.opt.throttle_file) else None
        self._lag_ms = self._current_lag_ms(src)
        return ThrottleInputs(paused=self.control.paused(), flag_file=flag, query_value=query_value,
                              lag_ms=self._lag_ms, max_lag_ms=self.opt.max_lag_ms)

    def _current_lag_ms(self, src: Side) -> float | None:
        """The worst of: physical replicas' replay lag on a PostgreSQL source, CDC apply lag in the target."""
        lags: list[float] = []
        if src.engine == "postgresql":
            # Physical replicas only: logical walsenders (CDC, ours included) report replay_lag too.
            rows = src.execute("SELECT max(extract(epoch FROM r.replay_lag)) * 1000 FROM pg_stat_replication r "
                               "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots s "
                               "WHERE s.active_pid = r.pid AND s.slot_type = 'logical')")
            if rows and rows[0][0] is not None:
                lags.append(float(rows[0][0]))
        if self._cdc_guard:
            lags.extend(_cdc_lags(self._lag_side(), self.target))
        return max(lags) if lags else None

    def _lag_side(self) -> Side:
        # A separate connection: the writer's connection is busy in another thread.
        side = getattr(self, "_lag_conn", None)
        if side is None:
            side = Side(self.dst.url, autocommit=True)
            self._lag_conn = side
        return side

    def _read_chunk(self, src: Side, last_key: list[str] | None, size: int) -> _Chunk | None:
        t0 = time.monotonic()
        if self.bulk:
            data = _pg_copy_out(src, self.pair, self.dst.engine, last_key, size)
            if not data:
                return None
            lines = data.count(b"\n")
            last_line = data[: len(data) - 1].rsplit(b"\n", 1)[-1]
            fields = last_line.split(b"\t")
            idx = [self.pair.source_columns.index(k) for k in self.pair.source_key]
            key = [_copy_unescape(fields[i]) for i in idx]
            return _Chunk(lines, key, data, time.monotonic() - t0)
        rows = _select_chunk(src, self.pair, last_key, size)
        if not rows:
            return None
        idx = [self.pair.source_columns.index(k) for k in self.pair.source_key]
        key = [str(rows[-1][i]) for i in idx]
        types = [(self.pair.source.column(s).type, self.pair.target.column(t).type)
                 for s, t in zip(self.pair.source_columns, self.pair.target_columns, strict=True)]
        engine = self.dst.engine
        converted = [tuple(convert(v, st, engine, tt) for v, (st, tt) in zip(r, types, strict=True)) for r in rows]
        return _Chunk(len(rows), key, converted, time.monotonic() - t0)

    # ------------------------------------------------------------------ writing (the caller's thread)

    def _prepare_staging(self) -> None:
        d, cols = self.dst, ", ".join(self.dst.q(c) for c in self.pair.target_columns)
        tbl = d.q(self.target)
        if d.engine == "postgresql":
            d.execute(f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} AS SELECT {cols} FROM {tbl} WITH NO DATA")
        elif d.engine == "mysql":
            # MariaDB's Aria engine: no undo or redo for rows that live one chunk; measured ~1.7x faster
            # to load and empty than an InnoDB staging table. MySQL has no Aria: its default engine then.
            try:
                d.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} ENGINE=Aria "
                          f"AS SELECT {cols} FROM {tbl} WHERE 1 = 0")
            except Exception:
                d.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} AS SELECT {cols} FROM {tbl} WHERE 1 = 0")
        else:
            d.execute(f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} AS SELECT {cols} FROM {tbl} WHERE 0")
        d.commit()

    def _write_chunk(self, chunk: _Chunk) -> None:
        d = self.dst
        cols = ", ".join(d.q(c) for c in self.pair.target_columns)
        try:
            d.begin()
            own_from = self._own_changes_start()
            if isinstance(chunk.data, bytes) and not self._cdc_guard and self._load_direct(chunk.data, chunk.rows):
                self._mark_own(own_from)
                d.commit()
                return
            # TRUNCATE: emptying by DELETE costs as much as loading (row by row, with undo).
            d.execute(f"DELETE FROM {STAGING}" if d.engine == "sqlite" else f"TRUNCATE TABLE {STAGING}")
            if isinstance(chunk.data, bytes):
                if d.engine == "postgresql":
                    with d.conn.cursor() as cur, cur.copy(f"COPY {STAGING} ({cols}) FROM STDIN") as copy:
                        copy.write(chunk.data)
                else:
                    self._load_data_local(chunk.data)
            else:
                marks = ", ".join([d.ph] * len(self.pair.target_columns))
                d.executemany(f"INSERT INTO {STAGING} ({cols}) VALUES ({marks})", chunk.data)
            apply_lock.acquire(d, self.target)
            d.execute(self._merge_sql(), (self.target,) if self._cdc_guard else ())
            self._mark_own(own_from)
            d.commit()
        except BaseException:
            d.rollback()
            raise
        finally:
            if d.engine == "mysql":
                with contextlib.suppress(Exception):  # the session is gone: its named lock went with it
                    apply_lock.release(d, self.target)

    def _own_changes_start(self) -> int | None:
        if self.dst.engine != "sqlite":
            return None
        from switchover.data.cdc.sqlite import own_changes_start

        return own_changes_start(self.dst)

    def _mark_own(self, own_from: int | None) -> None:
        """Mark the chunk's writes as ours, so a reverse stream reading the target skips them (loop
        prevention; PostgreSQL does it with the session's replication origin)."""
        origin = f"sw_apply_bf_{self.target}"[:100]
        if self.dst.engine == "mysql":
            from switchover.data.cdc.mysql import mark_origin

            mark_origin(self.dst, origin)
        elif own_from is not None:
            from switchover.data.cdc.sqlite import mark_own_changes

            mark_own_changes(self.dst, own_from, origin)

    def _merge_sql(self) -> str:
        d, cols = self.dst, ", ".join(self.dst.q(c) for c in self.pair.target_columns)
        where = "WHERE 1 = 1"  # SQLite needs a WHERE before ON CONFLICT in INSERT ... SELECT
        if self._cdc_guard:
            where = (f"WHERE NOT EXISTS (SELECT 1 FROM {TOUCHED_TABLE} x WHERE x.tbl = {d.ph} "
                     f"AND x.k = {key_text_sql(d.engine, 's', self.pair.target_key)})")
        return (f"INSERT INTO {d.q(self.target)} ({cols}) SELECT {cols} FROM {STAGING} s {where} "
                + on_conflict(d.engine, self.pair.target_columns, self.pair.target_key))

    def _load_direct(self, data: bytes, rows: int) -> bool:
        """Fast path without CDC: load the chunk straight into the target, as the bulk pipe does.
        True when every row was new; False when some keys already exist (a resumed or repeated copy):
        then the caller merges the chunk through staging, which updates them, in the same transaction."""
        d = self.dst
        cols = ", ".join(d.q(c) for c in self.pair.target_columns)
        if d.engine == "postgresql":
            import psycopg

            d.execute("SAVEPOINT switchover_direct")
            try:
                with d.conn.cursor() as cur, cur.copy(f"COPY {d.q(self.target)} ({cols}) FROM STDIN") as copy:
                    copy.write(data)
            except psycopg.errors.UniqueViolation:
                d.execute("ROLLBACK TO SAVEPOINT switchover_direct")
                return False
            d.execute("RELEASE SAVEPOINT switchover_direct")
            return True
        # LOAD DATA LOCAL skips rows whose key exists (it implies IGNORE): the count says whether any did.
        return self._load_data_local(data, into=self.target) == rows

    def _load_data_local(self, data: bytes, into: str = STAGING) -> int:
        cols = ", ".join(self.dst.q(c) if not self._is_binary(c) else f"@{c}" for c in self.pair.target_columns)
        sets = [f"{self.dst.q(c)} = UNHEX(@{c})" for c in self.pair.target_columns if self._is_binary(c)]
        with tempfile.NamedTemporaryFile("wb", dir=self._tmpdir, prefix="sw_backfill_", suffix=".tsv") as fh:
            fh.write(data)
            fh.flush()
            path = fh.name.replace("\\", "\\\\").replace("'", "\\'")
            return self.dst.execute_count(
                f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {self.dst.q(into) if into != STAGING else STAGING} "
                "CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
                f"({cols})" + (" SET " + ", ".join(sets) if sets else ""))

    def _is_binary(self, target_col: str) -> bool:
        src_col = self.pair.source_columns[self.pair.target_columns.index(target_col)]
        return self.pair.source.column(src_col).type == "bytea"

    def _estimate_rows(self) -> int | None:
        s, name = self.src, self.opt.table
        try:
            if s.engine == "postgresql":
                rows = s.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", (s.q(name),))
            elif s.engine == "mysql":
                rows = s.execute("SELECT table_rows FROM information_schema.tables "
                                 "WHERE table_schema = DATABASE() AND table_name = %s", (name,))
            else:
                rows = s.execute(f"SELECT COUNT(*) FROM {s.q(name)}")
        finally:
            s.finish_read()
        value = int(rows[0][0]) if rows and rows[0][0] is not None else -1
        return value if value >= 0 else None


# ---------------------------------------------------------------------- helpers


def _cdc_lags(side: Side, table: str) -> list[float]:
    if not side.table_exists(POSITION_TABLE):
        return []
    like = f"%{table}%"
    rows = side.execute(f"SELECT lag_ms FROM {POSITION_TABLE} WHERE stream LIKE {side.ph} AND lag_ms IS NOT NULL",
                        (like,))
    side.finish_read()
    return [float(r[0]) for r in rows]


def _source_exprs(pair: TablePair, target_engine: str) -> list[str]:
    """What the COPY selects: PostgreSQL text output the target's loader reads as the same value."""
    out = []
    for name in pair.source_columns:
        col = f'"{name}"'
        typ = pair.source.column(name).type
        if target_engine == "mysql":
            if typ == "boolean":
                col = f"{col}::int"
            elif typ.startswith("timestamp") and "with time zone" in typ:
                col = f"({col} AT TIME ZONE 'UTC')"
            elif typ == "bytea":
                col = f"encode({col}, 'hex')"
        out.append(col)
    return out


def _key_predicate(pair: TablePair, engine: str, last_key: Sequence[str] | None, literal: Callable[[str], str],
                   with_casts: bool) -> str:
    if last_key is None:
        return ""
    keys = ", ".join(f'"{k}"' if engine != "mysql" else f"`{k}`" for k in pair.source_key)
    vals = []
    for name, value in zip(pair.source_key, last_key, strict=True):
        typ = pair.source.column(name).type
        vals.append(f"{literal(value)}::{typ}" if with_casts else literal(value))
    return f"WHERE ({keys}) > ({', '.join(vals)})"


def _pg_copy_out(src: Side, pair: TablePair, target_engine: str, last_key: list[str] | None, size: int) -> bytes:
    from psycopg import sql

    def literal(value: str) -> str:
        return sql.Literal(value).as_string(src.conn)

    order = ", ".join(f'"{k}"' for k in pair.source_key)
    select = (f"SELECT {', '.join(_source_exprs(pair, target_engine))} FROM {src.q(pair.source.name)} "
              f"{_key_predicate(pair, 'postgresql', last_key, literal, True)} ORDER BY {order} LIMIT {int(size)}")
    buf = bytearray()
    with src.conn.cursor() as cur, cur.copy(f"COPY ({select}) TO STDOUT") as copy:
        for block in copy:
            buf += block
    return bytes(buf)


def _select_chunk(src: Side, pair: TablePair, last_key: list[str] | None, size: int) -> list[tuple[Any, ...]]:
    cols = ", ".join(src.q(c) for c in pair.source_columns)
    order = ", ".join(src.q(k) for k in pair.source_key)
    where = ""
    params: list[Any] = []
    if last_key is not None:
        keys = ", ".join(src.q(k) for k in pair.source_key)
        casts = []
        for name, value in zip(pair.source_key, last_key, strict=True):
            typ = pair.source.column(name).type
            casts.append(f"CAST({src.ph} AS {typ})" if src.engine == "postgresql" else src.ph)
            params.append(_key_param(value, typ, src.engine))
        where = f"WHERE ({keys}) > ({', '.join(casts)})"
    rows = src.execute(f"SELECT {cols} FROM {src.q(pair.source.name)} {where} ORDER BY {order} LIMIT {int(size)}",
                       params)
    src.finish_read()
    return rows


def _key_param(value: str, typ: str, engine: str) -> Any:
    # Checkpoints keep keys as text; integer keys go back as integers so SQLite and MySQL compare numerically.
    if engine != "postgresql" and ("int" in typ) and value.lstrip("-").isdigit():
        return int(value)
    return value


_COPY_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v", b"\\": b"\\"}


def _copy_unescape(field_: bytes) -> str:
    """One field of PostgreSQL COPY text format back to its text value (\\N = NULL, used for keys)."""
    if b"\\" not in field_:
        return field_.decode()
    out = bytearray()
    i = 0
    while i < len(field_):
        ch = field_[i:i + 1]
        if ch == b"\\" and i + 1 < len(field_):
            nxt = field_[i + 1:i + 2]
            out += _COPY_ESCAPES.get(nxt, nxt)
            i += 2
        else:
            out += ch
            i += 1
    return out.decode()
