"""The proxy's shared state: the split in force, upstream pools, counters, ejection, retry budget."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from switchover.metrics.base import LATENCY_BOUNDS, ROLES
from switchover.traffic.proxy.config import ProxyConfig
from switchover.traffic.proxy.health import Ejection, RetryBudget
from switchover.traffic.proxy.hooks import MirrorSink
from switchover.traffic.proxy.mirror import Mirror
from switchover.traffic.proxy.routing import Split, on_candidate, sticky_point
from switchover.traffic.proxy.state import save_split
from switchover.traffic.proxy.stats import ProxyStats
from switchover.traffic.proxy.upstream import Pool

if TYPE_CHECKING:
    from switchover.traffic.proxy.server import ClientConn

IDLE_TIMEOUT = 75.0  # seconds a keep-alive client connection may stay idle (nginx's keepalive_timeout)


class Proxy:
    def __init__(self, config: ProxyConfig, split: Split, sink: MirrorSink | None,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.split = split
        self.limits = config.limits
        self.stable = config.stable
        self.candidate = config.candidate
        self.sticky_header = config.sticky_header
        self.sticky_cookie = config.sticky_cookie
        self.mirror_writes = config.mirror_writes
        self.retry_enabled = config.retry.enabled
        self.retry_budget = RetryBudget(config.retry.budget)
        self.ejection = Ejection(config.ejection.consecutive_failures, config.ejection.base_time)
        self.stats = ProxyStats(config.app, time.time())
        limits = config.limits
        self.stable_pool = Pool(config.stable, config.ssl_context(config.stable), limits.connect_timeout,
                                limits.max_in_flight)
        self.canary_pool = Pool(config.candidate, config.ssl_context(config.candidate), limits.connect_timeout,
                                limits.max_in_flight)
        mirror_pool = Pool(config.candidate, config.ssl_context(config.candidate), limits.connect_timeout,
                           limits.max_mirrors_in_flight)
        self.mirror = Mirror(self, mirror_pool, sink, limits.body_copy_cap, limits.response_timeout)
        self.sink = sink
        self.conns: set[ClientConn] = set()
        self.draining = False
        self._random = random.random
        self._point_cache: dict[bytes, float] = {}

    # -- routing (hot path)
    def route(self, sticky: bytes | None, now: float) -> tuple[str, bool]:
        """The role that serves a new request, and whether it is the ejected candidate's recovery probe."""
        weight = self.split.candidate_weight
        if weight <= 0:
            return "stable", False
        if weight >= 100:
            candidate = True
        elif sticky is not None:
            point = self._point_cache.get(sticky)
            if point is None:
                point = sticky_point(sticky)
                if len(self._point_cache) > 100_000:
                    self._point_cache.clear()
                self._point_cache[sticky] = point
            candidate = on_candidate(weight, point)
        else:
            candidate = self._random() * 100.0 < weight
        if not candidate:
            return "stable", False
        ejection = self.ejection
        if ejection.ejected_until is None:
            return "canary", False
        if ejection.admit(now):  # the ejection time is up: this request probes the candidate
            return "canary", True
        return "stable", False  # ejected: the user's share goes to stable, their assignment unchanged

    def sample_mirror(self) -> bool:
        return self._random() * 100.0 < self.split.mirror_percent

    # -- admin
    def set_split(self, split: Split, state_file: Path | None) -> None:
        """Persist first, then switch: a failed write changes nothing. New requests see it at once."""
        if state_file is not None:
            save_split(state_file, split, self.config.app)
        self.split = split

    def snapshot(self) -> dict[str, Any]:
        """``GET /api/v1/stats`` (cumulative since start)."""
        stats = self.stats
        ejection = self.ejection
        return {
            "app": stats.app,
            "started_at": stats.started_at,
            "now": time.time(),
            "split": self.split.to_json(),
            "latency_bounds": list(LATENCY_BOUNDS),
            "roles": {role: stats.role(role).to_json() for role in ROLES},
            "candidate": {"ejected": ejection.is_ejected(), "ejections": ejection.ejections,
                          "consecutive_failures": ejection.consecutive_failures},
            "retries": {"attempted": stats.retries_attempted, "succeeded": stats.retries_succeeded,
                        "budget_exhausted": stats.retries_budget_exhausted},
            "mirror": {"sent": stats.mirror_sent, "completed": stats.mirror_completed,
                       "dropped": stats.mirror_dropped, "failed": stats.mirror_failed,
                       "in_flight": self.mirror.in_flight},
            "overload": {"rejected": stats.overload_rejected},
            "in_flight": {"stable": self.stable_pool.in_flight, "canary": self.canary_pool.in_flight},
        }

    # -- housekeeping
    def sweep(self) -> None:
        """Timeouts: slowloris clients, idle keep-alive clients, upstreams that do not answer."""
        now = time.monotonic()
        header_timeout = self.limits.header_timeout
        for conn in list(self.conns):
            conn.sweep(now, header_timeout, IDLE_TIMEOUT)
        self.stable_pool.sweep(now)
        self.canary_pool.sweep(now)
        self.mirror.pool.sweep(now)

    def busy(self) -> bool:
        return any(conn.queue or conn.parsing is not None or conn.head_started is not None for conn in self.conns)

    def start_draining(self) -> None:
        """Stop keep-alive: idle client connections close now, busy ones after their current answer."""
        self.draining = True
        for conn in list(self.conns):
            if not conn.queue and conn.parsing is None and conn.head_started is None:
                conn.close()

    def close(self) -> None:
        for conn in list(self.conns):
            conn.close()
        self.stable_pool.close()
        self.canary_pool.close()
        self.mirror.pool.close()
