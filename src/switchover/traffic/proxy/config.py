"""What a running proxy needs, resolved from CLI flags or a plan: plain frozen data."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from switchover.errors import UserError
from switchover.plan.traffic import Ejection, ProxyLimits, Retry


@dataclass(frozen=True)
class UpstreamAddress:
    url: str
    scheme: str  # http | https
    host: str
    port: int
    host_header: bytes  # what the upstream sees as Host when it must be rewritten (no sticky Host passthrough)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def parse_upstream(url: str, what: str) -> UpstreamAddress:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{what}: expected an http:// or https:// URL, got {url!r}")
    if parts.path not in ("", "/") or parts.query:
        raise UserError(f"{what}: {url!r}: give the upstream's origin only (scheme://host:port); paths pass through")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UserError(f"{what}: bad port in {url!r}") from None
    default = (parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = (shown if default else f"{shown}:{port}").encode("ascii")
    return UpstreamAddress(url=url.rstrip("/"), scheme=parts.scheme, host=host, port=port, host_header=host_header)


def parse_host_port(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UserError(f"{what}: expected HOST:PORT, e.g. 127.0.0.1:8080, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ProxyConfig:
    app: str
    listen: tuple[str, int]
    admin: tuple[str, int]
    stable: UpstreamAddress
    candidate: UpstreamAddress
    weight: int = 0
    mirror: int = 0
    mirror_writes: bool = False
    sticky_header: bytes | None = None  # lower-cased header name
    sticky_cookie: str | None = None
    state_file: Path | None = None
    admin_token: str | None = None  # the resolved value (never printed)
    workers: int = 1
    retry: Retry = field(default_factory=Retry)
    ejection: Ejection = field(default_factory=Ejection)
    limits: ProxyLimits = field(default_factory=ProxyLimits)
    plan_path: str | None = None
    drain_timeout: float = 30.0

    def ssl_context(self, upstream: UpstreamAddress) -> ssl.SSLContext | None:
        return ssl.create_default_context() if upstream.tls else None
