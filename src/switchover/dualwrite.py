"""Dual writes for applications: ``from switchover.dualwrite import DualWriter``.

::

    dw = DualWriter("postgresql://app@db-v1/orders", "mysql://app@db-v2/orders",
                    state="sqlite:///.switchover/orders.db")
    dw.upsert("orders", {"id": 42, "status": "paid"}, key=["id"])   # primary, then secondary
    dw.delete("orders", {"id": 42}, key=["id"])

The primary write is the user's write: its errors are raised as usual. Then, while the ``dual_write``
flag is on, the same change goes to the secondary with an idempotency key recorded in the
secondary's dedupe table in the same transaction. A secondary failure never fails the user's write:
the change becomes a durable dead letter in the primary database (``switchover data dlq list|replay``).
After a failure the secondary is skipped for ``retry_after`` seconds (dead letters straight away), so a
secondary that is down does not add its connect timeout to every user request.

The flag lives in the plan's state store (``StateStore.get_flag("dual_write")``; the ``dual_write``
step sets it, ``switchover rollback`` clears it), read at most every ``cache_seconds``; without a
store, or when it cannot be read, the environment variable ``SWITCHOVER_DUAL_WRITE`` (1/0) decides.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from switchover.data import dlq
from switchover.data.move_tables import Side, upsert_sql
from switchover.secrets import redact

log = logging.getLogger("switchover.dualwrite")
ENV_FLAG = "SWITCHOVER_DUAL_WRITE"


@dataclass
class DualWriteCounters:
    primary_writes: int = 0
    secondary_writes: int = 0
    secondary_failures: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    skipped_flag_off: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class WriteOutcome:
    idempotency_key: str
    secondary: str  # written | duplicate | dead_letter | off


@dataclass
class _FlagCache:
    value: bool = False
    read_at: float = float("-inf")
    source: str = "env"


@dataclass
class DualWriter:
    primary_url: str
    secondary_url: str
    state: str | None = None  # the plan's state store URL (sqlite:///...)
    cache_seconds: float = 1.0
    retry_after: float = 5.0
    schema_versions: Mapping[str, int] = field(default_factory=dict)  # table -> current event schema version
    upcasters: Mapping[tuple[str, int], dlq.Upcaster] = field(default_factory=dict)  # (table, v) -> v+1
    clock: Callable[[], float] = time.monotonic
    registry: Any = None  # a prometheus_client CollectorRegistry to export the counters to

    def __post_init__(self) -> None:
        self.counters = DualWriteCounters()
        self._lock = threading.Lock()
        self._flag = _FlagCache()
        self._primary = Side.open(self.primary_url, where="primary")
        dlq.ensure_dlq(self._primary)
        self._secondary: Side | None = None
        self._secondary_down_until = float("-inf")
        self._store: Any = None
        self._metrics = _metrics(self.registry) if self.registry is not None else None

    # ------------------------------------------------------------------ the flag

    def enabled(self) -> bool:
        now = self.clock()
        if now - self._flag.read_at < self.cache_seconds:
            return self._flag.value
        value, source = self._read_flag()
        self._flag = _FlagCache(value, now, source)
        return value

    def _read_flag(self) -> tuple[bool, str]:
        if self.state:
            try:
                if self._store is None:
                    from switchover.engine.store import StateStore

                    self._store = StateStore(self.state)
                stored = self._store.get_flag("dual_write")
                if stored is not None:
                    return bool(stored), "store"
            except Exception as exc:  # the store is unreadable: fall back, never fail the user's write
                log.warning("dual_write flag: state store unreadable (%s); using %s", redact(str(exc)), ENV_FLAG)
        return os.environ.get(ENV_FLAG, "0").strip().lower() in ("1", "true", "on", "yes"), "env"

    # ------------------------------------------------------------------ writes

    def upsert(self, table: str, row: Mapping[str, Any], *, key: Sequence[str], idempotency_key: str | None = None,
               schema_version: int | None = None) -> WriteOutcome:
        event = dlq.Event(idempotency_key or uuid.uuid4().hex, table, "upsert", dict(row), tuple(key),
                          schema_version or self.schema_versions.get(table, 1))
        with self._lock:
            p = self._primary
            try:
                p.begin()
                cols = list(row)
                p.execute(upsert_sql(p, table, cols, list(key)), [row[c] for c in cols])
                p.commit()
            except BaseException:
                p.rollback()
                raise
            return self._after_primary(event)

    def delete(self, table: str, key_values: Mapping[str, Any], *, key: Sequence[str] | None = None,
               idempotency_key: str | None = None) -> WriteOutcome:
        cols = list(key or key_values)
        event = dlq.Event(idempotency_key or uuid.uuid4().hex, table, "delete", dict(key_values), tuple(cols),
                          self.schema_versions.get(table, 1))
        with self._lock:
            p = self._primary
            try:
                p.begin()
                where = " AND ".join(f"{p.q(k)} = {p.ph}" for k in cols)
                p.execute(f"DELETE FROM {p.q(table)} WHERE {where}", [key_values[k] for k in cols])
                p.commit()
            except BaseException:
                p.rollback()
                raise
            return self._after_primary(event)

    def _after_primary(self, event: dlq.Event) -> WriteOutcome:
        self._count("primary_writes")
        if not self.enabled():
            self._count("skipped_flag_off")
            return WriteOutcome(event.idempotency_key, "off")
        now = self.clock()
        if now < self._secondary_down_until:
            self._dead_letter(event, "secondary skipped: it failed less than retry_after seconds ago")
            return WriteOutcome(event.idempotency_key, "dead_letter")
        try:
            if self._secondary is None:
                self._secondary = Side.open(self.secondary_url, where="secondary")
                dlq.ensure_dedupe(self._secondary)
            current = dlq.upcast(event, self.upcasters, self.schema_versions)
            wrote = dlq.apply_to_secondary(self._secondary, current, time.time())
        except Exception as exc:
            self._count("secondary_failures")
            self._secondary_down_until = now + self.retry_after
            if self._secondary is not None:
                self._secondary.close()
                self._secondary = None
            self._dead_letter(event, str(exc))
            return WriteOutcome(event.idempotency_key, "dead_letter")
        self._count("secondary_writes" if wrote else "duplicates")
        return WriteOutcome(event.idempotency_key, "written" if wrote else "duplicate")

    def _dead_letter(self, event: dlq.Event, error: str) -> None:
        try:
            dlq.add(self._primary, event, error, time.time())
            self._count("dead_letters")
        except Exception as exc:  # the primary itself failed after the user's write: say so loudly
            log.error("dual write: could not record dead letter %s for %s: %s", event.idempotency_key,
                      event.table, redact(str(exc)))

    def _count(self, name: str) -> None:
        setattr(self.counters, name, getattr(self.counters, name) + 1)
        if self._metrics is not None:
            self._metrics.labels(name).inc()

    def close(self) -> None:
        self._primary.close()
        if self._secondary is not None:
            self._secondary.close()
        if self._store is not None:
            self._store.close()


def _metrics(registry: Any) -> Any:
    from prometheus_client import Counter

    return Counter("switchover_dualwrite_events_total", "dual-write outcomes", ["outcome"], registry=registry)
