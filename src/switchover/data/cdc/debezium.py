"""Debezium-format change events as JSON lines, out and in, for users who run Debezium + Kafka.

Out: ``data cdc ... --debezium-out PATH`` appends one line per applied change, shaped like
Debezium's JSON converter with ``schemas.enable=false``::

    {"before": {...} | null, "after": {...} | null, "op": "c|u|d|t", "ts_ms": 1764141600123,
     "source": {"connector": "postgresql", "db": "orders", "table": "orders", "pos": "0/16B3748",
                "ts_ms": 1764141600120}}

``before`` holds the key for updates and deletes (what a table with the default replica identity
gives), ``after`` the new row. In: ``data cdc SRC_URL DST_URL --table T --debezium-in PATH`` applies
such lines (``-`` = stdin, e.g. piped from ``kafka-console-consumer``) instead of reading the
source's log; SRC_URL is still read for the table's columns and key. Lines with a wrapping
``{"schema": ..., "payload": {...}}`` are accepted too.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO, Any

from switchover.data.apply import Change, Transaction
from switchover.data.cdc.batch import take_batch
from switchover.errors import UserError

_OPS_OUT = {"insert": "c", "update": "u", "delete": "d", "truncate": "t"}
_OPS_IN = {"c": "insert", "r": "insert", "u": "update", "d": "delete", "t": "truncate"}


def to_events(txn: Transaction, connector: str, db: str | None, now_ms: int) -> list[dict[str, Any]]:
    """Pure: a transaction's changes as Debezium envelopes."""
    out = []
    for c in txn.changes:
        out.append({
            "before": c.old_key, "after": c.row, "op": _OPS_OUT[c.op], "ts_ms": now_ms,
            "source": {"connector": connector, "db": db, "table": c.table, "pos": txn.position,
                       "ts_ms": None if txn.commit_at is None else int(txn.commit_at * 1000)},
        })
    return out


def from_event(line: str, keys: dict[str, tuple[str, ...]], number: int) -> Transaction | None:
    """Pure: one JSON line -> a one-change transaction (None for a tombstone / blank line)."""
    text = line.strip()
    if not text:
        return None
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--debezium-in line {number}: not JSON ({exc.msg})") from None
    if event is None:
        return None  # Kafka tombstone
    if isinstance(event, dict) and "payload" in event and "op" not in event:
        event = event["payload"]
    if not isinstance(event, dict) or event.get("op") not in _OPS_IN:
        raise UserError(f"--debezium-in line {number}: not a Debezium change event (op c/r/u/d/t)")
    source = event.get("source") or {}
    table = str(source.get("table") or "")
    if table not in keys:
        return None  # a table this stream does not carry
    op = _OPS_IN[event["op"]]
    before, after = event.get("before"), event.get("after")
    key = keys[table]
    old_key = {k: before[k] for k in key if k in before} if isinstance(before, dict) else None
    if op == "update" and not old_key and isinstance(after, dict):
        old_key = {k: after[k] for k in key}
    commit_ms = source.get("ts_ms") or event.get("ts_ms")
    change = Change(op, table, after if op in ("insert", "update") else None, old_key)
    return Transaction(str(number), None if commit_ms is None else float(commit_ms) / 1000.0, (change,))


class DebeziumSink:
    def __init__(self, path: str, connector: str, db: str | None) -> None:
        self._fh: IO[str] = sys.stdout if path == "-" else open(path, "a", encoding="utf-8")  # noqa: SIM115
        self.connector, self.db = connector, db

    def write(self, txns: Iterable[Transaction]) -> None:
        now_ms = int(time.time() * 1000)
        for txn in txns:
            for event in to_events(txn, self.connector, self.db, now_ms):
                self._fh.write(json.dumps(event, default=str) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not sys.stdout:
            self._fh.close()


class DebeziumReader:
    """Lines from a file or stdin (read on a thread, so that polling never blocks the apply loop)."""

    def __init__(self, path: str, keys: dict[str, tuple[str, ...]], after: str | None) -> None:
        self.keys = keys
        self._skip = int(after) if after and after.isdigit() and path != "-" else 0
        self._queue: queue.Queue[tuple[int, str] | None] = queue.Queue(maxsize=10_000)
        try:
            self._fh: IO[str] = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise UserError(f"--debezium-in {path}: {exc.strerror}") from None
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for number, line in enumerate(self._fh, start=1):
            if number > self._skip:
                self._queue.put((number, line))
        self._queue.put(None)

    def poll(self, timeout: float, max_txns: int = 2000) -> list[Transaction]:
        txns = (from_event(line, self.keys, number) for number, line in take_batch(self._queue, timeout, max_txns))
        return [txn for txn in txns if txn is not None]

    def confirm(self, position: str) -> None:
        return None

    def confirm_idle(self) -> None:
        return None

    def close(self) -> None:
        if self._fh is not sys.stdin:
            self._fh.close()
