"""Dead letters of dual writes: a secondary write that failed, kept durably in the primary database.

``switchover_dead_letters`` lives next to the data the user's write went to (the primary), so a
dead letter is as durable as the write itself. ``replay`` applies each one to the secondary through
the same idempotent path as a live dual write (a dedupe table keyed by the idempotency key in the
secondary, in the same transaction as the change), so replaying twice, or replaying a write that did
reach the secondary after all, changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from switchover.data.move_tables import Side, upsert_sql
from switchover.secrets import redact

DLQ_TABLE = "switchover_dead_letters"
DEDUPE_TABLE = "switchover_dedupe"

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Event:
    """One write, as sent to the secondary (and kept in a dead letter)."""

    idempotency_key: str
    table: str
    op: str  # upsert | delete
    row: dict[str, Any]  # the row (upsert) or the key values (delete)
    key: tuple[str, ...]
    schema_version: int = 1


@dataclass(frozen=True)
class DeadLetter:
    id: int
    event: Event
    error: str
    created_at: float
    attempts: int
    replayed_at: float | None

    def to_json(self) -> dict[str, Any]:
        e = self.event
        return {"id": self.id, "idempotency_key": e.idempotency_key, "table": e.table, "op": e.op,
                "row": e.row, "key": list(e.key), "schema_version": e.schema_version, "error": self.error,
                "created_at": self.created_at, "attempts": self.attempts, "replayed_at": self.replayed_at}


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    duplicates: int  # already on the secondary (dedupe hit): marked replayed, nothing written
    failed: int
    errors: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "duplicates": self.duplicates, "failed": self.failed,
                "errors": list(self.errors)}


def _types(side: Side) -> tuple[str, str, str, str]:
    if side.engine == "mysql":
        return "BIGINT AUTO_INCREMENT PRIMARY KEY", "VARCHAR(191)", "LONGTEXT", "DOUBLE"
    if side.engine == "postgresql":
        return "BIGSERIAL PRIMARY KEY", "TEXT", "TEXT", "DOUBLE PRECISION"
    return "INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT", "TEXT", "REAL"


def ensure_dlq(side: Side) -> None:
    ident, key, text, real = _types(side)
    side.begin()
    side.execute(f"CREATE TABLE IF NOT EXISTS {DLQ_TABLE} (id {ident}, idempotency_key {key} NOT NULL UNIQUE, "
                 f"tbl {key} NOT NULL, op {key} NOT NULL, payload {text} NOT NULL, schema_version INTEGER NOT NULL, "
                 f"error {text} NOT NULL, created_at {real} NOT NULL, attempts INTEGER NOT NULL, replayed_at {real})")
    side.commit()


def ensure_dedupe(side: Side) -> None:
    _, key, _, real = _types(side)
    side.begin()
    side.execute(f"CREATE TABLE IF NOT EXISTS {DEDUPE_TABLE} (idempotency_key {key} PRIMARY KEY, "
                 f"applied_at {real} NOT NULL)")
    side.commit()


def add(side: Side, event: Event, error: str, now: float) -> None:
    """Record a dead letter (same idempotency key again: one more attempt on the same letter)."""
    payload = json.dumps({"row": event.row, "key": list(event.key)}, default=str)
    cols = ["idempotency_key", "tbl", "op", "payload", "schema_version", "error", "created_at", "attempts"]
    values = [event.idempotency_key, event.table, event.op, payload, event.schema_version, redact(error)[:2000], now, 1]
    ph = side.ph
    side.begin()
    updated = side.execute(f"SELECT id FROM {DLQ_TABLE} WHERE idempotency_key = {ph}", (event.idempotency_key,))
    if updated:
        side.execute(f"UPDATE {DLQ_TABLE} SET attempts = attempts + 1, error = {ph}, replayed_at = NULL "
                     f"WHERE idempotency_key = {ph}", (values[5], event.idempotency_key))
    else:
        side.execute(f"INSERT INTO {DLQ_TABLE} ({', '.join(cols)}) VALUES ({', '.join([ph] * len(cols))})", values)
    side.commit()


def pending(side: Side, include_replayed: bool = False, limit: int = 10_000) -> list[DeadLetter]:
    where = "" if include_replayed else "WHERE replayed_at IS NULL"
    rows = side.execute(f"SELECT id, idempotency_key, tbl, op, payload, schema_version, error, created_at, attempts, "
                        f"replayed_at FROM {DLQ_TABLE} {where} ORDER BY id LIMIT {int(limit)}")
    side.finish_read()
    out = []
    for rid, ikey, tbl, op, payload, version, error, created, attempts, replayed in rows:
        body = json.loads(payload)
        out.append(DeadLetter(int(rid), Event(str(ikey), str(tbl), str(op), dict(body["row"]), tuple(body["key"]),
                                              int(version)), str(error), float(created), int(attempts),
                              None if replayed is None else float(replayed)))
    return out


def upcast(event: Event, upcasters: Mapping[tuple[str, int], Upcaster], current: Mapping[str, int]) -> Event:
    """Bring an event written with an older schema version to the table's current one."""
    row, version = dict(event.row), event.schema_version
    target = current.get(event.table, version)
    while version < target:
        step = upcasters.get((event.table, version))
        if step is None:
            raise ValueError(f"no upcaster for {event.table} v{version} -> v{version + 1}")
        row, version = step(row), version + 1
    return Event(event.idempotency_key, event.table, event.op, row, event.key, version)


