"""SQLite change capture (the embedded default): triggers write every change into a changelog table.

``switchover_changelog(id, tbl, op, old_key, row, at)`` in the source database; ``id`` is the
position (commit order: SQLite has one writer at a time). Rows up to the confirmed position are
deleted, so the changelog stays small.
"""

from __future__ import annotations

import json
import time
from typing import Any

from switchover.data.apply import Change, Transaction
from switchover.data.move_tables import Side, TableInfo, introspect

CHANGELOG = "switchover_changelog"


def _json_object(prefix: str, cols: tuple[str, ...] | list[str]) -> str:
    return "json_object(" + ", ".join(f"'{c}', {prefix}.\"{c}\"" for c in cols) + ")"


def install_triggers(side: Side, table: str) -> TableInfo:
    """Create the changelog and the table's three triggers (idempotent). Capture starts here."""
    info = introspect(side, table)
    now = "((julianday('now') - 2440587.5) * 86400.0)"
    side.begin()
    side.execute(f"CREATE TABLE IF NOT EXISTS {CHANGELOG} (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, "
                 "op TEXT NOT NULL, old_key TEXT, row TEXT, at REAL NOT NULL)")
    q = side.q(table)
    for op, body in (
        ("insert", f"VALUES ('{table}', 'insert', NULL, {_json_object('NEW', info.names)}, {now})"),
        ("update", f"VALUES ('{table}', 'update', {_json_object('OLD', info.key)}, {_json_object('NEW', info.names)}, {now})"),
        ("delete", f"VALUES ('{table}', 'delete', {_json_object('OLD', info.key)}, NULL, {now})"),
    ):
        side.execute(f"CREATE TRIGGER IF NOT EXISTS \"switchover_{table}_{op}\" AFTER {op.upper()} ON {q} "
                     f"BEGIN INSERT INTO {CHANGELOG} (tbl, op, old_key, row, at) {body}; END")
    side.commit()
    return info


def remove_triggers(side: Side, table: str) -> None:
    side.begin()
    for op in ("insert", "update", "delete"):
        side.execute(f'DROP TRIGGER IF EXISTS "switchover_{table}_{op}"')
    side.commit()


class SqliteReader:
    def __init__(self, side: Side, tables: list[str], after: str | None, skip_ids: bool = False) -> None:
        self.side, self.tables = side, tables
        self._after = int(after) if after else 0

    def poll(self, timeout: float, max_txns: int = 2000) -> list[Transaction]:
        deadline = time.monotonic() + timeout
        while True:
            marks = ", ".join("?" for _ in self.tables)
            rows = self.side.execute(f"SELECT id, tbl, op, old_key, row, at FROM {CHANGELOG} WHERE id > ? "
                                     f"AND tbl IN ({marks}) ORDER BY id LIMIT ?", (self._after, *self.tables, max_txns))
            if rows or time.monotonic() >= deadline:
                break
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
        out = []
        for rid, tbl, op, old_key, row, at in rows:
            old: dict[str, Any] | None = json.loads(old_key) if old_key else None
            new: dict[str, Any] | None = json.loads(row) if row else None
            out.append(Transaction(str(rid), float(at), (Change(op, tbl, new, old),)))
        return out

    def confirm(self, position: str) -> None:
        self._after = max(self._after, int(position))
        self.side.begin()
        self.side.execute(f"DELETE FROM {CHANGELOG} WHERE id <= ?", (self._after,))
        self.side.commit()

    def confirm_idle(self) -> None:
        return None

    def close(self) -> None:
        self.side.close()


def echo_cleanup(side: Side, before_id: int) -> None:
    """Loop prevention when SQLite is also a target: drop the changelog rows our own apply just wrote."""
    side.execute(f"DELETE FROM {CHANGELOG} WHERE id > ?", (before_id,))
