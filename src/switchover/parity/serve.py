"""``parity serve`` (Diffy-style): takes mirrored copies from nginx ``mirror``, Istio ``mirror`` or
anything else, answers 202 at once, and compares stable's answer (and a second stable's) with the
candidate's for each copy. Work waits in a bounded queue: when the candidate is slow the queue
fills and further copies are dropped and counted, never piled up without bound.

The report (``GET /api/v1/parity``, the JSON the proxy's admin API serves, plus ``serve``) and
``GET /healthz`` are answered on a separate admin address when one is given (``start_admin``): the
listen address then takes every request as a copy, those two paths included. Without one, the
listen address answers them itself, as before, and copies of exactly those two paths are not
compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httptools

from switchover.parity.compare import Request, is_read
from switchover.parity.sink import ParitySink
from switchover.parity.upstream import Clients, Upstreams, exchange

_ACCEPTED = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"
_ACCEPTED_CLOSE = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_MAX_BODY = 8 * 1024 * 1024
_ADMIN = frozenset({"/api/v1/parity", "/healthz"})
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


def _http(status: int, body: bytes, *, keep: bool, head: bool = False) -> bytes:
    """A whole JSON answer; ``head`` keeps the headers (content-length included) and drops the body."""
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
            % (status, _REASONS.get(status, b"-"), len(body), b"" if keep else b"connection: close\r\n",
               b"" if head else body))


@dataclass
class ServeStats:
    received: int = 0
    dropped: int = 0  # queue full
    writes_skipped: int = 0  # POST/PATCH/... while mirror_writes is false
    exchanged: int = 0
    started: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"received": self.received, "dropped": self.dropped, "writes_skipped": self.writes_skipped,
                "exchanged": self.exchanged}


class _Conn(asyncio.Protocol):
    """A connection to one of the server's addresses: HTTP/1.1 with keep-alive, parsed by httptools."""

    malformed = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"

    def __init__(self, server: ParityServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.server.connections.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(self.malformed)
                self.transport.close()


class _Copy(_Conn):
    """One connection from the mirror source."""

    def __init__(self, server: ParityServer) -> None:
        super().__init__(server)
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        if len(self.body) < _MAX_BODY:
            self.body += body

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("ascii", errors="replace").upper()
        request = Request(method, self.url.decode("latin-1") or "/", tuple(self.headers), bytes(self.body))
        keep = self.parser.should_keep_alive()
        self._reset()
        path = request.path.split("?", 1)[0]
        if not self.server.separate_admin and path in _ADMIN and method in ("GET", "HEAD"):
            status, body = self.server.admin(method, path, dict(request.headers).get("authorization"))
            if self.transport is not None:
                self.transport.write(_http(status, body, keep=keep, head=method == "HEAD"))
                if not keep:
                    self.transport.close()
            return
        self.server.take(request)
        if self.transport is not None:
            self.transport.write(_ACCEPTED if keep else _ACCEPTED_CLOSE)
            if not keep:
                self.transport.close()


class _AdminConn(_Conn):
    """One connection to the separate admin address: the report and health only, 404 for the rest."""

    def __init__(self, server: ParityServer) -> None:
        super().__init__(server)
        self.url = b""
        self.authorization: str | None = None
        self.malformed = _http(400, b'{"error": "malformed request"}', keep=False)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.authorization = value.decode("latin-1")

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("ascii", errors="replace").upper()
        path = self.url.decode("latin-1").split("?", 1)[0] or "/"
        self.url = b""
        authorization, self.authorization = self.authorization, None
        keep = self.parser.should_keep_alive()
        status, body = self.server.admin(method, path, authorization)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_http(status, body, keep=keep, head=method == "HEAD"))
            if not keep:
                self.transport.close()


