"""MySQL / MariaDB change capture: the ROW binlog, read with mysql-replication.

Position: ``binlog-file:pos`` after each transaction's XID event. Capture "starts" at ``prepare``,
which records the server's current binlog position as the stream's starting point in the target
(binlog is always on; there is no slot to create). The binlog reader blocks, so it runs on its own
thread and hands transactions over through a queue.

Loop prevention (this database is also a CDC or backfill target, e.g. the candidate under reverse
CDC): every transaction our appliers commit here also writes a marker row, and the reader drops
any transaction that carries one. The applier's marker is the stream's row in
``switchover_cdc_position`` (written in the same transaction anyway: no extra write); a backfill
chunk bumps its row in ``switchover_cdc_origin``. Chosen over ``SET SESSION server_id`` (MariaDB
only, needs SUPER, and a replica whose own server_id equals the borrowed one would silently skip
those writes); the marker needs no privilege and works on MySQL too.

One consumer per stream: the reader holds ``GET_LOCK('switchover:cdc:<stream>')`` on the source while
it runs, so that a rollback drain can tell a live consumer from a dead one, and never runs a second.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import zlib
from typing import Any

from switchover.data.apply import Change, Transaction
from switchover.data.cdc.batch import take_batch
from switchover.data.move_tables import POSITION_TABLE, Side, TableInfo
from switchover.data.urls import DbUrl
from switchover.errors import UserError
from switchover.secrets import redact

ORIGIN_TABLE = "switchover_cdc_origin"  # a backfill's marker row per chunk (loop prevention)
DRAIN_TABLE = "switchover_cdc_drain"  # a rollback drain's marker: the reverse stream records passing it
MARKER_TABLES = frozenset({POSITION_TABLE, ORIGIN_TABLE})
HEARTBEAT_S = 0.5  # the server sends one when the binlog is idle this long


def check_settings(side: Side) -> list[str]:
    rows = side.execute("SELECT @@log_bin, @@binlog_format, @@binlog_row_image")
    side.finish_read()
    log_bin, fmt, image = rows[0]
    if not int(log_bin):
        raise UserError(f"{side.url.safe}: the binary log is off (log_bin); CDC reads it. Set log_bin = mysql-bin "
                        "and binlog_format = ROW in the server configuration and restart it "
                        "(scripts/setup-services.sh does it for the test servers).")
    if str(fmt).upper() != "ROW":
        raise UserError(f"{side.url.safe}: binlog_format is {fmt}; CDC needs ROW "
                        "(SET GLOBAL binlog_format = 'ROW' and in the configuration file).")
    _check_replication_grants(side)
    return [] if str(image).upper() == "FULL" else [f"binlog_row_image is {image}; FULL is needed for full rows"]


def _check_replication_grants(side: Side) -> None:
    """Reading the binlog needs REPLICATION SLAVE (and its status: REPLICATION CLIENT / BINLOG
    MONITOR); say which grant is missing instead of failing later on the reader's thread."""
    try:
        grants = " ".join(str(r[0]) for r in side.execute("SHOW GRANTS FOR CURRENT_USER()")).upper()
        side.finish_read()
    except Exception:  # cannot tell: the reader reports its own error
        return
    if "ALL PRIVILEGES ON *.*" in grants or "SUPER" in grants:
        return
    missing = [g for g in ("REPLICATION SLAVE",) if g not in grants]
    if "REPLICATION CLIENT" not in grants and "BINLOG MONITOR" not in grants:
        missing.append("REPLICATION CLIENT")
    if missing:
        user = side.url.user or "root"
        raise UserError(f"{side.url.safe}: user {user!r} cannot read the binary log (missing "
                        f"{', '.join(missing)}). Run: GRANT {', '.join(missing)} ON *.* TO '{user}'@'%';")


def ensure_origin_table(side: Side) -> None:
    side.execute(f"CREATE TABLE IF NOT EXISTS {ORIGIN_TABLE} (origin VARCHAR(100) PRIMARY KEY, "
                 "txns BIGINT NOT NULL) ENGINE=InnoDB")


