"""Taking a batch from the queue a reader thread fills (binlog, Debezium lines)."""

from __future__ import annotations

import queue
import time
from typing import Any


def take_batch(q: queue.Queue[Any], timeout: float, limit: int) -> list[Any]:
    """Wait up to ``timeout`` for the first item, then take what is already queued, up to ``limit``.
    ``None`` marks the end of the input (left in the queue for the next call); an exception put by
    the reader is raised here, in the caller's thread."""
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < limit:
        try:
            item = q.get(timeout=max(0.0, deadline - time.monotonic()) if not out else 0)
        except queue.Empty:
            break
        if item is None:
            q.put(None)  # stay at the end
            break
        if isinstance(item, BaseException):
            raise item
        out.append(item)
    return out
