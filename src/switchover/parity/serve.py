"""``parity serve`` (Diffy-style): takes mirrored copies from nginx ``mirror``, Istio ``mirror`` or
anything else, answers 202 at once, and compares stable's answer (and a second stable's) with the
candidate's for each copy. Work waits in a bounded queue: when the candidate is slow the queue
fills and further copies are dropped and counted, never piled up without bound.

Its listen address also answers ``GET /api/v1/parity`` (the report, the JSON the proxy's admin API
serves) and ``GET /healthz``, as the proxy's admin address does; copies of those two paths are
therefore not compared.
"""

from __future__ import annotations

import asyncio
import contextlib
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


class _Copy(asyncio.Protocol):
    """One connection from the mirror source; HTTP/1.1 with keep-alive, parsed by httptools."""

    def __init__(self, server: ParityServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                self.transport.close()

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
        if path in _ADMIN and method in ("GET", "HEAD"):
            answer = self.server.admin(path, keep)
            if self.transport is not None:
                self.transport.write(answer if method == "GET" else answer.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
                if not keep:
                    self.transport.close()
            return
        self.server.take(request)
        if self.transport is not None:
            self.transport.write(_ACCEPTED if keep else _ACCEPTED_CLOSE)
            if not keep:
                self.transport.close()


class ParityServer:
    def __init__(self, sink: ParitySink, upstreams: Upstreams, *, concurrency: int, queue_size: int,
                 timeout: float) -> None:
        self.sink = sink
        self.upstreams = upstreams
        self.concurrency = concurrency
        self.timeout = timeout
        self.stats = ServeStats()
        self.queue: asyncio.Queue[Request] = asyncio.Queue(queue_size)
        self._server: asyncio.Server | None = None
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

    def admin(self, path: str, keep: bool) -> bytes:
        """The whole HTTP answer to ``GET /api/v1/parity`` or ``GET /healthz``."""
        if path == "/healthz":
            body = b'{"ok": true}'
        else:
            self.flush_counters()
            report = self.sink.report()
            report["serve"] = {**self.stats.to_json(), "queued": self.queue.qsize()}
            body = json.dumps(report).encode()
        return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
                % (len(body), b"" if keep else b"connection: close\r\n", body))

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._clients = Clients(self.upstreams, self.timeout, self.concurrency)
        self._server = await loop.create_server(lambda: _Copy(self), host, port)
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]
        return int(self._server.sockets[0].getsockname()[1])

    async def _work(self) -> None:
        while True:
            request = await self.queue.get()
            try:
                pair, secondary = await exchange(self._clients, request, time.time())
                self.stats.exchanged += 1
                self.sink.submit_exchange(pair, secondary)
            finally:
                self.queue.task_done()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._clients.aclose()
        self.flush_counters()

    def flush_counters(self) -> None:
        """Add drops and skipped writes since the last call to the store's counters."""
        dropped, skipped = self.stats.dropped - self._saved[0], self.stats.writes_skipped - self._saved[1]
        if dropped or skipped:
            self.sink.store.record([], {"dropped": dropped, "writes_skipped": skipped})
            self._saved = (self.stats.dropped, self.stats.writes_skipped)
