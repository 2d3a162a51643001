"""A CDC stream: capture on the source, apply to the target, report lag.

``prepare()`` checks the server settings and starts capture (PostgreSQL: publication + slot;
SQLite: triggers). Call it before the backfill reads anything: that is what closes the
backfill/CDC race. ``run(stop)`` then polls, applies each batch in one target transaction with
the position, confirms the position to the source, and repeats until ``stop`` is set.

Loop prevention, so that a forward and a reverse stream can run on the same tables at once: each
applier marks its own writes in the target and each reader skips what is marked. PostgreSQL: the
session's replication origin (``sw_apply_*``; pgoutput names it, the decoder drops the transaction).
MySQL/MariaDB: the stream's position row, written in the same transaction, is the marker (the binlog
reader drops transactions touching it). SQLite: the changelog rows of our own transaction get an
``origin`` (the reader skips them).

Draining (rollback): ``request_drain`` notes where the source's change log ends and writes a marker
after it; ``drained(goal)`` says whether the position stored in the target has reached it (the marker
moves it there even when nothing after the goal is for this stream). ``consumer_alive`` says whether
some process is reading the stream now. PostgreSQL drains through its slot instead (``movement.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from switchover.data.apply import Applier, ApplyResult, Transaction, read_position
from switchover.data.cdc.recent import RecentKeys
from switchover.data.move_tables import ColumnMap, Side, TablePair, pair_tables
from switchover.data.urls import DbUrl
from switchover.errors import UserError

APPLY_ORIGIN_PREFIX = "sw_apply_"  # replication origin of our own applies: readers skip it (no echo)


class Reader(Protocol):
    def poll(self, timeout: float, max_txns: int = ...) -> list[Transaction]: ...

    def confirm(self, position: str) -> None: ...

    def confirm_idle(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TableRoute:
    source: str
    target: str | None = None
    mapping: ColumnMap = field(default_factory=ColumnMap)


@dataclass(frozen=True)
class CdcStatus:
    stream: str
    state: str  # starting | streaming | stopped | failed
    position: str | None
    lag_ms: float | None
    transactions: int
    changes: int
    last_apply_at: float | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_stream(src: DbUrl, tables: list[str], reverse: bool = False) -> str:
    base = f"{src.database or 'db'}_{'_'.join(sorted(tables))}".replace("/", "_").replace(".", "_")
    return ("rev_" if reverse else "") + base


class CdcStream:
    def __init__(self, src: DbUrl, dst: DbUrl, routes: list[TableRoute], stream: str | None = None, *,
                 mark_touched: bool = True, debezium_in: str | None = None, debezium_out: str | None = None) -> None:
        if not routes:
            raise UserError("cdc: name at least one --table")
        self.src_url, self.dst_url, self.routes = src, dst, routes
        self.stream = stream or default_stream(src, [r.source for r in routes])
        self.mark_touched = mark_touched
        self.debezium_in, self.debezium_out = debezium_in, debezium_out
        self.status = CdcStatus(self.stream, "starting", None, None, 0, 0, None)
        self.warnings: list[str] = []
        self._pairs: dict[str, TablePair] = {}
        self._lock = threading.Lock()
        self.recent = RecentKeys()  # keys applied lately and when the stream last caught up (rollback_safe)

    @property
    def pairs(self) -> dict[str, TablePair]:
        """Source table -> its pairing with the target (filled by ``prepare``)."""
        return dict(self._pairs)

    @property
    def slot(self) -> str:
        from switchover.data.cdc.postgres import slot_name_for

        return slot_name_for(self.stream)

    # ------------------------------------------------------------------ capture

    def prepare(self) -> list[str]:
        """Check settings, start capture on the source, create the target's coordination tables."""
        src = Side(self.src_url, autocommit=True)
        dst = Side(self.dst_url)
        try:
            for r in self.routes:
                self._pairs[r.source] = pair_tables(src, dst, r.source, r.target, r.mapping)
            if self.debezium_in is not None:
                pass  # changes come from Debezium events: nothing to set up on the source
            elif src.engine == "postgresql":
                from switchover.data.cdc import postgres

                self.warnings = postgres.check_settings(src)
                postgres.ensure_slot(src, self.slot, [r.source for r in self.routes])
            elif src.engine == "sqlite":
                from switchover.data.cdc import sqlite

                for r in self.routes:
                    sqlite.install_triggers(src, r.source)
            applier = Applier(dst, self._pairs, self.stream, mark_touched=self.mark_touched)  # coordination tables
            if src.engine == "mysql" and self.debezium_in is None:
                from switchover.data.cdc import mysql

                self.warnings = mysql.check_settings(src)
                applier.record_start(mysql.current_position(src), time.time())
        finally:
            src.close()
            dst.close()
        return self.warnings

    def _reader(self, after: str | None) -> Reader:
        if self.debezium_in is not None:
            from switchover.data.cdc.debezium import DebeziumReader

            return DebeziumReader(self.debezium_in, {t: p.source_key for t, p in self._pairs.items()}, after)
        if self.src_url.engine == "postgresql":
            from switchover.data.cdc.postgres import PgReader

            return PgReader(self.src_url, self.slot, after, skip_origin_prefix=APPLY_ORIGIN_PREFIX)
        if self.src_url.engine == "sqlite":
            from switchover.data.cdc.sqlite import SqliteReader

            return SqliteReader(Side(self.src_url), [r.source for r in self.routes], after, self.stream)
        from switchover.data.cdc.mysql import MysqlReader

        return MysqlReader(self.src_url, {t: p.source for t, p in self._pairs.items()}, after, self.stream)

    # ------------------------------------------------------------------ apply loop

    def run(self, stop: threading.Event, on_status: Callable[[CdcStatus], None] | None = None,
            poll: float = 0.2, on_apply: Callable[[ApplyResult], None] | None = None) -> CdcStatus:
        if not self._pairs:
            self.prepare()
        dst = Side(self.dst_url)
        reader: Reader | None = None
        sink: Any = None
        origin = APPLY_ORIGIN_PREFIX + self.stream[:40]
        try:
            if dst.engine == "postgresql":
                from switchover.data.cdc.postgres import ensure_origin

                ensure_origin(dst, origin)
            applier = Applier(dst, self._pairs, self.stream, mark_touched=self.mark_touched, recent=self.recent,
                              origin=origin)
            after = applier.position()
            reader = self._reader(after)
            if self.debezium_out is not None:
                from switchover.data.cdc.debezium import DebeziumSink

                sink = DebeziumSink(self.debezium_out, self.src_url.engine, self.src_url.database)
            self._set(state="streaming", position=after)
            last_idle_note = 0.0
            while not stop.is_set():
                polled_at = time.time()
                txns = reader.poll(poll)
                now = time.time()
                if not txns:
                    self.recent.caught_up(polled_at)
                    reader.confirm_idle()
                    if self.status.lag_ms and now - last_idle_note > 1.0:
                        self._note_idle(dst, now)
                        last_idle_note = now
                    self._set(lag_ms=0.0 if self.status.position else None)
                    if on_status:
                        on_status(self.status)
                    continue
                result = applier.apply(txns, time.time())
                reader.confirm(txns[-1].position)
                if on_apply is not None:
                    on_apply(result)
                if sink is not None:
                    sink.write(txns)
                self._set(position=result.position, lag_ms=result.lag_ms,
                          transactions=self.status.transactions + result.transactions,
                          changes=self.status.changes + result.changes, last_apply_at=now)
                if on_status:
                    on_status(self.status)
        except BaseException as exc:
            self._set(state="failed", error=str(exc))
            raise
        finally:
            if sink is not None:
                sink.close()
            if reader is not None:
                reader.close()
            if dst.engine == "postgresql":
                from switchover.data.cdc.postgres import release_origin

                release_origin(dst, origin)
            dst.close()
        self._set(state="stopped")
        return self.status

    def _note_idle(self, dst: Side, now: float) -> None:
        # Caught up: say so in the target, so throttles and gates reading the stored lag see 0.
        from switchover.data.move_tables import POSITION_TABLE

        dst.begin()
        dst.execute(f"UPDATE {POSITION_TABLE} SET lag_ms = 0, applied_at = {dst.ph} WHERE stream = {dst.ph}",
                    (now, self.stream))
        dst.commit()

    def _set(self, **changes: Any) -> None:
        with self._lock:
            self.status = replace(self.status, **changes)

    # ------------------------------------------------------------------ draining (rollback)

    def request_drain(self) -> str:
        """Where the source's change log ends now (MySQL binlog file:pos, SQLite changelog id), with a
        drain marker written after it. PostgreSQL streams drain through their slot instead."""
        src = Side(self.src_url, autocommit=True)
        try:
            if src.engine == "mysql":
                from switchover.data.cdc import mysql

                return mysql.request_drain(src, self.stream)
            if src.engine == "sqlite":
                from switchover.data.cdc import sqlite

                return sqlite.request_drain(src)
            raise UserError(f"cdc: request_drain is for MySQL and SQLite sources, not {src.engine}")
        finally:
            src.close()

    def drained(self, goal: str) -> bool:
        """The position stored in the target has reached ``goal`` (from ``request_drain``)."""
        stored = self.stored_position()
        if stored is None or stored.get("position") is None:
            return False
        position = str(stored["position"])
        if self.src_url.engine == "mysql":
            from switchover.data.cdc.mysql import position_key

            return position_key(position) >= position_key(goal)
        return int(position) >= int(goal)

    def consumer_alive(self) -> bool:
        """Some process (a controller, a `data cdc`) is reading this stream now."""
        src = Side(self.src_url, autocommit=True)
        try:
            if src.engine == "mysql":
                from switchover.data.cdc import mysql

                return mysql.consumer_alive(src, self.stream)
            if src.engine == "sqlite":
                from switchover.data.cdc import sqlite

                return sqlite.consumer_alive(src, self.stream)
            from switchover.data.cdc import postgres

            info = postgres.slot_info(src, self.slot)
            return bool(info and info.active)
        finally:
            src.close()

    # ------------------------------------------------------------------ reading state

    def stored_position(self) -> dict[str, Any] | None:
        dst = Side(self.dst_url)
        try:
            return read_position(dst, self.stream)
        finally:
            dst.close()


class CdcBackground:
    """A CDC stream on a thread: what the ``cdc`` plan step leaves running (``Background``)."""

    def __init__(self, stream: CdcStream, name: str = "cdc",
                 on_status: Callable[[CdcStatus], None] | None = None) -> None:
        self.name, self.stream = name, stream
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(on_status,), name=f"cdc-{stream.stream}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self, on_status: Callable[[CdcStatus], None] | None) -> None:
        try:
            self.stream.run(self._stop, on_status)
        except BaseException as exc:  # reported through status(); the controller's gate sees it
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        data = self.stream.status.to_json()
        data["alive"] = self.alive()
        return data
