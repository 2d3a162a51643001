"""The mismatch store (SQLite): per-endpoint totals, per-field counts, signatures, last N samples.

Written by the proxy's sink and by ``parity serve``/``replay``; read by the shadow gate and
``parity report``. WAL mode, so that writers in several processes and readers share it. Where it
lives: ``parity.store`` or ``.switchover/<name>-parity.db``, relative to the plan's folder.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from switchover.errors import UserError
from switchover.parity.budget import OVERFLOW, EndpointCount, FieldCount, Signature, Tally
from switchover.parity.compare import Comparison
from switchover.parity.quick import Counts
from switchover.sqlite_wal import open_shared

if TYPE_CHECKING:
    from switchover.plan import Plan

MAX_SIGNATURES = 200  # distinct sets of differing fields kept per endpoint; beyond: one overflow bucket

_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
  endpoint TEXT PRIMARY KEY, compared INTEGER NOT NULL DEFAULT 0, noise_compared INTEGER NOT NULL DEFAULT 0,
  skipped INTEGER NOT NULL DEFAULT 0, first_at REAL, last_at REAL);
CREATE TABLE IF NOT EXISTS fields (
  endpoint TEXT NOT NULL, field TEXT NOT NULL, kind TEXT NOT NULL,
  diffs INTEGER NOT NULL DEFAULT 0, noise_diffs INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (endpoint, field, kind));
CREATE TABLE IF NOT EXISTS signatures (
  endpoint TEXT NOT NULL, keys TEXT NOT NULL, count INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (endpoint, keys));
CREATE TABLE IF NOT EXISTS samples (
  id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint TEXT NOT NULL, at REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS samples_endpoint ON samples (endpoint, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS marks (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, tally TEXT NOT NULL);
"""


def store_path(plan: Plan) -> Path:
    raw = plan.parity.store or f".switchover/{plan.name}-parity.db"
    if raw.startswith("sqlite:///"):
        raw = raw[len("sqlite:///"):]
    path = Path(raw)
    return path if path.is_absolute() else plan.base_dir() / path


