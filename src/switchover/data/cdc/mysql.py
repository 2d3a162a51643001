"""MySQL / MariaDB change capture: the ROW binlog, read with mysql-replication.

Position: ``binlog-file:pos`` after each transaction's XID event. Capture "starts" at ``prepare``,
which records the server's current binlog position as the stream's starting point in the target
(binlog is always on; there is no slot to create). The binlog reader blocks, so it runs on its own
thread and hands transactions over through a queue.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import zlib
from typing import Any

from switchover.data.apply import Change, Transaction
from switchover.data.move_tables import Side, TableInfo
from switchover.data.urls import DbUrl
from switchover.errors import UserError


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
    return [] if str(image).upper() == "FULL" else [f"binlog_row_image is {image}; FULL is needed for full rows"]


def current_position(side: Side) -> str:
    rows = side.execute("SHOW MASTER STATUS")
    side.finish_read()
    if not rows:
        raise UserError(f"{side.url.safe}: SHOW MASTER STATUS is empty: binary logging is off")
    return f"{rows[0][0]}:{rows[0][1]}"


class MysqlReader:
    def __init__(self, url: DbUrl, tables: dict[str, TableInfo], after: str | None, stream: str) -> None:
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import XidEvent
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        if after is None:
            side = Side(url, autocommit=True)
            try:
                after = current_position(side)
            finally:
                side.close()
        log_file, _, pos = after.rpartition(":")
        self._queue: queue.Queue[Transaction | BaseException] = queue.Queue(maxsize=10_000)
        self._stop = threading.Event()
        settings = {"host": url.host or "127.0.0.1", "port": url.port or 3306, "user": url.user or "root",
                    "password": url.password or ""}
        self._reader = BinLogStreamReader(
            connection_settings=settings, server_id=100_000 + zlib.crc32(stream.encode()) % 100_000,
            blocking=True, resume_stream=True, log_file=log_file, log_pos=int(pos),
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent],
            only_schemas=[url.database] if url.database else None, only_tables=list(tables))
        self._tables = tables
        self._kinds = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent)
        self._thread = threading.Thread(target=self._pump, name=f"binlog-{stream}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        write, update, delete, xid = self._kinds
        changes: list[Change] = []
        try:
            for event in self._reader:
                if self._stop.is_set():
                    break
                if isinstance(event, xid):
                    if changes:
                        pos = f"{self._reader.log_file}:{event.packet.log_pos}"
                        self._queue.put(Transaction(pos, float(event.timestamp), tuple(changes)))
                    changes = []
                    continue
                table = event.table
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
        out: list[Transaction] = []
        deadline = time.monotonic() + timeout
        while len(out) < max_txns:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()) if not out else 0)
            except queue.Empty:
                break
            if isinstance(item, BaseException):
                raise item
            out.append(item)
        return out

    def confirm(self, position: str) -> None:
        return None  # the binlog needs no acknowledgement; the position lives in the target

    def confirm_idle(self) -> None:
        return None

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):  # already closed by the server
            self._reader.close()



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