def mark_origin(side: Side, origin: str) -> None:
    """Inside the caller's transaction: a marker row change, so binlog readers skip this transaction."""
    side.execute(f"INSERT INTO {ORIGIN_TABLE} (origin, txns) VALUES (%s, 1) "
                 "ON DUPLICATE KEY UPDATE txns = txns + 1", (origin,))


def position_key(position: str) -> tuple[int, int]:
    """``mysql-bin.000012:345`` -> (12, 345), for ordering positions."""
    log_file, _, pos = position.rpartition(":")
    digits = log_file.rpartition(".")[2]
    return (int(digits) if digits.isdigit() else 0, int(pos))


def consumer_lock(stream: str) -> str:
    return f"switchover:cdc:{stream}"[:64]


def consumer_alive(side: Side, stream: str) -> bool:
    """A reader of ``stream`` holds its lock on this server (a killed one's lock goes with its connection)."""
    rows = side.execute("SELECT IS_USED_LOCK(%s)", (consumer_lock(stream),))
    side.finish_read()
    return bool(rows and rows[0][0] is not None)


def request_drain(side: Side, stream: str) -> str:
    """Where the binlog ends now; then a drain marker after it, which the stream's reader turns into a
    position update past that point even when nothing after it is for the stream's tables."""
    goal = current_position(side)
    side.execute(f"CREATE TABLE IF NOT EXISTS {DRAIN_TABLE} (stream VARCHAR(191) PRIMARY KEY, "
                 "requested_at DOUBLE NOT NULL) ENGINE=InnoDB")
    side.execute(f"INSERT INTO {DRAIN_TABLE} (stream, requested_at) VALUES (%s, %s) "
                 "ON DUPLICATE KEY UPDATE requested_at = VALUES(requested_at)", (stream, time.time()))
    side.finish_read()
    return goal


_PARSE_ERROR = 1064  # ER_PARSE_ERROR: a statement this server does not know


def current_position(side: Side) -> str:
    """Where the binlog ends now (``file:position``). MySQL 8.2+ says it with SHOW BINARY LOG STATUS
    (8.4 removed SHOW MASTER STATUS); MariaDB and older MySQL only know SHOW MASTER STATUS."""
    import pymysql

    try:
        rows = side.execute("SHOW BINARY LOG STATUS")
    except pymysql.err.ProgrammingError as exc:
        if not exc.args or exc.args[0] != _PARSE_ERROR:
            raise
        rows = side.execute("SHOW MASTER STATUS")
    side.finish_read()
    if not rows:
        raise UserError(f"{side.url.safe}: the binary log status is empty: binary logging is off")
    return f"{rows[0][0]}:{rows[0][1]}"


