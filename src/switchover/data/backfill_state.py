"""Where a backfill keeps its checkpoint and reads ``--pause``/``--resume``: the state store.

Keys: checkpoint ``backfill:<target>:<table>``, flag ``backfill_pause:<target>:<table>``. The
running copy reads the flag before every chunk, so ``switchover data backfill --pause`` from another
shell takes effect within one chunk (``chunk_time``).
"""

from __future__ import annotations

from typing import Any

from switchover.data.backfill_control import BackfillStatus
from switchover.engine.store import StateStore


def backfill_key(target_url_safe: str, table: str) -> str:
    return f"{target_url_safe}:{table}"


class StoreControl:
    def __init__(self, store: StateStore, key: str, run_id: str, actor: str,
                 journal_fn: Any = None) -> None:
        self.store, self.key, self.run_id, self.actor = store, key, run_id, actor
        self._journal_fn = journal_fn

    def load(self) -> BackfillStatus | None:
        data = self.store.get_checkpoint(f"backfill:{self.key}")
        return BackfillStatus.from_json(data) if data else None

    def save(self, status: BackfillStatus) -> None:
        self.store.set_checkpoint(f"backfill:{self.key}", status.to_json())

    def paused(self) -> bool:
        return bool(self.store.get_flag(f"backfill_pause:{self.key}", False))

    def set_paused(self, value: bool, actor: str) -> None:
        self.store.set_flag(f"backfill_pause:{self.key}", value, actor)

    def journal(self, kind: str, payload: dict[str, Any]) -> None:
        if self._journal_fn is not None:
            self._journal_fn(kind, payload)
        else:
            self.store.append(self.run_id, kind, self.actor, payload)
