"""``parity.copies_from: worker``: the parity worker process sends the copies, not the proxy.

The proxy then hands over each mirrored request, as the copy's bytes (``x-switchover-shadow: 1``
added), with the user's stable answer (``hooks.RawCopy``), and never writes a copy or reads a
candidate's answer: what mirroring costs its event loop is one hand-over per pair. The worker sends
the copies with the proxy's own mirror code (``traffic/proxy/mirror.py``: batches pipelined on one
connection, at most the proxy's ``max_mirrors_in_flight``, idempotent copies sent again when the
candidate cuts a pipeline) on an event loop of its own, and gives each pair to ``Triage`` as if the
proxy had handed it over whole. What came of the copies (sent, completed, failed, dropped, retried,
the candidate's statuses and latencies) is counted in a block of the proxy's own counters
(``shared.py``; Linux), so the proxy's ``GET /api/v1/stats`` and ``/metrics`` (the ``shadow`` role,
``mirror``) show them as they would the proxy's own copies; and it goes to the store's counters with
the diff counts (``copies_sent``...).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import ssl
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from switchover.parity.pipe import PipeReader
from switchover.traffic.proxy.config import UpstreamAddress, parse_upstream
from switchover.traffic.proxy.hooks import CopyTarget, RawCopy, RawHeaders
from switchover.traffic.proxy.mirror import Mirror
from switchover.traffic.proxy.shared import Shared
from switchover.traffic.proxy.stats import ProxyStats
from switchover.traffic.proxy.upstream import Pool

if TYPE_CHECKING:
    from switchover.parity.triage import Triage

log = logging.getLogger(__name__)

_SWEEP_EVERY = 0.2  # seconds: copies past the response timeout are failed this often (as the proxy's sweep)
_DRAIN = 10.0  # seconds at most, after the proxy's last frame, for the copies in flight to be answered
_COUNTERS = ("sent", "completed", "failed", "dropped", "retried")
# A candidate slower than this to answer gets no pipelined copies from the worker. Higher than the
# proxy's 10 ms: what the worker measures includes its own wait for a CPU (it runs at the lowest
# priority; on a busy host, tens of milliseconds), which made it take a fast candidate for a slow one
# and send every copy alone (docs/performance-parity.md, session 9).
_SLOW_ANSWER = 0.1


class CopySender:
    """Sends the copies the proxy hands over and gives each answered pair to ``triage``. The
    ``MirrorHost`` of its ``Mirror`` (stats of its own, its event loop, the candidate)."""

    def __init__(self, triage: Triage, loop: asyncio.AbstractEventLoop) -> None:
        self.triage = triage
        self.loop = loop
        self.stats = ProxyStats(Shared(1), 0)
        self.candidate = UpstreamAddress("", "http", "", 0, b"")
        self.mirror: Mirror | None = None
        self._reported = dict.fromkeys(_COUNTERS, 0)
        self._waiting: deque[RawCopy] = deque()
        self._queue = triage.sink.parity.queue
        self._drops = 0  # copies handed over before their target (a proxy of another version)

    def target(self, target: CopyTarget) -> None:
        if target.counters is not None:
            try:  # the copies count in the proxy's own counters, in the block kept for this process
                self.stats = ProxyStats(Shared.attach(target.counters), target.counters.index)
            except (OSError, ValueError) as exc:
                log.warning("parity: the proxy's counters cannot be opened (%s): its stats will not show the "
                            "copies this process sends; the parity report's counters do", exc)
        self.candidate = parse_upstream(target.url, "candidate")
        context = ssl.create_default_context() if self.candidate.tls else None
        pool = Pool(self.candidate, context, target.connect_timeout, target.max_in_flight)
        self.mirror = Mirror(self, pool, None, target.cap, target.response_timeout, target.batch_wait,
                             slow_answer=_SLOW_ANSWER, bursty=True)
        self.loop.call_later(_SWEEP_EVERY, self._sweep)

    def send(self, copy: RawCopy) -> None:
        """Send now, or wait while ``max_mirrors_in_flight`` are (the proxy hands copies over in
        bursts, one every 20 ms); beyond ``parity.queue`` waiting, dropped and counted."""
        mirror = self.mirror
        if mirror is None:
            self._drops += 1
        elif self._waiting or mirror.pool.in_flight >= mirror.pool.max_in_flight:
            if len(self._waiting) < self._queue:
                self._waiting.append(copy)
            else:
                self.stats.mirror_dropped += 1
        else:
            mirror.send(copy[0], copy[10], _Waiting(self, copy))

    def answered(self) -> None:
        """A copy is done: those waiting take its place."""
        mirror, waiting = self.mirror, self._waiting
        if mirror is None:
            return
        pool = mirror.pool
        while waiting and pool.in_flight < pool.max_in_flight:
            copy = waiting.popleft()
            mirror.send(copy[0], copy[10], _Waiting(self, copy))

    def in_flight(self) -> int:
        return len(self._waiting) + (0 if self.mirror is None else self.mirror.pool.in_flight)

    def take_counters(self) -> dict[str, int]:
        """What came of the copies since the last call, for the store's counters (``copies_sent``...)."""
        stats = self.stats
        now = {"sent": stats.mirror_sent, "completed": stats.mirror_completed, "failed": stats.mirror_failed,
               "dropped": stats.mirror_dropped + self._drops, "retried": stats.mirror_retried}
        out = {f"copies_{k}": now[k] - self._reported[k] for k in _COUNTERS}
        self._reported = now
        return out

    def close(self) -> None:
        """Copies still waiting or in flight are given up (counted as skipped, ``stopped``)."""
        while self._waiting:
            copy = self._waiting.popleft()
            self.triage.counts.skip(self.triage.quick.endpoint_raw(copy[0], copy[1]), copy[4], "stopped")
        if self.mirror is not None:
            self.mirror.close()

    def _sweep(self) -> None:
        if self.mirror is not None:
            self.mirror.pool.sweep(time.monotonic())
            self.loop.call_later(_SWEEP_EVERY, self._sweep)


