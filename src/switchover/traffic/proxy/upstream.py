"""Connections to an upstream (stable or candidate) and their keep-alive pool.

An ``UpstreamConn`` carries one exchange at a time (no pipelining towards upstreams) and reports
the answer to it through the ``Receiver`` methods; the pool keeps idle connections for reuse and
counts requests in flight, which bounds each upstream (beyond the bound the proxy answers 503).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Protocol, cast

import httptools

from switchover.traffic.proxy.config import UpstreamAddress

# Idle upstream connections are closed after this long: below the keep-alive timeouts of common servers
# (Node.js 5 s, nginx 75 s), so that the proxy seldom reuses one the upstream is closing.
POOL_IDLE_TIMEOUT = 4.0


class Receiver(Protocol):
    """What an upstream connection reports to the exchange it carries."""

    def on_informational(self, head: bytes) -> None: ...
    def on_response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None: ...
    def on_response_body(self, data: bytes) -> None: ...
    def on_response_complete(self, reusable: bool) -> None: ...
    def on_upstream_error(self, kind: str) -> None: ...  # "connect", "reset", "timeout", "protocol"
    def on_tunnel_data(self, data: bytes) -> None: ...
    def on_upstream_pause(self, paused: bool) -> None: ...
    def flush(self) -> None: ...  # after each read: write what the answer produced, in one go


class UpstreamConn(asyncio.Protocol):
    __slots__ = (
        "_close_delimited",
        "_framed",
        "_head_only",
        "_headers",
        "_keep_alive",
        "_parser",
        "_reason",
        "_status",
        "_tunnel",
        "alive",
        "deadline",
        "idle_since",
        "pool",
        "receiver",
        "transport",
        "uses",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.receiver: Receiver | None = None
        self.alive = False
        self.deadline: float | None = None  # monotonic time by which the answer's head must arrive
        self.idle_since = 0.0
        self.uses = 0  # requests sent on this connection; a reused one may have been closed by the upstream
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._head_only = False  # HEAD: the answer has no body, whatever its Content-Length says
        self._close_delimited = False
        self._framed = False
        self._keep_alive = True
        self._status = 0
        self._tunnel = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.alive = True

    def data_received(self, data: bytes) -> None:
        if self._tunnel:
            if self.receiver is not None:
                self.receiver.on_tunnel_data(data)
            return
        receiver = self.receiver
        if receiver is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        try:
            self._parser.feed_data(data)
            receiver.flush()
        except httptools.HttpParserUpgrade as exc:
            self._tunnel = True
            receiver.flush()  # the 101 head first
            rest = data[exc.args[0]:]
            if rest and self.receiver is not None:
                self.receiver.on_tunnel_data(rest)
        except httptools.HttpParserError:
            receiver, self.receiver = self.receiver, None
            self.close()
            if receiver is not None:
                receiver.on_upstream_error("protocol")

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.pool.forget(self)
        receiver, self.receiver = self.receiver, None
        if receiver is None:
            return
        if self._tunnel:
            receiver.on_upstream_error("closed")
        elif self._close_delimited:
            receiver.on_response_complete(False)
        else:
            receiver.on_upstream_error("reset")

    def pause_writing(self) -> None:
        if self.receiver is not None:
            self.receiver.on_upstream_pause(True)

    def resume_writing(self) -> None:
        if self.receiver is not None:
            self.receiver.on_upstream_pause(False)

    # -- httptools callbacks
    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        if len(name) in (14, 17):  # cheap filter before lower(): content-length, transfer-encoding
            lname = name.lower()
            if lname == b"content-length" or (lname == b"transfer-encoding" and b"chunked" in value.lower()):
                self._framed = True

    def on_headers_complete(self) -> None:
        self.deadline = None
        status = self._parser.get_status_code()
        self._status = status
        headers, self._headers = self._headers, []
        reason, self._reason = self._reason, b""
        framed, self._framed = self._framed, False
        receiver = self.receiver
        if receiver is None:
            return
        if 100 <= status < 200 and status != 101:
            head = b"HTTP/1.1 %d %s\r\n" % (status, reason) + b"".join(n + b": " + v + b"\r\n" for n, v in headers)
            receiver.on_informational(head + b"\r\n")
            return
        no_body = self._head_only or status in (204, 304) or status == 101
        self._close_delimited = not framed and not no_body
        self._keep_alive = self._parser.should_keep_alive()
        receiver.on_response_head(status, reason, headers)
        if self._head_only and self.receiver is receiver:
            # httptools cannot be told that the answer to HEAD has no body: a fresh parser takes the
            # next answer, and the exchange finishes once the old parser's feed_data has returned.
            self._parser = httptools.HttpResponseParser(self)
            asyncio.get_running_loop().call_soon(self._finish_head, receiver)

    def _finish_head(self, receiver: Receiver) -> None:
        if self.receiver is receiver:
            self._finish(self._keep_alive)

    def on_body(self, body: bytes) -> None:
        if self.receiver is not None:
            self.receiver.on_response_body(body)

    def on_message_complete(self) -> None:
        if self._tunnel or 100 <= self._status < 200:
            return
        self._finish(self._keep_alive)

    def _finish(self, keep_alive: bool) -> None:
        receiver, self.receiver = self.receiver, None
        self._close_delimited = False
        if receiver is not None:
            receiver.on_response_complete(keep_alive and self.alive)

    # -- used by exchanges
    def send(self, receiver: Receiver, data: bytes, head_only: bool, timeout: float) -> None:
        self.receiver = receiver
        self.uses += 1
        self._head_only = head_only
        self.deadline = time.monotonic() + timeout
        assert self.transport is not None
        self.transport.write(data)

    def write(self, data: bytes) -> None:
        if self.transport is not None and self.alive:
            self.transport.write(data)

    def pause_reading(self, paused: bool) -> None:
        if self.transport is not None and self.alive:
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def timed_out(self) -> None:
        receiver, self.receiver = self.receiver, None
        self.close()
        if receiver is not None:
            receiver.on_upstream_error("timeout")

    def detach(self) -> None:
        """The exchange gives up on this connection (the client left, or it is retried): close it."""
        self.receiver = None
        self.close()

    def close(self) -> None:
        self.alive = False
        self.deadline = None
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Keep-alive connections to one upstream, and the count of requests in flight to it."""

    def __init__(self, address: UpstreamAddress, ssl_context: ssl.SSLContext | None, connect_timeout: float,
                 max_in_flight: int, max_idle: int = 256) -> None:
        self.address = address
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.max_in_flight = max_in_flight
        self.max_idle = max_idle
        self.idle: list[UpstreamConn] = []
        self.busy: set[UpstreamConn] = set()
        self.in_flight = 0  # a plain int on the hot path; published to the shared counters by the sweep

    def take(self) -> UpstreamConn | None:
        """The most recently used idle connection (LIFO keeps a few warm), unless it has idled too long."""
        while self.idle:
            conn = self.idle.pop()
            if conn.alive and time.monotonic() - conn.idle_since < POOL_IDLE_TIMEOUT:
                self.busy.add(conn)
                return conn
            conn.close()
        return None

    async def connect(self) -> UpstreamConn:
        """A new connection; raises OSError / TimeoutError when the upstream cannot be reached."""
        loop = asyncio.get_running_loop()
        address = self.address
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConn(self), address.host, address.port, ssl=self.ssl_context,
                                   server_hostname=address.host if self.ssl_context else None),
            self.connect_timeout)
        self.busy.add(conn)
        return conn

    def give_back(self, conn: UpstreamConn) -> None:
        self.busy.discard(conn)
        if conn.alive and len(self.idle) < self.max_idle:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: UpstreamConn) -> None:
        self.busy.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    def sweep(self, now: float) -> None:
        for conn in [c for c in self.busy if c.deadline is not None and c.deadline <= now]:
            conn.timed_out()
        if self.idle and now - self.idle[0].idle_since >= POOL_IDLE_TIMEOUT:
            keep = [c for c in self.idle if now - c.idle_since < POOL_IDLE_TIMEOUT]
            for conn in self.idle:
                if conn not in keep:
                    conn.close()
            self.idle = keep

    def close(self) -> None:
        for conn in [*self.idle, *self.busy]:
            conn.close()
        self.idle.clear()
        self.busy.clear()
