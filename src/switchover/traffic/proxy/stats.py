"""Counters of the data plane, kept in plain ints and lists on the hot path.

Rendered at read time: as JSON for ``GET /api/v1/stats`` and, through a prometheus_client custom
collector, as ``http_requests_total{app,role,status}`` and
``http_request_duration_seconds_bucket{app,role,le}`` for ``GET /metrics``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from switchover.metrics.base import LATENCY_BOUNDS, ROLES

_BOUNDS = LATENCY_BOUNDS


class RoleStats:
    """One role's cumulative counts. ``latency_counts`` is per bucket (not cumulative), last = +Inf."""

    __slots__ = ("errors", "latency_counts", "latency_sum", "requests", "status")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.status: dict[int, int] = {}
        self.latency_counts = [0] * (len(_BOUNDS) + 1)
        self.latency_sum = 0.0

    def record(self, status: int, latency: float) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        self.status[status] = self.status.get(status, 0) + 1
        # Prometheus `le`: a value equal to a bound falls in that bound's bucket.
        self.latency_counts[bisect_left(_BOUNDS, latency)] += 1
        self.latency_sum += latency

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "latency_counts": list(self.latency_counts),
            "latency_sum": self.latency_sum,
        }


class ProxyStats:
    """Everything the proxy counts since it started."""

    def __init__(self, app: str, started_at: float) -> None:
        self.app = app
        self.started_at = started_at
        self.stable = RoleStats()
        self.canary = RoleStats()
        self.shadow = RoleStats()
        self.retries_attempted = 0
        self.retries_succeeded = 0
        self.retries_budget_exhausted = 0
        self.ejections = 0
        self.mirror_sent = 0
        self.mirror_completed = 0
        self.mirror_dropped = 0
        self.mirror_failed = 0
        self.overload_rejected = 0

    def role(self, name: str) -> RoleStats:
        stats: RoleStats = getattr(self, name)
        return stats


class StatsCollector(Collector):
    """prometheus_client custom collector: reads the counters at scrape time (no cost per request)."""

    def __init__(self, snapshot: Any) -> None:
        # ``snapshot()`` returns the /api/v1/stats JSON; one source for both views.
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        snap = self._snapshot()
        app = snap["app"]
        requests = CounterMetricFamily("http_requests", "HTTP requests by role and status code",
                                       labels=["app", "role", "status"])
        latency = HistogramMetricFamily("http_request_duration_seconds",
                                        "Time from the request's arrival to the upstream answer's end",
                                        labels=["app", "role"])
        for role in ROLES:
            stats = snap["roles"][role]
            for status, count in stats["status"].items():
                requests.add_metric([app, role, status], count)
            buckets: list[tuple[str, float]] = []
            running = 0
            for bound, count in zip([*map(_le, snap["latency_bounds"]), "+Inf"], stats["latency_counts"], strict=True):
                running += count
                buckets.append((bound, running))
            latency.add_metric([app, role], buckets, stats["latency_sum"])
        yield requests
        yield latency
        yield _counter("switchover_proxy_retries", "Candidate attempts retried on stable", app,
                       snap["retries"]["attempted"])
        yield _counter("switchover_proxy_retries_succeeded", "Retries on stable that answered below 500", app,
                       snap["retries"]["succeeded"])
        yield _counter("switchover_proxy_retry_budget_exhausted", "Retries refused by the retry budget", app,
                       snap["retries"]["budget_exhausted"])
        yield _counter("switchover_proxy_ejections", "Passive ejections of the candidate", app,
                       snap["candidate"]["ejections"])
        yield _gauge("switchover_proxy_candidate_ejected", "1 while the candidate is ejected", app,
                     1.0 if snap["candidate"]["ejected"] else 0.0)
        mirror = snap["mirror"]
        yield _counter("switchover_proxy_mirror_sent", "Mirrored copies sent to the candidate", app, mirror["sent"])
        yield _counter("switchover_proxy_mirror_dropped", "Mirrors dropped because too many were in flight", app,
                       mirror["dropped"])
        yield _counter("switchover_proxy_mirror_failed", "Mirrored copies with no answer", app, mirror["failed"])
        yield _counter("switchover_proxy_overload_rejected", "Requests answered 503 because an upstream was full",
                       app, snap["overload"]["rejected"])
        yield _gauge("switchover_proxy_candidate_weight", "Candidate weight in percent", app,
                     float(snap["split"]["candidate_weight"]))
        yield _gauge("switchover_proxy_mirror_percent", "Share of requests mirrored, in percent", app,
                     float(snap["split"]["mirror_percent"]))


def _le(bound: float) -> str:
    return repr(float(bound))


def _counter(name: str, doc: str, app: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["app"])
    family.add_metric([app], value)
    return family


def _gauge(name: str, doc: str, app: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["app"])
    family.add_metric([app], value)
    return family