def apply_to_secondary(side: Side, event: Event, now: float) -> bool:
    """Apply ``event`` once: True when written, False when its idempotency key was already there."""
    ph = side.ph
    side.begin()
    try:
        if side.execute(f"SELECT 1 FROM {DEDUPE_TABLE} WHERE idempotency_key = {ph}", (event.idempotency_key,)):
            side.rollback()
            return False
        # The unique key makes a concurrent duplicate fail here rather than write twice.
        side.execute(f"INSERT INTO {DEDUPE_TABLE} (idempotency_key, applied_at) VALUES ({ph}, {ph})",
                     (event.idempotency_key, now))
        if event.op == "delete":
            where = " AND ".join(f"{side.q(k)} = {ph}" for k in event.key)
            side.execute(f"DELETE FROM {side.q(event.table)} WHERE {where}", [event.row[k] for k in event.key])
        else:
            cols = list(event.row)
            side.execute(upsert_sql(side, event.table, cols, list(event.key)), [event.row[c] for c in cols])
        side.commit()
        return True
    except BaseException:
        side.rollback()
        raise


def mark_replayed(side: Side, letter_id: int, now: float) -> None:
    side.begin()
    side.execute(f"UPDATE {DLQ_TABLE} SET replayed_at = {side.ph} WHERE id = {side.ph}", (now, letter_id))
    side.commit()


def replay(primary: Side, secondary: Side, *, upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
           current_versions: Mapping[str, int] | None = None, ids: Sequence[int] | None = None) -> ReplayResult:
    """Apply every pending dead letter to the secondary, in the order they were written."""
    ensure_dedupe(secondary)
    replayed = duplicates = failed = 0
    errors: list[str] = []
    for letter in pending(primary):
        if ids is not None and letter.id not in ids:
            continue
        try:
            event = upcast(letter.event, upcasters or {}, current_versions or {})
            wrote = apply_to_secondary(secondary, event, time.time())
        except Exception as exc:
            failed += 1
            errors.append(f"#{letter.id} {letter.event.table}: {redact(str(exc)).strip()}")
            add(primary, letter.event, str(exc), time.time())
            continue
        mark_replayed(primary, letter.id, time.time())
        replayed += wrote
        duplicates += not wrote
    return ReplayResult(replayed, duplicates, failed, tuple(errors))
