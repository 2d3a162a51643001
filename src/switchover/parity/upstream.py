"""Calls to stable, a second stable and the candidate for ``parity serve`` and ``replay`` (httpx).

Every copy carries ``X-Switchover-Shadow: 1`` so that services can tell shadow traffic apart
(and keep shadow writes out of their database if they honour it).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import httpx

from switchover.parity.compare import Request, is_read
from switchover.plan.parity import Parity
from switchover.traffic.proxy.hooks import Answer, MirrorPair

SHADOW_HEADER = "x-switchover-shadow"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                        "upgrade", "host", "content-length", "expect"})


@dataclass(frozen=True)
class Upstreams:
    stable: str
    candidate: str
    secondary: str | None = None  # a second stable instance
    learn_noise: float = 0.0  # share of reads sent to stable twice when there is no secondary

    @classmethod
    def of(cls, stable: str, candidate: str, parity: Parity) -> Upstreams:
        return cls(stable.rstrip("/"), candidate.rstrip("/"), parity.stable_secondary, parity.learn_noise)


def forward_headers(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    out = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() != SHADOW_HEADER]
    out.append((SHADOW_HEADER, "1"))
    return out


async def fetch(client: httpx.AsyncClient, base: str, request: Request) -> Answer:
    start = time.monotonic()
    try:
        r = await client.request(request.method, base + request.path, headers=forward_headers(request.headers),
                                 content=request.body or None)
    except httpx.TimeoutException:
        return Answer(0, (), b"", time.monotonic() - start, "timeout")
    except httpx.HTTPError as exc:
        kind = "reset" if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError) else "connect"
        return Answer(0, (), b"", time.monotonic() - start, kind)
    # Raw bytes as sent (content-encoding kept): the diff undoes gzip/deflate itself.
    body = await r.aread()
    return Answer(r.status_code, tuple((k.lower(), v) for k, v in r.headers.multi_items()), body,
                  time.monotonic() - start)


class Clients:
    """One httpx client per upstream: httpcore's pool does work per connection for every request,
    so a pool per side stays small and fast."""

    def __init__(self, up: Upstreams, timeout: float, concurrency: int) -> None:
        self.up = up
        self._clients: dict[str, httpx.AsyncClient] = {}
        for base in (up.stable, up.candidate, up.secondary):
            if base and base not in self._clients:
                self._clients[base] = _client(timeout, concurrency)

    def __getitem__(self, base: str) -> httpx.AsyncClient:
        return self._clients[base]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def exchange(clients: Clients, request: Request, at: float) -> tuple[MirrorPair, Answer | None]:
    """Send one request to stable and the candidate (and the noise source), all at once."""
    up = clients.up
    noise_base = up.secondary if up.secondary else (
        up.stable if up.learn_noise and random.random() < up.learn_noise else None)
    if noise_base is not None and not is_read(request.method):
        noise_base = None  # a write is never sent to stable twice
    calls = [fetch(clients[up.stable], up.stable, request), fetch(clients[up.candidate], up.candidate, request)]
    if noise_base is not None:
        calls.append(fetch(clients[noise_base], noise_base, request))
    answers = await asyncio.gather(*calls)
    pair = MirrorPair(request.method, request.path, request.headers, request.body, answers[0], answers[1], at)
    return pair, (answers[2] if noise_base is not None else None)


def _client(timeout: float, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False,
                             headers={"accept-encoding": "identity"})
