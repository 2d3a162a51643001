"""Observations, latency histograms, and the MetricsProvider protocol (DESIGN.md, "Contracts").

Latency buckets are log-linear: 16 bounds per decade from 0.1 ms to 60 s (at most 25% apart, so an
interpolated p95/p99 is within a few percent), instead of a handful of powers of two. The built-in
proxy, its ``/metrics`` (``http_request_duration_seconds_bucket{le}``) and the analysis share them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from switchover.plan import Plan

_MANTISSAS = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0)


def _latency_bounds() -> tuple[float, ...]:
    out: list[float] = []
    for exponent in range(-4, 2):  # 0.1 ms .. 90 s
        out.extend(round(m * 10.0**exponent, 6) for m in _MANTISSAS)
    return tuple(b for b in out if b <= 60.0)


# Upper bounds in seconds (Prometheus `le`), ascending; +Inf is implicit as the last bucket.
LATENCY_BOUNDS: tuple[float, ...] = _latency_bounds()

ROLES = ("stable", "canary", "shadow")


@dataclass(frozen=True)
class Histogram:
    """Counts per bucket (not cumulative). ``counts`` has len(bounds) + 1 entries; the last is +Inf."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float = 0.0  # sum of observed values, seconds

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.bounds) + 1:
            raise ValueError("a histogram has one more count than bounds (+Inf)")

    @property
    def count(self) -> int:
        return sum(self.counts)

    def minus(self, earlier: Histogram) -> Histogram:
        """The observations between two cumulative snapshots of the same histogram."""
        if earlier.bounds != self.bounds:
            raise ValueError("histograms with different bounds")
        counts = tuple(max(0, a - b) for a, b in zip(self.counts, earlier.counts, strict=True))
        return Histogram(self.bounds, counts, max(0.0, self.total - earlier.total))

    @staticmethod
    def from_cumulative(bounds: Sequence[float], cumulative: Sequence[float], total: float = 0.0) -> Histogram:
        """From Prometheus-style cumulative bucket counts (the last one is +Inf)."""
        counts: list[int] = []
        previous = 0.0
        for value in cumulative:
            counts.append(max(0, round(value - previous)))
            previous = value
        return Histogram(tuple(bounds), tuple(counts), total)


@dataclass(frozen=True)
class Window:
    """A time window in seconds since the epoch (the controller passes the clock in)."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Observation:
    """What one role did in one window. Counts are for the window, not cumulative."""

    role: str
    window: Window
    requests: int
    errors: int  # 5xx answers and upstream failures (connection refused/reset, timeouts)
    histogram: Histogram | None = None  # where the source has one; enables the rank test
    quantiles: dict[float, float] = field(default_factory=dict)  # seconds, e.g. {0.95: 0.120}; else
    saturation: float | None = None  # 0-1, when a source is configured
    ejected: bool = False  # the data plane stopped sending this role traffic after failures
    source: str = ""

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@runtime_checkable
class MetricsProvider(Protocol):
    name: str

    def observe(self, role: str, window: Window) -> Observation | None:
        """The role's observation for the window; None when the source has no data (inconclusive)."""

    def is_online(self) -> bool:
        """Whether the source answers now."""


# provider name -> "module:Class"; a class is built with (plan).
PROVIDERS: dict[str, str] = {
    "builtin": "switchover.metrics.builtin:BuiltinProvider",
    "prometheus": "switchover.metrics.prometheus:PrometheusProvider",
}


def provider_for(plan: Plan) -> MetricsProvider:
    """The MetricsProvider the plan's ``metrics.provider`` names (UserError when not available)."""
    from switchover.registry import build

    provider: MetricsProvider = build(PROVIDERS, plan.metrics.provider, "metrics.provider", plan)
    return provider
