"""The user-facing side: one ``ClientConn`` per client connection, one ``Exchange`` per request.

Callback-based (asyncio.Protocol + httptools) rather than coroutines per request: the hot path is a
handful of method calls. Bodies stream both ways with backpressure (a full write buffer pauses
reading on the other side); a copy of the request body is kept only up to the copy cap, for a retry
on stable and for the mirror.
"""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from switchover.traffic.proxy.routing import cookie_value
from switchover.traffic.proxy.upstream import Pool, UpstreamConn

if TYPE_CHECKING:
    from switchover.traffic.proxy.dataplane import Proxy
    from switchover.traffic.proxy.mirror import PairSlot

# Hop-by-hop headers (RFC 9110 7.6.1): never forwarded; the proxy writes its own framing.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade"})
_SPECIAL_LENGTHS = frozenset(len(n) for n in (*HOP_BY_HOP, b"content-length"))
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS"})
_CONNECTION_TOKENS = frozenset({b"keep-alive", b"close", b"upgrade"})

# Why a client connection's reading is paused (bits): any set bit keeps it paused.
_PAUSE_PIPELINE = 1  # too many pipelined requests waiting
_PAUSE_PENDING = 2  # too much body buffered while the upstream connection is being made
_PAUSE_UPSTREAM = 4  # the upstream does not read the body fast enough
_MAX_PIPELINE = 16
_MAX_PENDING = 1 << 20

_REASONS = {400: b"Bad Request", 500: b"Internal Server Error", 408: b"Request Timeout", 413: b"Content Too Large",
            431: b"Request Header Fields Too Large", 502: b"Bad Gateway", 503: b"Service Unavailable",
            504: b"Gateway Timeout"}


class _HeadTooLarge(Exception):
    pass


