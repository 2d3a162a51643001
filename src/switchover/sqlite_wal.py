"""SQLite files shared by several processes (journal, parity store): WAL mode, autocommit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from switchover.errors import UserError


def open_shared(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """Open (creating folder, file and tables) a SQLite file that other processes read and write
    at the same time. UserError naming ``what`` and the path when it cannot be opened."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        raise UserError(f"{what} {path}: {exc}") from None
    return db