class _Waiting:
    """One copy's pair waiting for the candidate's answer (``mirror.CopyWaiter``)."""

    __slots__ = ("copy", "sender")

    def __init__(self, sender: CopySender, copy: RawCopy) -> None:
        self.sender = sender
        self.copy = copy

    def skip(self, reason: str) -> None:
        """Not compared, but counted (``too_large``, ``stopped``)."""
        copy, triage = self.copy, self.sender.triage
        self.sender.answered()
        triage.counts.skip(triage.quick.endpoint_raw(copy[0], copy[1]), copy[4], reason)

    def candidate_done(self, answer: tuple[int, RawHeaders, bytes, float, str | None]) -> None:
        copy, triage = self.copy, self.sender.triage
        self.sender.answered()
        collecting = gc.isenabled()
        gc.disable()  # as for frames: the diff's containers are freed once the pair is done
        try:
            triage.pair((*copy[:10], *answer))
        finally:
            if collecting:
                gc.enable()


def _count(triage: Triage, sender: CopySender) -> None:
    for name, n in sender.take_counters().items():
        triage.counters[name] = triage.counters.get(name, 0) + n


def serve_copies(conn: Connection, triage: Triage,
                 take_frames: Callable[[bytearray, Triage, CopySender | None], bool]) -> None:
    """The worker's loop with ``copies_from: worker``: frames from the proxy's pipe (copies to send,
    pairs, counts) until the stop frame or the proxy's end, counts to the store every 250 ms, then the
    copies in flight are given up to ``_DRAIN`` seconds to be answered."""
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sender = CopySender(triage, loop)
        fd = conn.fileno()
        os.set_blocking(fd, False)
        buffer = bytearray()
        read = PipeReader(fd, 1024 * 1024)
        ended = asyncio.Event()

        def readable() -> None:
            try:
                if not read.into(buffer):
                    ended.set()  # the proxy is gone
                    return
            except BlockingIOError:
                return
            gc.disable()
            try:
                if take_frames(buffer, triage, sender):
                    ended.set()
            finally:
                gc.enable()

        def flush() -> None:
            _count(triage, sender)
            loop.call_later(triage.flush(), flush)

        loop.add_reader(fd, readable)
        loop.call_later(triage.flush(), flush)
        await ended.wait()
        loop.remove_reader(fd)
        if sender.mirror is not None:
            sender.mirror.flush()
        deadline = loop.time() + _DRAIN
        while sender.in_flight() and loop.time() < deadline:
            await asyncio.sleep(0.02)
        sender.close()
        _count(triage, sender)

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main())