class ClientConn(asyncio.Protocol):
    """One client connection: parses requests (pipelined ones queue) and writes answers in order."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = b""
        self.queue: deque[Exchange] = deque()  # queue[0] is being answered
        self.parsing: Exchange | None = None  # receiving its body
        self.head_started: float | None = None
        self.idle_since = time.monotonic()
        self.head_bytes = 0
        self.paused = 0
        self.write_paused = False
        self.closed = False
        self.upgrading: Exchange | None = None
        self.out: list[bytes] = []
        self._reset_head()

    def _reset_head(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._xff: bytes | None = None
        self._has_host = False
        self._chunked = False
        self._content_length = -1
        self._connection = b""
        self._sticky: bytes | None = None
        self._cookie = b""
        self._idempotency_key = False
        self._head_size = 0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""
        self.proxy.conns.add(self)

    def data_received(self, data: bytes) -> None:
        upgrading = self.upgrading
        if upgrading is not None:
            upgrading.on_tunnel_request_data(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0]:]
            if self.upgrading is not None and rest:
                self.upgrading.on_tunnel_request_data(rest)
            return
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadTooLarge):
                self.fail(431, "request header fields too large")
            elif isinstance(cause, ValueError):  # e.g. a Content-Length that is not a number
                self.fail(400, "malformed request header")
            else:  # a bug in the proxy: say so, and leave a trace for the operator
                traceback.print_exception(cause or exc, file=sys.stderr)
                self.fail(500, "internal error in the proxy (see its log)")
            return
        except httptools.HttpParserError as exc:
            self.fail(400, f"malformed request ({exc})")
            return
        if self.head_started is not None:
            self.head_bytes += len(data)
            if self.head_bytes > self.proxy.limits.max_header_bytes:
                self.fail(431, "request header fields too large")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.conns.discard(self)
        for exchange in self.queue:
            exchange.abort()
        self.queue.clear()
        if self.parsing is not None:
            self.parsing.abort()
            self.parsing = None

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.queue:
            self.queue[0].pause_upstream_reading(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.queue:
            self.queue[0].pause_upstream_reading(False)

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self.head_started = time.monotonic()
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.proxy.limits.max_header_bytes:
            raise _HeadTooLarge
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"transfer-encoding":
                self._chunked = b"chunked" in value.lower()
            elif lname == b"connection":
                self._connection += b"," + value.lower()
            elif lname == b"upgrade":
                self._headers.append((name, value))  # kept only when the request upgrades (filtered below)
            return
        if lname == b"x-forwarded-for":
            self._xff = value if self._xff is None else self._xff + b", " + value
            return
        if lname == b"x-forwarded-proto":
            return
        if lname == b"host":
            self._has_host = True
        elif lname == b"content-length":
            self._content_length = int(value)
        elif lname == b"cookie":
            self._cookie += value + b";"
        elif lname == b"idempotency-key":
            self._idempotency_key = True
        if lname == self.proxy.sticky_header:
            self._sticky = value
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        arrived = self.head_started or time.monotonic()
        self.head_started = None
        parser = self.parser
        proxy = self.proxy
        upgrade = parser.should_upgrade()
        headers = self._headers
        if not upgrade:
            headers = [h for h in headers if h[0].lower() != b"upgrade"]
        if self._connection:
            extra = {t.strip() for t in self._connection.split(b",")} - _CONNECTION_TOKENS - {b""}
            if extra:  # headers named in Connection are hop-by-hop too
                headers = [h for h in headers if h[0].lower() not in extra]
        if not self._has_host:
            headers.append((b"host", b""))  # filled per upstream when the head is built
        sticky = self._sticky
        if sticky is None and proxy.sticky_cookie is not None and self._cookie:
            sticky = cookie_value(self._cookie, proxy.sticky_cookie)
        exchange = Exchange(self, parser.get_method(), self._url, parser.get_http_version(), headers, self._xff,
                            self._chunked, self._content_length, parser.should_keep_alive(), upgrade, arrived,
                            sticky, self._idempotency_key)
        self._reset_head()
        self.parsing = exchange
        self.queue.append(exchange)
        if upgrade:
            self.upgrading = exchange
        if exchange.content_length > proxy.limits.max_body_bytes:
            exchange.respond_local(413, "request body larger than the proxy's limit", close=True)
            return
        if len(self.queue) == 1:
            exchange.start()
        elif len(self.queue) > _MAX_PIPELINE:
            self.pause(_PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.on_request_body(body)

    def on_message_complete(self) -> None:
        exchange, self.parsing = self.parsing, None
        self.idle_since = time.monotonic()
        if exchange is not None:
            exchange.on_request_complete()

    # -- used by exchanges
    def write(self, data: bytes) -> None:
        if self.out:
            self.flush()
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def buffer(self, data: bytes) -> None:
        """Collect an answer's pieces; flushed in one write (one syscall) per upstream read."""
        self.out.append(data)

    def flush(self) -> None:
        out = self.out
        if out:
            self.out = []
            if self.transport is not None and not self.closed:
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def exchange_done(self, exchange: Exchange) -> None:
        if self.queue and self.queue[0] is exchange:
            self.queue.popleft()
        self.idle_since = time.monotonic()
        if exchange.close_after or not exchange.keep_alive or (self.proxy.draining and not self.queue
                                                               and self.parsing is None):
            self.close()
            return
        if len(self.queue) <= _MAX_PIPELINE:
            self.resume(_PAUSE_PIPELINE)
        if self.queue:
            self.queue[0].start()

    def fail(self, status: int, message: str) -> None:
        """An answer from the proxy itself that ends the connection (bad request, header limits, slowloris)."""
        if self.closed:
            return
        if not self.queue or not self.queue[0].sent_head:
            self.write(_local_response(status, message, close=True))
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.flush()
            self.closed = True
            self.transport.close()

    def sweep(self, now: float, header_timeout: float, idle_timeout: float) -> None:
        if self.head_started is not None and now - self.head_started > header_timeout:
            self.fail(408, "request headers not received in time")
        elif not self.queue and self.parsing is None and now - self.idle_since > idle_timeout:
            self.close()


def _local_response(status: int, message: str, close: bool, extra: bytes = b"") -> bytes:
    body = f"switchover proxy: {message}\n".encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n%s%s\r\n%s"
            % (status, _REASONS.get(status, b"Error"), len(body), extra,
               b"connection: close\r\n" if close else b"", body))


