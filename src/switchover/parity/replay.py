"""``parity replay``: recorded requests sent to stable and the candidate, with bounded concurrency
and an optional rate limit; answers are diffed and stored like mirrored ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from switchover.parity.compare import Request, is_read
from switchover.parity.sink import ParitySink
from switchover.parity.upstream import Clients, Upstreams, exchange


@dataclass
class ReplayStats:
    sent: int = 0
    writes_skipped: int = 0


async def replay(requests: list[Request], sink: ParitySink, upstreams: Upstreams, *, concurrency: int,
                 rate: float | None, timeout: float, mirror_writes: bool,
                 progress: Callable[[int], None] | None = None,
                 stop: Callable[[], bool] | None = None) -> ReplayStats:
    """Replay every request once (``rate`` per second at most); ``stop()`` true ends it early."""
    stats = ReplayStats()
    todo = [r for r in requests if mirror_writes or is_read(r.method)]
    stats.writes_skipped = len(requests) - len(todo)
    if progress and stats.writes_skipped:
        progress(stats.writes_skipped)
    sem = asyncio.Semaphore(concurrency)
    start = time.monotonic()
    async with Clients(upstreams, timeout, concurrency) as clients:

        async def one(i: int, request: Request) -> None:
            try:
                pair, secondary = await exchange(clients, request, time.time())
                sink.submit_exchange(pair, secondary, block=True)  # replay waits, never drops
                stats.sent += 1
            finally:
                sem.release()
                if progress:
                    progress(1)

        tasks = []
        for i, request in enumerate(todo):
            if stop is not None and stop():
                break
            if rate:
                # Start times spaced evenly: request i no earlier than start + i / rate.
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await sem.acquire()
            tasks.append(asyncio.create_task(one(i, request)))
        await asyncio.gather(*tasks)
    return stats