class MismatchStore:
    """Safe to share between threads of one process (one connection, a lock) and across processes."""

    def __init__(self, path: Path | str, samples: int = 20) -> None:
        self.path = Path(path)
        self.keep = samples
        self._lock = threading.Lock()
        self._db = open_shared(self.path, _SCHEMA, "parity store")

    @classmethod
    def for_plan(cls, plan: Plan) -> MismatchStore:
        return cls(store_path(plan), plan.parity.samples)

    @classmethod
    def open_existing(cls, path: Path) -> MismatchStore:
        if not path.exists():
            raise UserError(f"parity store {path}: no such file (nothing compared yet? run `parity serve` or `replay`)")
        return cls(path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------ writing

    def record(self, batch: list[Comparison], counters: dict[str, int] | None = None) -> None:
        """Add a batch of comparisons (one transaction) and bump named counters (e.g. dropped)."""
        with self._tx() as db:
            touched: set[str] = set()
            for c in batch:
                db.execute("INSERT INTO endpoints (endpoint, first_at, last_at) VALUES (?, ?, ?) "
                           "ON CONFLICT (endpoint) DO UPDATE SET last_at = MAX(last_at, excluded.last_at)",
                           (c.endpoint, c.at, c.at))
                if not c.compared:
                    db.execute("UPDATE endpoints SET skipped = skipped + 1 WHERE endpoint = ?", (c.endpoint,))
                    continue
                db.execute("UPDATE endpoints SET compared = compared + 1, noise_compared = noise_compared + ? "
                           "WHERE endpoint = ?", (0 if c.noise is None else 1, c.endpoint))
                keys = sorted({d.key for d in c.differences})
                for key in keys:
                    field, _, kind = key.rpartition("|")
                    db.execute("INSERT INTO fields (endpoint, field, kind, diffs) VALUES (?, ?, ?, 1) "
                               "ON CONFLICT DO UPDATE SET diffs = diffs + 1", (c.endpoint, field, kind))
                for key in sorted({d.key for d in c.noise or ()}):
                    field, _, kind = key.rpartition("|")
                    db.execute("INSERT INTO fields (endpoint, field, kind, noise_diffs) VALUES (?, ?, ?, 1) "
                               "ON CONFLICT DO UPDATE SET noise_diffs = noise_diffs + 1", (c.endpoint, field, kind))
                if keys:
                    self._signature(db, c.endpoint, json.dumps(keys))
                if c.sample is not None and self.keep:
                    db.execute("INSERT INTO samples (endpoint, at, body) VALUES (?, ?, ?)",
                               (c.endpoint, c.at, json.dumps(_sample_json(c), ensure_ascii=False)))
                    touched.add(c.endpoint)
            for ep in touched:
                db.execute("DELETE FROM samples WHERE endpoint = ? AND id NOT IN "
                           "(SELECT id FROM samples WHERE endpoint = ? ORDER BY id DESC LIMIT ?)",
                           (ep, ep, self.keep))
            for name, value in (counters or {}).items():
                if value:
                    db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                               "ON CONFLICT DO UPDATE SET value = value + excluded.value", (name, value))

    def record_counts(self, counts: Counts, counters: dict[str, int] | None = None) -> None:
        """Add counts summed elsewhere (the proxy's cheap path): the same rows as ``record`` of the
        comparisons they sum, in one transaction."""
        with self._tx() as db:
            for ep, (n, first, last) in counts.endpoints.items():
                db.execute("INSERT INTO endpoints (endpoint, compared, first_at, last_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (endpoint) DO UPDATE SET compared = compared + excluded.compared, "
                           "last_at = MAX(last_at, excluded.last_at)", (ep, int(n), first, last))
            for (ep, key), n in counts.fields.items():
                field, _, kind = key.rpartition("|")
                db.execute("INSERT INTO fields (endpoint, field, kind, diffs) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT DO UPDATE SET diffs = diffs + excluded.diffs", (ep, field, kind, n))
            for (ep, keys), n in counts.signatures.items():
                self._signature(db, ep, json.dumps(list(keys)), n)
            totals = dict(counters or {})
            totals["compared"] = totals.get("compared", 0) + counts.compared
            for (ep, reason), (n, first, last) in counts.skipped.items():
                db.execute("INSERT INTO endpoints (endpoint, skipped, first_at, last_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (endpoint) DO UPDATE SET skipped = skipped + excluded.skipped, "
                           "last_at = MAX(last_at, excluded.last_at)", (ep, int(n), first, last))
                totals[f"skipped_{reason}"] = totals.get(f"skipped_{reason}", 0) + int(n)
            for name, value in totals.items():
                if value:
                    db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                               "ON CONFLICT DO UPDATE SET value = value + excluded.value", (name, value))

    def _signature(self, db: sqlite3.Connection, endpoint: str, keys: str, n: int = 1) -> None:
        hit = db.execute("UPDATE signatures SET count = count + ? WHERE endpoint = ? AND keys = ?",
                         (n, endpoint, keys))
        if hit.rowcount:
            return
        (have,) = db.execute("SELECT COUNT(*) FROM signatures WHERE endpoint = ?", (endpoint,)).fetchone()
        if have >= MAX_SIGNATURES:
            keys = json.dumps([OVERFLOW])
        db.execute("INSERT INTO signatures (endpoint, keys, count) VALUES (?, ?, ?) "
                   "ON CONFLICT DO UPDATE SET count = count + excluded.count", (endpoint, keys, n))

    # ------------------------------------------------------------ reading

    def tally(self) -> Tally:
        with self._lock:
            eps = self._db.execute("SELECT endpoint, compared, noise_compared, skipped FROM endpoints").fetchall()
            fls = self._db.execute("SELECT endpoint, field, kind, diffs, noise_diffs FROM fields").fetchall()
            sgs = self._db.execute("SELECT endpoint, keys, count FROM signatures").fetchall()
        return Tally(tuple(EndpointCount(*r) for r in eps), tuple(FieldCount(*r) for r in fls),
                     tuple(Signature(r[0], tuple(json.loads(r[1])), r[2]) for r in sgs))

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {str(r[0]): int(r[1]) for r in self._db.execute("SELECT name, value FROM counters")}

    def samples(self, limit: int = 20, endpoint: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT body FROM samples" + (" WHERE endpoint = ?" if endpoint else "") + " ORDER BY id DESC LIMIT ?"
        args: tuple[Any, ...] = (endpoint, limit) if endpoint else (limit,)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    def mark(self, at: float | None = None) -> int:
        """Remember the counts now; ``tally_since(mark)`` gives what was compared after it."""
        tally = self.tally()
        with self._tx() as db:
            cur = db.execute("INSERT INTO marks (at, tally) VALUES (?, ?)",
                             (time.time() if at is None else at, json.dumps(_tally_json(tally))))
            return int(cur.lastrowid or 0)

    def tally_since(self, mark: int) -> Tally:
        with self._lock:
            row = self._db.execute("SELECT tally FROM marks WHERE id = ?", (mark,)).fetchone()
        now = self.tally()
        if row is None:
            raise UserError(f"parity store {self.path}: mark {mark} not found (store replaced?)")
        return now.minus(_tally_from_json(json.loads(row[0])))


def _sample_json(c: Comparison) -> dict[str, Any]:
    s = c.sample
    assert s is not None
    return {"endpoint": c.endpoint, "at": s.at, "method": s.method, "path": s.path,
            "request_headers": [list(h) for h in s.request_headers],
            "differences": [d.to_json() for d in s.differences],
            "stable": {"status": s.stable_status, "headers": [list(h) for h in s.stable_headers], "body": s.stable_body},
            "candidate": {"status": s.candidate_status, "headers": [list(h) for h in s.candidate_headers],
                          "body": s.candidate_body}}


def _tally_json(t: Tally) -> dict[str, Any]:
    return {"endpoints": [[e.endpoint, e.compared, e.noise_compared, e.skipped] for e in t.endpoints],
            "fields": [[f.endpoint, f.field, f.kind, f.diffs, f.noise_diffs] for f in t.fields],
            "signatures": [[s.endpoint, list(s.keys), s.count] for s in t.signatures]}


def _tally_from_json(d: dict[str, Any]) -> Tally:
    return Tally(tuple(EndpointCount(*r) for r in d["endpoints"]), tuple(FieldCount(*r) for r in d["fields"]),
                 tuple(Signature(r[0], tuple(r[1]), r[2]) for r in d["signatures"]))