class Exchange:
    """One request and its answer: routing, the upstream attempt(s), the retry on stable, streaming."""

    __slots__ = (
        "_head",
        "arrived",
        "attempt",
        "body_done",
        "chunked",
        "chunked_out",
        "client",
        "close_after",
        "conn",
        "content_length",
        "copy",
        "copy_size",
        "done",
        "headers",
        "idempotent",
        "keep_alive",
        "method",
        "mirror_wanted",
        "pair",
        "pending",
        "pending_size",
        "pool",
        "probe",
        "proxy",
        "replayed",
        "retried",
        "role",
        "sent_head",
        "status",
        "tunnel_buffer",
        "upgrade",
        "url",
        "version",
        "xff",
    )

    def __init__(self, client: ClientConn, method: bytes, url: bytes, version: str,
                 headers: list[tuple[bytes, bytes]], xff: bytes | None, chunked: bool, content_length: int,
                 keep_alive: bool, upgrade: bool, arrived: float, sticky: bytes | None, idempotency_key: bool) -> None:
        proxy = client.proxy
        self.client = client
        self.proxy = proxy
        self.method = method
        self.url = url
        self.version = version
        self.headers = headers
        self.xff = xff
        self.chunked = chunked
        self.content_length = content_length
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.arrived = arrived
        self.idempotent = method in IDEMPOTENT or idempotency_key
        has_body = chunked or content_length > 0
        self.body_done = not has_body
        self.copy: list[bytes] | None = [] if content_length <= proxy.limits.body_copy_cap else None
        self.copy_size = 0
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.conn: UpstreamConn | None = None
        self.pool: Pool | None = None
        self.attempt = 0
        self.retried = False
        self.replayed = False
        self.probe = False
        self.sent_head = False
        self.chunked_out = False
        self.close_after = upgrade or proxy.draining
        self.done = False
        self.status = 0
        self.tunnel_buffer: list[bytes] | None = [] if upgrade else None
        self._head: bytes | None = None
        self.role, self.probe = proxy.route(sticky, arrived)
        self.mirror_wanted = (self.role == "stable" and not upgrade and (self.idempotent or proxy.mirror_writes)
                              and proxy.sample_mirror())
        self.pair: PairSlot | None = proxy.mirror.new_pair(self) if self.mirror_wanted else None

    # -- request side
    def start(self) -> None:
        """Become the exchange being answered on its connection: pick a connection and send."""
        if self.done:
            return
        proxy = self.proxy
        pool = proxy.canary_pool if self.role == "canary" else proxy.stable_pool
        if pool.in_flight >= pool.max_in_flight:
            proxy.stats.overload_rejected += 1
            if self.retried:
                proxy.retry_budget.retry_done()
            if self.probe:
                proxy.probe_abandoned()
            self.respond_local(503, f"{'candidate' if self.role == 'canary' else 'stable'} has too many requests "
                               "in flight; retry shortly", extra=b"retry-after: 1\r\n")
            return
        pool.in_flight += 1
        self.pool = pool
        self.attempt += 1
        conn = None if self.upgrade else pool.take()
        if conn is not None:
            self._send(conn)
        else:
            proxy.loop.create_task(self._connect(pool, self.attempt))

    async def _connect(self, pool: Pool, attempt: int) -> None:
        try:
            conn = await pool.connect()
        except (OSError, TimeoutError) as exc:
            if attempt == self.attempt and not self.done:
                self.on_upstream_error("connect-timeout" if isinstance(exc, TimeoutError) else "connect")
            return
        if attempt != self.attempt or self.done:
            pool.give_back(conn)
            return
        self._send(conn)

    def _request_head(self) -> bytes:
        if self._head is None:
            host_header = (self.proxy.candidate.host_header if self.role == "canary"
                           else self.proxy.stable.host_header)
            lines = [b"%s %s HTTP/1.1\r\n" % (self.method, self.url)]
            for name, value in self.headers:
                if not value and name == b"host":  # the client sent none (HTTP/1.0): the upstream's
                    value = host_header
                lines += (name, b": ", value, b"\r\n")  # parts joined once below: no bytes made per header
            peer = self.client.peer
            lines.append(b"x-forwarded-for: " + (self.xff + b", " + peer if self.xff else peer) + b"\r\n"
                         b"x-forwarded-proto: http\r\n")
            if self.chunked:
                lines.append(b"transfer-encoding: chunked\r\n")
            if self.upgrade:
                lines.append(b"connection: upgrade\r\n")
            lines.append(b"\r\n")
            self._head = b"".join(lines)
        return self._head

    def _send(self, conn: UpstreamConn) -> None:
        self.conn = conn
        body = self.copy if (self.retried or self.replayed) and self.copy is not None else self.pending
        if self.chunked:
            data = b"".join([self._request_head(), *(b"%x\r\n%s\r\n" % (len(c), c) for c in body if c)])
            if self.body_done:
                data += b"0\r\n\r\n"
        else:
            data = b"".join([self._request_head(), *body])
        self.pending = []
        if self.pending_size:
            self.pending_size = 0
            self.client.resume(_PAUSE_PENDING)
        conn.send(self, data, self.method == b"HEAD", self.proxy.limits.response_timeout)
        if self.client.write_paused:
            conn.pause_reading(True)
        if self.tunnel_buffer:
            conn.write(b"".join(self.tunnel_buffer))
            self.tunnel_buffer = []

    def on_request_body(self, data: bytes) -> None:
        if self.copy is not None:
            self.copy_size += len(data)
            if self.copy_size > self.proxy.limits.body_copy_cap:
                self.copy = None  # too big to keep: streamed only, neither retried nor mirrored
            else:
                self.copy.append(data)
        if self.done:
            return
        if self.conn is not None:
            self.conn.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
        else:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size > _MAX_PENDING:
                self.client.pause(_PAUSE_PENDING)

    def on_request_complete(self) -> None:
        self.body_done = True
        if self.chunked and self.conn is not None and not self.done:
            self.conn.write(b"0\r\n\r\n")
        if self.mirror_wanted:
            self.proxy.mirror.dispatch(self)

    def on_tunnel_request_data(self, data: bytes) -> None:
        if self.conn is not None and self.sent_head:
            self.conn.write(data)
        elif self.tunnel_buffer is not None:
            self.tunnel_buffer.append(data)

    # -- upstream side (Receiver)
    def on_informational(self, head: bytes) -> None:
        if not self.sent_head and self.version == "1.1":
            self.client.buffer(head)

    def on_response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        proxy = self.proxy
        if self.role == "canary":
            if status >= 500:
                now = time.monotonic()
                proxy.candidate_failed(now)
                if self._may_retry(now):
                    self._retry_on_stable(status, now)
                    return
            else:
                proxy.candidate_ok()
        self.status = status
        out = [b"HTTP/1.1 %d %s\r\n" % (status, reason or b"-")]
        has_length = False
        for name, value in headers:
            if len(name) in _SPECIAL_LENGTHS:  # cheap filter before lower()
                lname = name.lower()
                if lname in HOP_BY_HOP:
                    if status == 101 and lname == b"upgrade":
                        out += (name, b": ", value, b"\r\n")
                    continue
                if lname == b"content-length":
                    has_length = True
            out += (name, b": ", value, b"\r\n")  # parts joined once below: no bytes made per header
        no_body = self.method == b"HEAD" or status in (204, 304) or status < 200
        if status == 101:
            out.append(b"connection: upgrade\r\n")
        elif not no_body and not has_length:
            if self.version == "1.1":
                self.chunked_out = True
                out.append(b"transfer-encoding: chunked\r\n")
            else:
                self.close_after = True  # HTTP/1.0 client: the end of the body is the end of the connection
        if status != 101:
            if self.close_after or not self.keep_alive:
                out.append(b"connection: close\r\n")
            elif self.version == "1.0":
                out.append(b"connection: keep-alive\r\n")
        out.append(b"\r\n")
        self.client.buffer(b"".join(out))
        self.sent_head = True
        if self.pair is not None:
            self.pair.stable_head(status, headers)
        if status == 101 and self.conn is not None:
            if self.tunnel_buffer:
                self.conn.write(b"".join(self.tunnel_buffer))
            self.tunnel_buffer = None

    def on_response_body(self, data: bytes) -> None:
        if self.chunked_out:
            self.client.buffer(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.client.buffer(data)
        if self.pair is not None:
            self.pair.stable_body(data)

    def on_response_complete(self, reusable: bool) -> None:
        if self.done:
            return
        if self.chunked_out:
            self.client.buffer(b"0\r\n\r\n")
        self.client.flush()
        conn, self.conn = self.conn, None
        # An upstream that answered before the whole body reached it has a half-sent request: not reusable.
        self._release(conn, reusable and self.body_done)
        now = time.monotonic()
        self._record(self.status, now)
        if self.pair is not None:
            self.pair.stable_done(self.status, now - self.arrived, None)
        self.done = True
        self.client.exchange_done(self)

    def on_upstream_error(self, kind: str) -> None:
        if self.done:
            return
        if kind == "closed" and self.status == 101:  # the tunnel ended
            self._finish_tunnel()
            return
        status = 504 if kind in ("timeout", "connect-timeout") else 502
        conn, self.conn = self.conn, None
        self._release(conn, False)
        if (kind == "reset" and conn is not None and conn.uses > 1 and not self.sent_head and not self.replayed
                and self._replayable()):
            # A reused keep-alive connection the upstream closed as we sent: the request never got there.
            # Send it again on a fresh connection, same side; nothing is counted.
            self.replayed = True
            self.start()
            return
        now = time.monotonic()
        proxy = self.proxy
        if self.role == "canary" and not self.sent_head:
            proxy.candidate_failed(now)
            if self._may_retry(now):
                self._retry_on_stable(status, now)
                return
        self._record(status, now)
        if self.pair is not None:
            self.pair.stable_done(status, now - self.arrived, kind)
        if self.sent_head:  # mid-body: the client cannot be told otherwise
            self.done = True
            self.client.flush()
            self.client.close()
            return
        side = "candidate" if self.role == "canary" else "stable"
        message = {"connect": f"{side} refused the connection", "connect-timeout": f"{side} connect timed out",
                   "timeout": f"{side} did not answer in time", "reset": f"{side} closed the connection",
                   "protocol": f"{side} sent a malformed answer"}.get(kind, f"{side} failed")
        self.respond_local(status, message, close=self.upgrade)

    def on_tunnel_data(self, data: bytes) -> None:
        self.client.write(data)

    def flush(self) -> None:
        self.client.flush()

    def on_upstream_pause(self, paused: bool) -> None:
        if paused:
            self.client.pause(_PAUSE_UPSTREAM)
        else:
            self.client.resume(_PAUSE_UPSTREAM)

    # -- helpers
    def _replayable(self) -> bool:
        """Idempotent, and its body is all in the copy (or will be: a known length within the cap)."""
        if not self.idempotent or self.upgrade or self.copy is None:
            return False
        # A chunked body still arriving might outgrow the copy: it cannot be replayed.
        return self.body_done or 0 <= self.content_length <= self.proxy.limits.body_copy_cap

    def _may_retry(self, now: float) -> bool:
        proxy = self.proxy
        if not (proxy.retry_enabled and not self.retried and self._replayable()):
            return False
        if not proxy.retry_budget.try_retry(proxy.stable_pool.in_flight + proxy.canary_pool.in_flight):
            proxy.stats.retries_budget_exhausted += 1
            return False
        return True

    def _retry_on_stable(self, status: int, now: float) -> None:
        """The candidate failed an idempotent request: count it as a canary error, serve it from stable."""
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.detach()
            self._release(conn, False)
        self._record(status, now)
        self.proxy.stats.retries_attempted += 1
        self.retried = True
        self.role = "stable"
        self.probe = False
        self._head = None
        self.start()

    def _release(self, conn: UpstreamConn | None, reusable: bool) -> None:
        pool = self.pool
        if pool is not None:
            pool.in_flight -= 1
            self.pool = None
            if self.retried:
                self.proxy.retry_budget.retry_done()
            if conn is not None:
                if reusable:
                    pool.give_back(conn)
                else:
                    pool.busy.discard(conn)
                    conn.close()

    def _record(self, status: int, now: float) -> None:
        proxy = self.proxy
        proxy.stats.role(self.role).record(status, now - self.arrived)
        if self.retried and self.role == "stable" and status < 500:
            proxy.stats.retries_succeeded += 1

    def _finish_tunnel(self) -> None:
        self.done = True
        self._release(None, False)
        self._record(101, time.monotonic())
        self.client.close()

    def respond_local(self, status: int, message: str, close: bool = False, extra: bytes = b"") -> None:
        """Answer from the proxy itself (413, 502, 503, 504); the connection stays usable unless ``close``."""
        self.done = True
        self.close_after = self.close_after or close or not self.body_done
        self.client.write(_local_response(status, message, self.close_after or not self.keep_alive, extra))
        self.sent_head = True
        if self.pair is not None:
            self.pair.cancel()
        self.client.exchange_done(self)

    def pause_upstream_reading(self, paused: bool) -> None:
        if self.conn is not None:
            self.conn.pause_reading(paused)

    def abort(self) -> None:
        """The client went away."""
        if self.done:
            return
        self.done = True
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.detach()
        if self.pool is not None:
            if self.status == 101:
                self._record(101, time.monotonic())
            elif self.sent_head or conn is not None:
                self._record(499, time.monotonic())  # nginx's "client closed request"
            self._release(conn, False)
        if self.probe:
            self.proxy.probe_abandoned()
        if self.pair is not None:
            self.pair.cancel()
