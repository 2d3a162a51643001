"""Keys a CDC stream applied recently, and when it last caught up: what the ``rollback_safe`` gate
row-diffs between the stream's source and target.

The applier records every key it wrote or deleted (in the target's terms) after its transaction
commits; the stream records the start of every poll that found nothing to apply ("caught up").
A key applied before the last caught-up time is one the stream has carried completely: both
databases must hold the same row for it unless something other than the stream changed one side.
Bounded: at most ``per_table`` keys per table (the most recently applied win). Thread-safe: the
stream's thread writes, the controller's gate reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

RECENT_KEYS_PER_TABLE = 200


class RecentKeys:
    def __init__(self, per_table: int = RECENT_KEYS_PER_TABLE) -> None:
        self.per_table = per_table
        self._lock = threading.Lock()
        self._tables: dict[str, OrderedDict[tuple[Any, ...], float]] = {}
        self.caught_up_at: float | None = None

    def applied(self, table: str, keys: Iterable[Sequence[Any]], at: float) -> None:
        """``keys`` of target ``table`` were committed in the target at ``at`` (epoch seconds)."""
        with self._lock:
            recent = self._tables.setdefault(table, OrderedDict())
            for key in keys:
                k = tuple(key)
                recent.pop(k, None)
                recent[k] = at
            while len(recent) > self.per_table:
                recent.popitem(last=False)

    def caught_up(self, at: float) -> None:
        """A poll that started at ``at`` found nothing left to apply."""
        with self._lock:
            self.caught_up_at = at if self.caught_up_at is None else max(self.caught_up_at, at)

    def settled(self, limit: int) -> dict[str, list[tuple[tuple[Any, ...], float]]]:
        """Per table, up to ``limit`` of the most recent keys applied before the stream last caught up."""
        with self._lock:
            mark = self.caught_up_at
            if mark is None:
                return {}
            out: dict[str, list[tuple[tuple[Any, ...], float]]] = {}
            for table, recent in self._tables.items():
                keys = [(k, at) for k, at in reversed(recent.items()) if at < mark][:limit]
                if keys:
                    out[table] = keys
            return out

    def applied_at(self, table: str, key: Sequence[Any]) -> float | None:
        """When ``key`` was last applied; matched by value, else by text (a diff reads back 42 for '42')."""
        with self._lock:
            recent: OrderedDict[tuple[Any, ...], float] = self._tables.get(table, OrderedDict())
            at = recent.get(tuple(key))
            if at is not None:
                return at
            text = _text(key)
            return max((t for k, t in recent.items() if _text(k) == text), default=None)

    def pending(self) -> int:
        """Keys applied after the last caught-up time (not checkable yet)."""
        with self._lock:
            mark = self.caught_up_at if self.caught_up_at is not None else float("-inf")
            return sum(1 for recent in self._tables.values() for at in recent.values() if at >= mark)


def _text(key: Sequence[Any]) -> str:
    return "\x1f".join("" if v is None else str(v) for v in key)