class ParityServer:
    def __init__(self, sink: ParitySink, upstreams: Upstreams, *, concurrency: int, queue_size: int,
                 timeout: float, admin_token: str | None = None) -> None:
        self.sink = sink
        # The report holds redacted samples of answers: with a token, it is for those who have it.
        self._expected = None if admin_token is None else "Bearer " + admin_token
        self.upstreams = upstreams
        self.concurrency = concurrency
        self.timeout = timeout
        self.stats = ServeStats()
        self.queue: asyncio.Queue[Request] = asyncio.Queue(queue_size)
        self._server: asyncio.Server | None = None
        self._admin_server: asyncio.Server | None = None
        self._clients: Clients | None = None
        # Open connections on both addresses, closed by stop(): from Python 3.12 on, wait_closed()
        # waits for them, and a mirror source or monitor keeps its connections alive.
        self.connections: set[asyncio.Transport] = set()
        self._workers: list[asyncio.Task[None]] = []
        self.mirror_writes = sink.parity.mirror_writes
        self._saved = (0, 0)

    def take(self, request: Request) -> None:
        self.stats.received += 1
        if not self.mirror_writes and not is_read(request.method):
            self.stats.writes_skipped += 1
            return
        try:
            self.queue.put_nowait(request)
        except asyncio.QueueFull:
            self.stats.dropped += 1

    @property
    def separate_admin(self) -> bool:
        return self._admin_server is not None

    def admin(self, method: str, path: str, authorization: str | None = None) -> tuple[int, bytes]:
        """Status and JSON body for a request to the admin paths (on either address)."""
        if path not in _ADMIN:
            return 404, json.dumps({"error": f"no such endpoint: {path} (this address answers "
                                             "GET /api/v1/parity and GET /healthz)"}).encode()
        if method not in ("GET", "HEAD"):
            return 405, b'{"error": "use GET"}'
        if path == "/healthz":
            return 200, b'{"ok": true}'
        if self._expected is not None and not hmac.compare_digest((authorization or "").encode("latin-1"),
                                                                 self._expected.encode("latin-1")):
            return 401, b'{"error": "missing or wrong bearer token (Authorization: Bearer ...)"}'
        self.flush_counters()
        report = self.sink.report()
        report["serve"] = {**self.stats.to_json(), "queued": self.queue.qsize()}
        return 200, json.dumps(report).encode()

    async def start_admin(self, host: str, port: int) -> int:
        """Answer the report and health on their own address (before ``start``): the listen address
        then compares every copy. Returns the port bound (``port`` may be 0); OSError when it cannot."""
        assert self._server is None, "start_admin() comes before start()"
        loop = asyncio.get_running_loop()
        self._admin_server = await loop.create_server(lambda: _AdminConn(self), host, port)
        return int(self._admin_server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> int:
        """Take copies on host:port; returns the port bound (``port`` may be 0); OSError when it cannot."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Copy(self), host, port)
        self._clients = Clients(self.upstreams, self.timeout, self.concurrency)
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]
        return int(self._server.sockets[0].getsockname()[1])

    async def _work(self) -> None:
        assert self._clients is not None
        while True:
            request = await self.queue.get()
            try:
                pair, secondary = await exchange(self._clients, request, time.time())
                self.stats.exchanged += 1
                self.sink.submit_exchange(pair, secondary)
            finally:
                self.queue.task_done()

    async def stop(self) -> None:
        """Close both addresses, end the upstream calls in flight, save the counters. Safe after a
        failed start."""
        for server in (self._server, self._admin_server):
            if server is not None:
                server.close()
        for transport in list(self.connections):
            transport.close()
        for server in (self._server, self._admin_server):
            if server is not None:
                await server.wait_closed()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._clients is not None:
            await self._clients.aclose()
        self.flush_counters()

    def flush_counters(self) -> None:
        """Add drops and skipped writes since the last call to the store's counters."""
        dropped, skipped = self.stats.dropped - self._saved[0], self.stats.writes_skipped - self._saved[1]
        if dropped or skipped:
            self.sink.store.record([], {"dropped": dropped, "writes_skipped": skipped})
            self._saved = (self.stats.dropped, self.stats.writes_skipped)
