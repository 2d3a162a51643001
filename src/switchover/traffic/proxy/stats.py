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
from switchover.traffic.proxy.shared import (
    ERRORS,
    LATENCY,
    LATENCY_SUM_NS,
    REQUESTS,
    ROLE_SIZE,
    SCALAR,
    STATUS,
    STATUS_SLOTS,
    Shared,
)

_BOUNDS = LATENCY_BOUNDS


class RoleStats:
    """One role's cumulative counts, in this worker's block of the shared counters."""

    __slots__ = ("_base", "_words")

    def __init__(self, words: memoryview, base: int) -> None:
        self._words = words
        self._base = base

    def record(self, status: int, latency: float) -> None:
        words, base = self._words, self._base
        words[base + REQUESTS] += 1
        if status >= 500:
            words[base + ERRORS] += 1
        slot = status - 100 if 100 <= status < 600 else STATUS_SLOTS - 1
        words[base + STATUS + slot] += 1
        # Prometheus `le`: a value equal to a bound falls in that bound's bucket.
        words[base + LATENCY + bisect_left(_BOUNDS, latency)] += 1
        words[base + LATENCY_SUM_NS] += int(latency * 1e9)


def role_json(shared: Shared, role_index: int) -> dict[str, Any]:
    """A role's counters summed over the workers, as in ``GET /api/v1/stats``."""
    base = role_index * ROLE_SIZE
    status = shared.totals(base + STATUS, STATUS_SLOTS)
    return {
        "requests": shared.total(base + REQUESTS),
        "errors": shared.total(base + ERRORS),
        "status": {str(100 + i): n for i, n in enumerate(status) if n},
        "latency_counts": shared.totals(base + LATENCY, len(_BOUNDS) + 1),
        "latency_sum": shared.total(base + LATENCY_SUM_NS) / 1e9,
    }


class _Scalar:
    """A counter of this worker's block, used like a plain int attribute (``stats.mirror_sent += 1``)."""

    def __init__(self, name: str) -> None:
        self.offset = SCALAR[name]

    def __get__(self, obj: ProxyStats, owner: type | None = None) -> int:
        value: int = obj.words[obj.base + self.offset]
        return value

    def __set__(self, obj: ProxyStats, value: int) -> None:
        obj.words[obj.base + self.offset] = value


class ProxyStats:
    """Everything one worker counts, written to its block of the shared counters."""

    retries_attempted = _Scalar("retries_attempted")
    retries_succeeded = _Scalar("retries_succeeded")
    retries_budget_exhausted = _Scalar("retries_budget_exhausted")
    ejections = _Scalar("ejections")
    ejected = _Scalar("ejected")
    consecutive_failures = _Scalar("consecutive_failures")
    mirror_sent = _Scalar("mirror_sent")
    mirror_completed = _Scalar("mirror_completed")
    mirror_dropped = _Scalar("mirror_dropped")
    mirror_failed = _Scalar("mirror_failed")
    mirror_in_flight = _Scalar("mirror_in_flight")
    mirror_retried = _Scalar("mirror_retried")
    overload_rejected = _Scalar("overload_rejected")
    in_flight_stable = _Scalar("in_flight_stable")
    in_flight_canary = _Scalar("in_flight_canary")
    ready = _Scalar("ready")

    def __init__(self, shared: Shared, worker: int) -> None:
        self.words = shared.words
        self.base = shared.base(worker)
        self.stable = RoleStats(self.words, self.base + 0 * ROLE_SIZE)
        self.canary = RoleStats(self.words, self.base + 1 * ROLE_SIZE)
        self.shadow = RoleStats(self.words, self.base + 2 * ROLE_SIZE)

    def role(self, name: str) -> RoleStats:
        stats: RoleStats = getattr(self, name)
        return stats


def snapshot(shared: Shared, app: str, started_at: float, now: float) -> dict[str, Any]:
    """``GET /api/v1/stats``: cumulative since start, summed over the workers."""
    weight, mirror = shared.split()
    scalar = shared.scalar
    return {
        "app": app,
        "started_at": started_at,
        "now": now,
        "split": {"candidate_weight": weight, "mirror_percent": mirror},
        "latency_bounds": list(_BOUNDS),
        "roles": {role: role_json(shared, i) for i, role in enumerate(ROLES)},
        # Each worker ejects on its own failures (passive, as Envoy's per-host outlier detection).
        "candidate": {"ejected": scalar("ejected") > 0, "ejections": scalar("ejections"),
                      "consecutive_failures": shared.scalar_max("consecutive_failures")},
        "retries": {"attempted": scalar("retries_attempted"), "succeeded": scalar("retries_succeeded"),
                    "budget_exhausted": scalar("retries_budget_exhausted")},
        "mirror": {"sent": scalar("mirror_sent"), "completed": scalar("mirror_completed"),
                   "dropped": scalar("mirror_dropped"), "failed": scalar("mirror_failed"),
                   "in_flight": scalar("mirror_in_flight"), "retried": scalar("mirror_retried")},
        "overload": {"rejected": scalar("overload_rejected")},
        "in_flight": {"stable": scalar("in_flight_stable"), "canary": scalar("in_flight_canary")},
    }


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
        yield _counter("switchover_proxy_mirror_retried",
                       "Pipelined copies sent again alone because the candidate closed before answering them", app,
                       mirror["retried"])
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
