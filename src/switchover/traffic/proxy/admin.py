"""The admin API (DESIGN.md, "Proxy admin API"): split, stats, metrics, parity, health.

A small HTTP/1.1 server of its own on the admin address, loopback by default; with a token, every
endpoint but ``/healthz`` needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from pathlib import Path
from typing import Any, cast

import httptools
from prometheus_client import CollectorRegistry, generate_latest

from switchover.traffic.proxy.dataplane import Proxy
from switchover.traffic.proxy.routing import parse_split_update
from switchover.traffic.proxy.stats import StatsCollector

_MAX_BODY = 64 * 1024
_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
            405: b"Method Not Allowed", 413: b"Content Too Large", 500: b"Internal Server Error"}


class Admin:
    def __init__(self, proxy: Proxy, token: str | None, state_file: Path | None) -> None:
        self.proxy = proxy
        self.token = token
        self.state_file = state_file
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatsCollector(proxy.snapshot))

    def handle(self, method: str, path: str, authorization: bytes | None, body: bytes) -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        if path != "/healthz" and self.token is not None:
            expected = b"Bearer " + self.token.encode()
            if authorization is None or not hmac.compare_digest(authorization, expected):
                return _json(401, {"error": "missing or wrong bearer token (Authorization: Bearer ...)"})
        proxy = self.proxy
        if path == "/healthz":
            return _only_get(method) or _json(200, {"status": "ok"})
        if path == "/api/v1/split":
            if method == "GET":
                return _json(200, proxy.split.to_json())
            if method != "PUT":
                return _json(405, {"error": "use GET or PUT"})
            try:
                update = json.loads(body or b"null")
                split = parse_split_update(proxy.split, update)
            except ValueError as exc:  # JSONDecodeError is a ValueError
                return _json(400, {"error": str(exc)})
            try:
                proxy.set_split(split, self.state_file)
            except OSError as exc:
                return _json(500, {"error": f"could not save the split to {self.state_file}: {exc.strerror}; "
                                            "nothing changed"})
            return _json(200, split.to_json())
        if path == "/api/v1/stats":
            return _only_get(method) or _json(200, proxy.snapshot())
        if path == "/metrics":
            return _only_get(method) or (200, "text/plain; version=0.0.4; charset=utf-8",
                                         generate_latest(self.registry))
        if path == "/api/v1/parity":
            if proxy.sink is None:
                return _only_get(method) or _json(200, {"enabled": False})
            return _only_get(method) or _json(200, proxy.sink.report())
        return _json(404, {"error": f"no such endpoint: {path}"})


def _only_get(method: str) -> tuple[int, str, bytes] | None:
    return None if method in ("GET", "HEAD") else _json(405, {"error": "use GET"})


def _json(status: int, payload: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(payload).encode()


class AdminConn(asyncio.Protocol):
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.body: list[bytes] = []
        self.size = 0
        self.authorization: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._reply(400, "application/json", b'{"error": "malformed request"}', close=True)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.authorization = value

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= _MAX_BODY:
            self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        if self.size > _MAX_BODY:
            status, ctype, payload = _json(413, {"error": "body too large"})
        else:
            try:
                status, ctype, payload = self.admin.handle(method, self.url.decode("latin-1"), self.authorization,
                                                           b"".join(self.body))
            except Exception as exc:  # keep the admin API up; say what broke
                status, ctype, payload = _json(500, {"error": f"{type(exc).__name__}: {exc}"})
        self._reply(status, ctype, b"" if method == "HEAD" else payload,
                    close=not self.parser.should_keep_alive(), length=len(payload))
        self._reset()

    def _reply(self, status: int, ctype: str, payload: bytes, close: bool, length: int | None = None) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n"
                % (status, _REASONS.get(status, b"-"), ctype.encode(), len(payload) if length is None else length,
                   b"connection: close\r\n" if close else b""))
        self.transport.write(head + payload)
        if close:
            self.transport.close()
