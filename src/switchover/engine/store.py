"""The state store: journal (append-only events), run lock, flags and checkpoints (DESIGN.md).

SQLite by default (``sqlite:///path``, relative paths resolved against the plan's folder), in WAL
mode so that operator commands, the controller and application libraries (dual-write flag) can
share it. PostgreSQL optional (``postgresql://...``, tables in the schema named by ``?schema=``,
default ``switchover``), for teams whose operators and controller do not share a disk.
Events are rows ``(run_id, seq, at, kind, actor, payload)``; a run's state is a fold. The SQL is
the same on both (``ON CONFLICT`` upserts); the two backends in ``store_db`` differ only in how
they connect and serialise writers.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switchover.engine.store_db import StoreDb, open_store_db
from switchover.secrets import redact_obj


def whoami() -> str:
    """The actor recorded for a person's command: user@host."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Event:
    run_id: str
    seq: int
    at: float
    kind: str
    actor: str
    payload: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "seq": self.seq, "at": self.at, "kind": self.kind,
                "actor": self.actor, "payload": self.payload}


@dataclass(frozen=True)
class LockHolder:
    holder: str
    pid: int
    host: str
    acquired_at: float
    heartbeat: float


class StateStore:
    """One plan's journal, lock, flags and checkpoints. Safe to open from several processes."""

    def __init__(self, url: str, base_dir: Path | None = None) -> None:
        self._db: StoreDb = open_store_db(url, base_dir)
        self.path = self._db.where  # a file path, or the redacted URL and schema of a PostgreSQL store

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> Any:
        return self._db.tx()

    # ---------------------------------------------------------------- journal

    def append(self, run_id: str, kind: str, actor: str, payload: dict[str, Any] | None = None,
               at: float | None = None) -> Event:
        """Append one event (secrets redacted) and return it with its sequence number."""
        body = redact_obj(payload or {})
        when = time.time() if at is None else at
        with self._tx() as db:
            row = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)).fetchone()
            seq = int(row[0]) + 1
            db.execute("INSERT INTO events (run_id, seq, at, kind, actor, payload) VALUES (?, ?, ?, ?, ?, ?)",
                       (run_id, seq, when, kind, actor, json.dumps(body, sort_keys=True, default=str)))
        return Event(run_id, seq, when, kind, actor, body)

    def events(self, run_id: str | None = None, after_seq: int = 0) -> list[Event]:
        if run_id is None:
            run_id = self.latest_run()
            if run_id is None:
                return []
        rows = self._db.execute(
            "SELECT run_id, seq, at, kind, actor, payload FROM events WHERE run_id = ? AND seq > ? ORDER BY seq",
            (run_id, after_seq)).fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def latest_run(self) -> str | None:
        row = self._db.execute(
            "SELECT run_id FROM events WHERE kind = 'run_started' ORDER BY id DESC LIMIT 1").fetchone()
        return str(row[0]) if row else None

    # ---------------------------------------------------------------- run lock

    def acquire_lock(self, name: str, holder: str, stale_after: float = 30.0) -> LockHolder | None:
        """Take the lock; returns None on success, else who holds it. A holder whose heartbeat is
        older than ``stale_after`` seconds, or whose pid is gone on this host, is replaced."""
        now = time.time()
        host = socket.gethostname()
        with self._tx() as db:
            row = db.execute("SELECT holder, pid, host, acquired_at, heartbeat FROM locks WHERE name = ?",
                             (name,)).fetchone()
            if row is not None:
                current = LockHolder(*row)
                alive = current.heartbeat > now - stale_after and (current.host != host or pid_alive(current.pid))
                if alive and not (current.host == host and current.pid == os.getpid()):
                    return current
            db.execute("INSERT INTO locks (name, holder, pid, host, acquired_at, heartbeat) VALUES (?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, "
                       "host = excluded.host, acquired_at = excluded.acquired_at, heartbeat = excluded.heartbeat",
                       (name, holder, os.getpid(), host, now, now))
        return None

    def heartbeat(self, name: str) -> None:
        self._db.execute("UPDATE locks SET heartbeat = ? WHERE name = ? AND pid = ?", (time.time(), name, os.getpid()))

    def lock_holder(self, name: str) -> LockHolder | None:
        row = self._db.execute("SELECT holder, pid, host, acquired_at, heartbeat FROM locks WHERE name = ?",
                               (name,)).fetchone()
        return LockHolder(*row) if row else None

    def release_lock(self, name: str) -> None:
        self._db.execute("DELETE FROM locks WHERE name = ? AND pid = ?", (name, os.getpid()))

    # ---------------------------------------------------------------- flags and checkpoints

    def set_flag(self, name: str, value: Any, actor: str) -> None:
        self._db.execute("INSERT INTO flags (name, value, at, actor) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
                         "SET value = excluded.value, at = excluded.at, actor = excluded.actor",
                         (name, json.dumps(value), time.time(), actor))

    def get_flag(self, name: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM flags WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_checkpoint(self, key: str, value: dict[str, Any]) -> None:
        self._db.execute("INSERT INTO checkpoints (key, value, at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
                         "SET value = excluded.value, at = excluded.at", (key, json.dumps(value, default=str), time.time()))

    def get_checkpoint(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM checkpoints WHERE key = ?", (key,)).fetchone()
        return dict(json.loads(row[0])) if row else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