class MysqlReader:
    def __init__(self, url: DbUrl, tables: dict[str, TableInfo], after: str | None, stream: str,
                 active_wait: float = 15.0) -> None:
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import HeartbeatLogEvent, XidEvent
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        self._lock_side = _take_consumer_lock(url, stream, active_wait)
        if after is None:
            after = current_position(self._lock_side)
        log_file, _, pos = after.rpartition(":")
        self._queue: queue.Queue[Transaction | BaseException] = queue.Queue(maxsize=10_000)
        self._stop = threading.Event()
        settings = {"host": url.host or "127.0.0.1", "port": url.port or 3306, "user": url.user or "root",
                    "password": url.password or ""}
        self._reader = BinLogStreamReader(
            connection_settings=settings, server_id=100_000 + zlib.crc32(stream.encode()) % 100_000,
            blocking=True, resume_stream=True, log_file=log_file, log_pos=int(pos),
            # Heartbeats while idle hand control back to the pump, so that close() can stop it: closing
            # the connection under a blocked read would wait for the next binlog event, forever when idle.
            slave_heartbeat=HEARTBEAT_S,
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent, HeartbeatLogEvent],
            only_schemas=[url.database] if url.database else None,
            only_tables=[*tables, *MARKER_TABLES, DRAIN_TABLE])
        self._tables = tables
        self._stream = stream
        self._kinds = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent, HeartbeatLogEvent)
        self._thread = threading.Thread(target=self._pump, name=f"binlog-{stream}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        write, update, delete, xid, heartbeat = self._kinds
        changes: list[Change] = []
        echo = drain = False
        try:
            for event in self._reader:
                if self._stop.is_set():
                    break
                if isinstance(event, heartbeat):
                    continue
                if isinstance(event, xid):
                    # An applier's own transaction is dropped whole (no echo); a drain marker alone still
                    # moves the stored position past it (an empty transaction).
                    if not echo and (changes or drain):
                        pos = f"{self._reader.log_file}:{event.packet.log_pos}"
                        self._queue.put(Transaction(pos, float(event.timestamp), tuple(changes)))
                    changes = []
                    echo = drain = False
                    continue
                table = event.table
                if table in MARKER_TABLES:
                    echo = True
                    continue
                if table == DRAIN_TABLE:
                    drain = drain or any(_drain_row(row, self._stream) for row in event.rows)
                    continue
                info = self._tables[table]
                key = info.key
                for row in event.rows:
                    if isinstance(event, write):
                        changes.append(Change("insert", table, _named(info, row["values"]), None))
                    elif isinstance(event, update):
                        before = _named(info, row["before_values"])
                        changes.append(Change("update", table, _named(info, row["after_values"]),
                                              {k: before[k] for k in key}))
                    elif isinstance(event, delete):
                        values = _named(info, row["values"])
                        changes.append(Change("delete", table, None, {k: values[k] for k in key}))
        except BaseException as exc:  # surfaced by poll()
            if not self._stop.is_set():
                self._queue.put(exc)

    def poll(self, timeout: float, max_txns: int = 2000) -> list[Transaction]:
        return take_batch(self._queue, timeout, max_txns)

    def confirm(self, position: str) -> None:
        return None  # the binlog needs no acknowledgement; the position lives in the target

    def confirm_idle(self) -> None:
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_S * 4)  # the pump sees the flag at the next event or heartbeat
        with contextlib.suppress(Exception):  # already closed by the server
            self._reader.close()
        self._lock_side.close()  # releases the consumer lock


def _take_consumer_lock(url: DbUrl, stream: str, active_wait: float) -> Side:
    side = Side(url, autocommit=True)
    deadline = time.monotonic() + active_wait
    while True:
        try:
            got = side.execute("SELECT GET_LOCK(%s, %s)", (consumer_lock(stream), max(0, min(2, int(active_wait)))))
        except Exception as exc:
            side.close()
            raise UserError(f"{url.safe}: cannot take the lock of CDC stream {stream}: "
                            f"{redact(str(exc)).strip()}") from None
        if got and got[0][0] == 1:
            return side
        if time.monotonic() >= deadline:
            side.close()
            raise UserError(f"{url.safe}: CDC stream {stream} is being read by another consumer "
                            f"(lock {consumer_lock(stream)!r} held); is another `data cdc` or controller running?")


def _drain_row(row: dict[str, Any], stream: str) -> bool:
    values = row.get("after_values") or row.get("values") or {}
    first = next(iter(values.values()), None)
    if isinstance(first, bytes):
        first = first.decode("utf-8", errors="replace")
    return first == stream



def _named(info: TableInfo, values: dict[str, Any]) -> dict[str, Any]:
    """Values by column name. Without ``binlog_row_metadata = FULL`` the binlog has no column names
    (mysql-replication says UNKNOWN_COL<i>): the table's column order, from introspection, gives them."""
    out: dict[str, Any] = {}
    for i, (name, value) in enumerate(values.items()):
        if name.startswith("UNKNOWN_COL") and i < len(info.columns):
            name = info.columns[i].name
        if isinstance(value, bytes) and not info.column(name).type.endswith(("blob", "binary")) \
                and "binary" not in info.column(name).type:
            value = value.decode("utf-8", errors="replace")
        out[name] = value
    return out
