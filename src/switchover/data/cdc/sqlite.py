"""SQLite change capture (the embedded default): triggers write every change into a changelog table.

``switchover_changelog(id, tbl, op, old_key, row, at, origin)`` in the source database; ``id`` is the
position (commit order: SQLite has one writer at a time). Rows up to the confirmed position are
deleted, so the changelog stays small.

Loop prevention (this database is also a CDC or backfill target, e.g. the candidate under reverse
CDC): a writer of ours notes the changelog's last id when its transaction starts (it holds SQLite's
only write lock from ``BEGIN IMMEDIATE``, so every row after that id is its own) and, before commit,
sets ``origin`` on those rows. Readers skip rows with an origin. Changelogs made before the column
existed get it by ``ALTER TABLE ... ADD COLUMN``.

One consumer per stream: the reader holds an advisory file lock (``<db>-switchover-<stream>.lock``)
while it runs, so that a rollback drain can tell a live consumer from a dead one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from typing import IO, Any

from switchover.data.apply import Change, Transaction
from switchover.data.move_tables import Side, TableInfo, introspect
from switchover.errors import UserError

CHANGELOG = "switchover_changelog"
DRAIN_MARK = "switchover_drain"  # ``tbl`` of a rollback drain's marker row: readers record passing it
ECHO_SWEEP_S = 5.0  # how often an idle reader deletes the changelog rows our own writers left


def _json_object(prefix: str, cols: tuple[str, ...] | list[str]) -> str:
    return "json_object(" + ", ".join(f"'{c}', {prefix}.\"{c}\"" for c in cols) + ")"


def ensure_changelog(side: Side) -> None:
    """The changelog with its ``origin`` column (added to a changelog from before it existed)."""
    side.execute(f"CREATE TABLE IF NOT EXISTS {CHANGELOG} (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, "
                 "op TEXT NOT NULL, old_key TEXT, row TEXT, at REAL NOT NULL, origin TEXT)")
    columns = {str(r[1]) for r in side.execute(f"PRAGMA table_info({CHANGELOG})")}
    if "origin" not in columns:
        side.execute(f"ALTER TABLE {CHANGELOG} ADD COLUMN origin TEXT")


def install_triggers(side: Side, table: str) -> TableInfo:
    """Create the changelog and the table's three triggers (idempotent). Capture starts here."""
    info = introspect(side, table)
    now = "((julianday('now') - 2440587.5) * 86400.0)"
    side.begin()
    ensure_changelog(side)
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


# ---------------------------------------------------------------------- loop prevention (writers)


def own_changes_start(side: Side) -> int | None:
    """Inside a write transaction (BEGIN IMMEDIATE): the changelog's last id, or None without a changelog
    (no triggers here: nothing to mark)."""
    if not side.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (CHANGELOG,)):
        return None
    rows = side.execute(f"SELECT coalesce(max(id), 0) FROM {CHANGELOG}")
    if not any(str(r[1]) == "origin" for r in side.execute(f"PRAGMA table_info({CHANGELOG})")):
        side.execute(f"ALTER TABLE {CHANGELOG} ADD COLUMN origin TEXT")
    return int(rows[0][0])


def mark_own_changes(side: Side, start: int, origin: str) -> None:
    """Before commit: the changelog rows this transaction's writes produced are ours (readers skip them)."""
    side.execute(f"UPDATE {CHANGELOG} SET origin = ? WHERE id > ?", (origin, start))


# ---------------------------------------------------------------------- one consumer per stream, drains


def lock_path(side_or_path: Side | str, stream: str) -> str:
    path = side_or_path.url.database if isinstance(side_or_path, Side) else side_or_path
    return f"{path}-switchover-{re.sub(r'[^A-Za-z0-9_.-]', '_', stream)[:80]}.lock"


def _try_lock(path: str) -> IO[bytes] | None:
    import fcntl

    fh = open(path, "ab")  # noqa: SIM115 - held open for as long as the lock
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def consumer_alive(side: Side, stream: str) -> bool:
    """A reader of ``stream`` holds its file lock (a killed one's lock goes with its process)."""
    path = lock_path(side, stream)
    if not os.path.exists(path):
        return False
    fh = _try_lock(path)
    if fh is None:
        return True
    fh.close()
    return False


def request_drain(side: Side) -> str:
    """Where the changelog ends now; then a drain marker after it, which readers turn into a position
    update past that point even when nothing after it is for their tables."""
    side.begin()
    ensure_changelog(side)
    goal = int(side.execute(f"SELECT coalesce(max(id), 0) FROM {CHANGELOG}")[0][0])
    side.execute(f"INSERT INTO {CHANGELOG} (tbl, op, at) VALUES (?, 'drain', ?)", (DRAIN_MARK, time.time()))
    side.commit()
    return str(goal)


# ---------------------------------------------------------------------- reading


class SqliteReader:
    def __init__(self, side: Side, tables: list[str], after: str | None, stream: str | None = None,
                 active_wait: float = 15.0) -> None:
        self.side, self.tables = side, tables
        self._after = int(after) if after else 0
        self._lock: IO[bytes] | None = None
        self._swept_at = 0.0
        if stream is not None:
            path = lock_path(side, stream)
            deadline = time.monotonic() + active_wait
            while (lock := _try_lock(path)) is None:
                if time.monotonic() >= deadline:
                    side.close()
                    raise UserError(f"{side.url.safe}: CDC stream {stream} is being read by another consumer "
                                    f"(lock file {path} held); is another `data cdc` or controller running?")
                time.sleep(0.2)
            self._lock = lock
        side.begin()
        ensure_changelog(side)
        side.commit()

    def poll(self, timeout: float, max_txns: int = 2000) -> list[Transaction]:
        deadline = time.monotonic() + timeout
        names = [*self.tables, DRAIN_MARK]
        marks = ", ".join("?" for _ in names)
        while True:
            rows = self.side.execute(f"SELECT id, tbl, op, old_key, row, at FROM {CHANGELOG} WHERE id > ? "
                                     f"AND tbl IN ({marks}) AND origin IS NULL ORDER BY id LIMIT ?",
                                     (self._after, *names, max_txns))
            if rows or time.monotonic() >= deadline:
                break
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
        out = []
        for rid, tbl, op, old_key, row, at in rows:
            if tbl == DRAIN_MARK:
                out.append(Transaction(str(rid), float(at), ()))
                continue
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
        """Now and then, delete the rows our own writers left for these tables (never read: they have an
        origin), so an idle changelog does not grow with every forward apply."""
        now = time.monotonic()
        if now - self._swept_at < ECHO_SWEEP_S:
            return
        self._swept_at = now
        marks = ", ".join("?" for _ in self.tables)
        if self.side.execute(f"SELECT 1 FROM {CHANGELOG} WHERE origin IS NOT NULL AND tbl IN ({marks}) LIMIT 1",
                             tuple(self.tables)):
            self.side.begin()
            self.side.execute(f"DELETE FROM {CHANGELOG} WHERE origin IS NOT NULL AND tbl IN ({marks})",
                              tuple(self.tables))
            self.side.commit()

    def close(self) -> None:
        self.side.close()
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.close()  # releases the lock
            self._lock = None
