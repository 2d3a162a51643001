"""Readiness before the first weight change: the candidate answers its readiness path with 2xx,
and stable its health path (``stable.health``, else ``stable.ready``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from switchover.plan import Plan


@dataclass(frozen=True)
class Probe:
    role: str
    url: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "url": self.url, "ok": self.ok, "detail": self.detail}


def probe(role: str, url: str, timeout: float) -> Probe:
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return Probe(role, url, False, f"{exc.__class__.__name__}: {exc}")
    ok = 200 <= response.status_code < 300
    return Probe(role, url, ok, f"HTTP {response.status_code}")


def check_ready(plan: Plan, timeout: float | None = None) -> list[Probe]:
    """Both probes; the run may move traffic only when every one is ok."""
    limit = timeout if timeout is not None else min(plan.timeouts.server, 5.0)
    stable_path = plan.stable.health or plan.stable.ready
    return [probe("candidate", plan.candidate.url + plan.candidate.ready, limit),
            probe("stable", plan.stable.url + stable_path, limit)]
