"""`slo:`, `analysis:` and `metrics:`: what "good" means and how often it is judged."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from switchover.plan.common import Duration, Strict


class Slo(Strict):
    p95_ms: float = Field(200.0, gt=0)
    p99_ms: float | None = Field(None, gt=0)
    error_rate: float = Field(0.005, ge=0, le=1)
    saturation: float = Field(0.70, gt=0, le=1)


class Baseline(Strict):
    """Candidate versus stable in the same window."""

    p95_ratio: float = Field(1.10, gt=0)
    error_alpha: float = Field(0.05, gt=0, lt=1, description="two-proportion test significance")
    rank_alpha: float = Field(0.05, gt=0, lt=1, description="Mann-Whitney significance")
    tail_alpha: float = Field(0.05, gt=0, lt=1, description="significance of the p95 ratio's tail test")
    rank_effect: float = Field(0.6, gt=0.5, le=1, description="P(candidate slower) above this fails")
    # Millisecond jitter between two processes (a cold connection pool, a busy core) is not a
    # regression: latency differences below this never fail the ratio or the rank gate.
    latency_floor_ms: float = Field(5.0, ge=0, description="latency differences below this never fail")


class Analysis(Strict):
    interval: Duration = Field(10.0, ge=1.0)
    min_requests: int = Field(200, ge=1)
    baseline: Baseline = Baseline()
    failure_limit: int = Field(3, ge=1)
    max_breach: Duration = 300.0
    inconclusive_limit: int = Field(6, ge=1)
    on_inconclusive: Literal["pause", "rollback"] = "pause"
    saturation_windows: int = Field(3, ge=2, description="windows of growth that fail the trend gate")
    saturation_growth: float = Field(0.05, ge=0, le=1, description="least total rise over those windows that fails")


class SaturationSource(Strict):
    command: list[str] | None = Field(None, description="argv printing a number between 0 and 1")
    query: str | None = Field(None, description="PromQL returning a number between 0 and 1")

    @model_validator(mode="after")
    def _one(self) -> SaturationSource:
        if (self.command is None) == (self.query is None):
            raise ValueError("saturation takes exactly one of command or query")
        return self


class PrometheusQueries(Strict):
    error_rate: str | None = None
    p95: str | None = None
    p99: str | None = None
    requests: str | None = None


class Prometheus(Strict):
    url: str = "http://127.0.0.1:9090"
    queries: PrometheusQueries = PrometheusQueries()
    timeout: Duration = 5.0
    retries: int = Field(2, ge=0)


class Metrics(Strict):
    provider: Literal["builtin", "prometheus"] = "builtin"
    prometheus: Prometheus | None = None
    saturation: SaturationSource | None = None
