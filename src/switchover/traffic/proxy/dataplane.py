"""The proxy's shared state: the split in force, upstream pools, counters, ejection, retry budget."""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

from switchover.traffic.proxy.config import ProxyConfig
from switchover.traffic.proxy.health import Ejection, RetryBudget
from switchover.traffic.proxy.hooks import MirrorSink
from switchover.traffic.proxy.mirror import Mirror
from switchover.traffic.proxy.routing import Split, on_candidate, sticky_point
from switchover.traffic.proxy.shared import Shared
from switchover.traffic.proxy.stats import ProxyStats
from switchover.traffic.proxy.upstream import Pool

if TYPE_CHECKING:
    from switchover.traffic.proxy.server import ClientConn

IDLE_TIMEOUT = 75.0  # seconds a keep-alive client connection may stay idle (nginx's keepalive_timeout)


class Proxy:
    """One worker's data plane. The split and the counters live in ``shared`` (see shared.py)."""

    def __init__(self, config: ProxyConfig, shared: Shared, worker: int, sink: MirrorSink | None,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.shared = shared
        self.words = shared.words
        self.limits = config.limits
        self.stable = config.stable
        self.candidate = config.candidate
        self.sticky_header = config.sticky_header
        self.sticky_cookie = config.sticky_cookie
        self.mirror_writes = config.mirror_writes
        self.retry_enabled = config.retry.enabled
        self.retry_budget = RetryBudget(config.retry.budget)
        self.ejection = Ejection(config.ejection.consecutive_failures, config.ejection.base_time)
        self.stats = ProxyStats(shared, worker)
        limits = config.limits
        self.stable_pool = Pool(config.stable, config.ssl_context(config.stable), limits.connect_timeout,
                                limits.max_in_flight)
        self.canary_pool = Pool(config.candidate, config.ssl_context(config.candidate), limits.connect_timeout,
                                limits.max_in_flight)
        mirror_pool = Pool(config.candidate, config.ssl_context(config.candidate), limits.connect_timeout,
                           limits.max_mirrors_in_flight)
        self.mirror = Mirror(self, mirror_pool, sink, limits.body_copy_cap, limits.response_timeout,
                             limits.mirror_batch_wait, shared.helper_block())
        self.sink = sink
        self.conns: set[ClientConn] = set()
        self.draining = False
        self._random = random.random
        self._point_cache: dict[bytes, float] = {}

    @property
    def split(self) -> Split:
        return Split(*self.shared.split())

    # -- routing (hot path)
    def route(self, sticky: bytes | None, now: float) -> tuple[str, bool]:
        """The role that serves a new request, and whether it is the ejected candidate's recovery probe."""
        weight = self.words[0] & 0xFF  # the shared split word: weight | mirror << 8
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
        mirror = (self.words[0] >> 8) & 0xFF
        return mirror > 0 and self._random() * 100.0 < mirror

    # -- the candidate's health, mirrored into the shared counters for the admin API
    def candidate_failed(self, now: float) -> None:
        ejection = self.ejection
        ejection.failure(now)
        self._publish_ejection()

    def candidate_ok(self) -> None:
        ejection = self.ejection
        if ejection.consecutive_failures or ejection.ejected_until is not None or ejection.probing:
            ejection.success()
            self._publish_ejection()

    def probe_abandoned(self) -> None:
        self.ejection.probing = False

    def _publish_ejection(self) -> None:
        stats, ejection = self.stats, self.ejection
        stats.ejected = 1 if ejection.is_ejected() else 0
        stats.ejections = ejection.ejections
        stats.consecutive_failures = ejection.consecutive_failures

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
        self.publish_in_flight()

    def publish_in_flight(self) -> None:
        """Gauges for the admin API, refreshed by each sweep (kept off the hot path)."""
        stats = self.stats
        stats.in_flight_stable = self.stable_pool.in_flight
        stats.in_flight_canary = self.canary_pool.in_flight
        stats.mirror_in_flight = self.mirror.pool.in_flight

    def busy(self) -> bool:
        return any(conn.queue or conn.parsing is not None or conn.head_started is not None for conn in self.conns)

    def start_draining(self) -> None:
        """Stop keep-alive: idle client connections close now, busy ones after their current answer."""
        self.draining = True
        self.mirror.flush()  # copies waiting for company leave now
        for conn in list(self.conns):
            if not conn.queue and conn.parsing is None and conn.head_started is None:
                conn.close()

    def close(self) -> None:
        for conn in list(self.conns):
            conn.close()
        self.stable_pool.close()
        self.canary_pool.close()
        self.mirror.close()
