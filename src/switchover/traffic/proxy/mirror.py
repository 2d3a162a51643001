"""Mirroring: a sampled copy of a request goes to the candidate; its answer never reaches the user.

The copy leaves once the user's request is complete and never holds the user's answer back: it uses
its own connections to the candidate, a bounded number in flight (beyond it, dropped and counted).
With a parity sink, the user's stable answer and the copy's answer are buffered (up to the copy
cap) and handed over as a ``MirrorPair``; without one, nothing is buffered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

from switchover.traffic.proxy.hooks import (
    CopyingSink,
    CopyTarget,
    MirrorSink,
    RawCopy,
    RawHeaders,
    RawPair,
    pair_from_raw,
)
from switchover.traffic.proxy.shared import HelperBlock
from switchover.traffic.proxy.upstream import Pool, UpstreamConn

if TYPE_CHECKING:
    from switchover.traffic.proxy.config import UpstreamAddress
    from switchover.traffic.proxy.server import Exchange
    from switchover.traffic.proxy.stats import ProxyStats


class MirrorHost(Protocol):
    """What a ``Mirror`` uses of its owner: the proxy, or the parity worker that sends copies."""

    stats: ProxyStats
    loop: asyncio.AbstractEventLoop
    candidate: UpstreamAddress


class CopyWaiter(Protocol):
    """Who gets a copy's answer: ``candidate_done((status, headers, body, latency, error))``, or
    ``skip(reason)`` when there is none to compare: ``too_large`` (above the copy cap, not kept),
    ``stopped`` (given up as the proxy stopped: not the candidate's failure)."""

    def candidate_done(self, answer: tuple[int, RawHeaders, bytes, float, str | None]) -> None: ...

    def skip(self, reason: str) -> None: ...


class PairSlot:
    """Collects both answers of one mirrored request for the parity sink, as parsed: nothing is
    decoded or built here (``hooks.RawPair``), the sink does that where it diffs."""

    __slots__ = ("at", "body", "cancelled", "candidate", "headers", "method", "mirror", "request", "stable",
                 "stable_chunks", "stable_headers", "stable_size", "url")

    def __init__(self, mirror: Mirror, exchange: Exchange) -> None:
        self.mirror = mirror
        self.method = exchange.method
        self.url = exchange.url
        self.headers = exchange.headers  # the request's own list, never changed once parsed
        self.at = time.time()
        self.body = b""
        self.request: bytes | None = None  # the copy, when the sink sends it (parity.copies_from: worker)
        self.stable: tuple[int, RawHeaders, bytes, float, str | None] | None = None
        self.candidate: tuple[int, RawHeaders, bytes, float, str | None] | None = None
        self.stable_headers: RawHeaders = []
        self.stable_chunks: list[bytes] = []
        self.stable_size = 0
        self.cancelled = False

    def stable_head(self, status: int, headers: RawHeaders) -> None:
        self.stable_headers = headers

    def stable_body(self, data: bytes) -> None:
        self.stable_size += len(data)
        if self.stable_size <= self.mirror.cap:
            self.stable_chunks.append(data)

    def stable_done(self, status: int, latency: float, error: str | None) -> None:
        if self.stable_size > self.mirror.cap:
            self.skip("too_large")
            return
        self.stable = (status, self.stable_headers, b"".join(self.stable_chunks), latency,
                       None if error is None else error_kind(error))
        if self.candidate is not None:
            self._submit()
        elif self.request is not None:
            self._hand_over()

    def copy_ready(self, request: bytes) -> None:
        """The copy, for the sink to send: handed over with the stable answer once both are there."""
        self.request = request
        if self.stable is not None:
            self._hand_over()

    def candidate_done(self, answer: tuple[int, RawHeaders, bytes, float, str | None]) -> None:
        """The copy's answer (status, headers, body, latency, error)."""
        self.candidate = answer
        if self.stable is not None:
            self._submit()

    def cancel(self) -> None:
        self.cancelled = True

    def skip(self, reason: str) -> None:
        """Never compared, but counted: an answer above the copy cap (not buffered), a copy given up."""
        if not self.cancelled and self.mirror.sink is not None:
            self.mirror.sink.skip(self.method.decode("latin-1"), self.url.decode("latin-1"), self.at, reason)
        self.cancelled = True

    def _submit(self) -> None:
        mirror = self.mirror
        if self.cancelled or mirror.sink is None:
            return
        assert self.stable is not None and self.candidate is not None
        raw: RawPair = (self.method, self.url, self.headers, self.body, self.at, *self.stable, *self.candidate)
        if mirror.submit_raw is not None:
            mirror.submit_raw(raw)
        else:
            mirror.sink.submit(pair_from_raw(raw))

    def _hand_over(self) -> None:
        assert self.stable is not None and self.request is not None
        if not self.cancelled and self.mirror.submit_copy is not None:
            self.mirror.submit_copy((self.method, self.url, self.headers, self.body, self.at, *self.stable,
                                     self.request))


def error_kind(kind: str) -> str:
    """The hooks contract names three kinds of missing answer: connect, reset, timeout."""
    return {"connect": "connect", "connect-timeout": "connect", "timeout": "timeout"}.get(kind, "reset")


SLOW_ANSWER = 0.01  # seconds: a candidate slower than this to answer gets no pipelined copies


class Mirror:
    def __init__(self, proxy: MirrorHost, pool: Pool, sink: MirrorSink | None, cap: int, timeout: float,
                 batch_wait: float = 0.0, counters: HelperBlock | None = None, *,
                 slow_answer: float = SLOW_ANSWER, bursty: bool = False) -> None:
        """``slow_answer``: a candidate slower than this to answer (as measured here) gets no pipelined
        copies; ``bursty``: copies come in bursts (handed over from another process every few
        milliseconds, ``parity/copies.py``), so many in flight at once is no sign of a candidate
        falling behind, and they leave in pipelines of ``MAX_PIPELINE`` up to the in-flight bound."""
        self.proxy = proxy
        self.pool = pool
        self.sink = sink
        # The sink's cheaper door when it has one (hooks.py): the pair as parsed.
        self.submit_raw: Callable[[RawPair], None] | None = getattr(sink, "submit_raw", None)
        # A sink that sends the copies itself (hooks.py, ``RawCopy``): the proxy only hands them over.
        self.submit_copy: Callable[[RawCopy], None] | None = None
        # With a block of its own in the proxy's counters the sink counts the copies it sends; else
        # the proxy counts each as sent when it hands it over.
        self._count_handovers = counters is None
        if sink is not None and getattr(sink, "sends_copies", False):
            copying = cast(CopyingSink, sink)
            self.submit_copy = copying.submit_copy
            copying.send_copies_to(CopyTarget(proxy.candidate.url, cap, timeout, pool.connect_timeout,
                                              pool.max_in_flight, batch_wait, counters))
        self.cap = cap
        self.timeout = timeout
        self.batch_wait = batch_wait
        self.slow_answer = slow_answer
        self.bursty = bursty
        self.closing = False
        self.slow = False  # the candidate takes over slow_answer to answer a copy: no pipelines (served)
        self._service = 0.0  # moving average of its time to answer the first copy of a pipeline
        self._batch: list[MirrorCopy] = []
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._connecting: set[MirrorPipeline] = set()  # pipelines waiting for a new connection

    def new_pair(self, exchange: Exchange) -> PairSlot | None:
        return PairSlot(self, exchange) if self.sink is not None else None

    def dispatch(self, exchange: Exchange) -> None:
        """The user's request is complete: send its copy, or drop it when too many are in flight."""
        if exchange.copy is None:  # body beyond the copy cap: streamed to stable only
            exchange.pair = None
            return
        pair = exchange.pair
        body = b"".join(exchange.copy)
        if pair is not None:
            pair.body = body
            if self.submit_copy is not None:  # the sink sends it, bounds it and counts what came of it
                if self._count_handovers:
                    self.proxy.stats.mirror_sent += 1
                pair.copy_ready(copy_request(self, exchange, body))
                return
        if not self.send(exchange.method, copy_request(self, exchange, body), pair):
            exchange.pair = None

    def send(self, method: bytes, data: bytes, pair: CopyWaiter | None) -> bool:
        """Send one copy (a request as bytes); False when too many are in flight (dropped, counted)."""
        stats = self.proxy.stats
        if self.pool.in_flight >= self.pool.max_in_flight:
            stats.mirror_dropped += 1
            return False
        self.pool.in_flight += 1
        stats.mirror_sent += 1
        copy = MirrorCopy(self, method, data, pair)
        if copy.head_only:  # the answer to HEAD cannot be told from the next one's start: alone
            self._send([copy])
            return True
        # Copies made within ``batch_wait`` (2 ms) of the first leave together, pipelined on one
        # connection: one write (and mostly one read) for several, which makes each copy cheaper for
        # the proxy (~15% fewer instructions at 16,000 requests/s, mirror 20%: docs/performance-parity.md).
        # Nobody waits for a copy; its latency is measured from when it leaves.
        batch = self._batch
        batch.append(copy)
        # A server answers pipelined requests one after the other: to a slow candidate, or when copies
        # pile up in flight, each goes on a connection of its own, so that they run side by side there
        # and the in-flight bound is not spent queueing.
        if len(batch) >= MAX_PIPELINE or self.slow or (
                not self.bursty and self.pool.in_flight * 2 >= self.pool.max_in_flight):
            self.flush()
        elif len(batch) == 1:
            loop = self.proxy.loop
            self._timer = loop.call_later(self.batch_wait, self.flush) if self.batch_wait else loop.call_soon(self.flush)
        return True

    def served(self, seconds: float) -> None:
        """The candidate answered the first copy of a pipeline in ``seconds`` (not queued behind another)."""
        self._service += (seconds - self._service) / 4
        self.slow = self._service > self.slow_answer

    def close(self) -> None:
        """Stop: copies still waiting or in flight are given up (counted as not compared, ``stopped``,
        not as the candidate's failures)."""
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, []
        for copy in batch:
            copy.on_upstream_error("reset")
        for pipeline in list(self._connecting):
            pipeline.on_upstream_error("reset")
        self._connecting.clear()
        self.pool.close()

    def flush(self) -> None:
        """The copies waiting for company leave now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, []
        if batch:
            self._send(batch)

    def _send(self, copies: list[MirrorCopy]) -> None:
        now = time.monotonic()  # the copies' latency: from here, not from when they began to wait
        for copy in copies:
            copy.started = now
        pipeline = MirrorPipeline(self, copies)
        conn = self.pool.take()
        if conn is not None:
            pipeline.send(conn)
        else:
            self._connecting.add(pipeline)
            self.proxy.loop.create_task(pipeline.connect())


MAX_PIPELINE = 16
_IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))  # RFC 9110, 9.2.2


class MirrorPipeline:
    """Copies sent back to back on one connection to the candidate (HTTP/1.1 pipelining); answers come
    back in order. The ``Receiver`` of that connection until the last answer."""

    __slots__ = ("conn", "copies", "index", "mirror")

    def __init__(self, mirror: Mirror, copies: list[MirrorCopy]) -> None:
        self.mirror = mirror
        self.copies = copies
        self.index = 0
        self.conn: UpstreamConn | None = None

    async def connect(self) -> None:
        mirror = self.mirror
        try:
            conn = await mirror.pool.connect()
        except (OSError, TimeoutError) as exc:
            mirror._connecting.discard(self)
            self.on_upstream_error("connect-timeout" if isinstance(exc, TimeoutError) else "connect")
            return
        mirror._connecting.discard(self)
        if mirror.closing:  # its copies were given up meanwhile
            conn.close()
            return
        self.send(conn)

    def send(self, conn: UpstreamConn) -> None:
        self.conn = conn
        copies = self.copies
        data = copies[0].data if len(copies) == 1 else b"".join(c.data for c in copies)
        conn.send(self, data, copies[0].head_only, self.mirror.timeout)

    def on_informational(self, head: bytes) -> None:
        pass

    def on_response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.copies[self.index].on_response_head(status, reason, headers)

    def on_response_body(self, data: bytes) -> None:
        self.copies[self.index].on_response_body(data)

    def on_response_complete(self, reusable: bool) -> None:
        copy = self.copies[self.index]
        if self.index == 0:
            self.mirror.served(time.monotonic() - copy.started)
        self.index += 1
        copy.on_response_complete(reusable)
        conn = self.conn
        if self.index < len(self.copies):
            if reusable and conn is not None and conn.alive:
                conn.receiver = self  # the next answer on this connection is the next copy's
                conn.deadline = time.monotonic() + self.mirror.timeout
            else:  # the upstream closes after this answer (nginx: keepalive_requests): the rest are unanswered
                self.on_upstream_error("reset")
            return
        self.conn = None
        if conn is not None:
            if reusable:
                self.mirror.pool.give_back(conn)
            else:
                self.mirror.pool.busy.discard(conn)
                conn.close()

    def on_upstream_error(self, kind: str) -> None:
        conn, self.conn = self.conn, None
        # A connection closed after some answers, or a reused one closed before the first (its idle
        # timeout fired as we wrote): the copies it did not answer were not served, and a client
        # retries such requests (RFC 9112, 9.3.2); counting them as the candidate's errors would
        # charge the candidate for its server's keep-alive limit. Idempotent ones go again, alone.
        retry = (kind == "reset" and not self.mirror.closing
                 and (self.index > 0 or (conn is not None and conn.uses > 1)))
        if conn is not None:
            self.mirror.pool.busy.discard(conn)
            conn.detach()
        rest, self.index = self.copies[self.index:], len(self.copies)
        for copy in rest:
            if retry and copy.idempotent and not copy.retried:
                copy.again()
                self.mirror.proxy.stats.mirror_retried += 1
                self.mirror._send([copy])
            else:
                copy.on_upstream_error(kind)

    def on_tunnel_data(self, data: bytes) -> None:
        pass

    def on_upstream_pause(self, paused: bool) -> None:
        pass

    def flush(self) -> None:
        pass


class MirrorCopy:
    """One mirrored request to the candidate and what came back (its pipeline owns the connection)."""

    __slots__ = ("chunks", "data", "head_only", "headers", "idempotent", "mirror", "pair", "retried", "size",
                 "started", "status")

    def __init__(self, mirror: Mirror, method: bytes, data: bytes, pair: CopyWaiter | None) -> None:
        self.mirror = mirror
        self.pair = pair
        self.head_only = method == b"HEAD"
        self.idempotent = method in _IDEMPOTENT
        self.retried = False
        self.data = data
        self.status = 0
        self.headers: RawHeaders = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.started = 0.0  # when it leaves (Mirror._send)

    def again(self) -> None:
        """Forget what came of the first try (a head, part of a body) before the copy is sent again."""
        self.retried = True
        self.status, self.headers, self.chunks, self.size = 0, [], [], 0

    # -- what its pipeline reports
    def on_response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.headers = headers

    def on_response_body(self, data: bytes) -> None:
        if self.pair is not None:
            self.size += len(data)
            if self.size <= self.mirror.cap:
                self.chunks.append(data)

    def on_response_complete(self, reusable: bool) -> None:
        mirror = self.mirror
        latency = self._end()
        mirror.proxy.stats.mirror_completed += 1
        mirror.proxy.stats.shadow.record(self.status, latency)
        if self.pair is not None:
            if self.size > mirror.cap:
                self.pair.skip("too_large")
            else:
                self.pair.candidate_done((self.status, self.headers, b"".join(self.chunks), latency, None))

    def on_upstream_error(self, kind: str) -> None:
        mirror = self.mirror
        latency = self._end()
        status = 504 if kind in ("timeout", "connect-timeout") else 502
        if mirror.closing:  # the proxy stops: not the candidate's failure
            if self.pair is not None:
                self.pair.skip("stopped")
            return
        mirror.proxy.stats.mirror_failed += 1
        mirror.proxy.stats.shadow.record(status, latency)
        if self.pair is not None:
            self.pair.candidate_done((status, [], b"", latency, error_kind(kind)))

    def _end(self) -> float:
        self.mirror.pool.in_flight -= 1
        return time.monotonic() - self.started


def copy_request(mirror: Mirror, exchange: Exchange, body: bytes) -> bytes:
    """The copy of the user's request, as bytes, marked ``x-switchover-shadow: 1``."""
    if (not exchange.chunked and exchange.role == "stable" and exchange._head is not None
            and exchange.headers[-1] != (b"host", b"")):
        # The user's request head, already built, plus the shadow mark: no second pass over headers.
        return exchange._head[:-2] + b"x-switchover-shadow: 1\r\n\r\n" + body
    lines = [b"%s %s HTTP/1.1\r\n" % (exchange.method, exchange.url)]
    host = mirror.proxy.candidate.host_header
    for name, value in exchange.headers:
        lname = name.lower()
        if lname == b"content-length":
            continue
        lines.append(name + b": " + (value if value or lname != b"host" else host) + b"\r\n")
    peer = exchange.client.peer
    xff = exchange.xff + b", " + peer if exchange.xff else peer
    lines.append(b"x-forwarded-for: %s\r\nx-forwarded-proto: http\r\nx-switchover-shadow: 1\r\n" % xff)
    if body or exchange.content_length >= 0 or exchange.chunked:
        lines.append(b"content-length: %d\r\n" % len(body))
    lines.append(b"\r\n")
    return b"".join(lines) + body
