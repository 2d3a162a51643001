"""The Prometheus metrics provider: PromQL over the HTTP API (``/api/v1/query``), evaluated at the
window's end over the window's length.

Queries are templates: ``{{app}}`` (the plan's name), ``{{role}}`` (``stable`` or ``canary``) and
``{{interval}}`` (the window, e.g. ``10s``). Request and error counts come from the counters
``http_requests_total`` read at the window's start and at its end (exact, where ``increase()`` over
adjacent windows loses the step between them and extrapolates); latency likewise from
``http_request_duration_seconds_bucket`` by ``le``, so the rank test sees a real histogram. A plan
may set its own ``requests`` (with ``error_rate``) and ``p95``/``p99`` queries instead; when no
histogram answers, the p95 (and p99) query gives quantiles. An empty answer is "no data": ``observe`` returns None and the
gate is inconclusive, never a pass. Timeouts and 5xx answers are retried with a short backoff.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from switchover import secrets
from switchover.durations import format_duration
from switchover.errors import UserError
from switchover.metrics.base import Histogram, Observation, Window
from switchover.plan.analysis import Prometheus

if TYPE_CHECKING:
    from switchover.plan import Plan

# The queries teams already use against `http_requests_total` and `http_request_duration_seconds_bucket`.
DEFAULT_QUERIES: dict[str, str] = {
    "requests": 'sum(increase(http_requests_total{app="{{app}}",role="{{role}}"}[{{interval}}]))',
    "errors": 'sum(increase(http_requests_total{app="{{app}}",role="{{role}}",status=~"5.."}[{{interval}}]))',
    "buckets": 'sum by (le) (increase(http_request_duration_seconds_bucket{app="{{app}}",role="{{role}}"}[{{interval}}]))',
    "error_rate": ('sum(rate(http_requests_total{app="{{app}}",role="{{role}}",status=~"5.."}[{{interval}}])) / '
                   'sum(rate(http_requests_total{app="{{app}}",role="{{role}}"}[{{interval}}]))'),
    "p95": ('histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket'
            '{app="{{app}}",role="{{role}}"}[{{interval}}])))'),
    "p99": ('histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket'
            '{app="{{app}}",role="{{role}}"}[{{interval}}])))'),
}


# Raw counters, read at the window's start and end (exact counts without extrapolation).
COUNTER_SELECTORS: dict[str, str] = {
    "requests": 'http_requests_total{app="{{app}}",role="{{role}}"}',
    "buckets": 'http_request_duration_seconds_bucket{app="{{app}}",role="{{role}}"}',
}


def series_deltas(start: list[Sample], end: list[Sample]) -> dict[frozenset[tuple[str, str]], float]:
    """Per series (by labels), what a counter grew between two instants; a series absent at the start,
    or lower at the end (a restart reset it), counts from zero."""
    before = {frozenset(s.labels.items()): s.value for s in start}
    out: dict[frozenset[tuple[str, str]], float] = {}
    for sample in end:
        key = frozenset(sample.labels.items())
        first = before.get(key, 0.0)
        out[key] = sample.value - first if sample.value >= first else sample.value
    return out


class QueryError(Exception):
    """Prometheus refused a query (bad PromQL): a plan problem, not a flaky network."""


def render(template: str, *, app: str, role: str, interval: str) -> str:
    return template.replace("{{app}}", app).replace("{{role}}", role).replace("{{interval}}", interval)


def prom_duration(seconds: float) -> str:
    """A PromQL range for a window: whole seconds (at least 1s), in the short form."""
    return format_duration(max(1.0, float(round(seconds))))


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


def parse_vector(body: dict[str, Any]) -> list[Sample]:
    """Samples from an instant-query answer (vector or scalar); NaN samples are dropped (no data)."""
    data = body.get("data") or {}
    kind = data.get("resultType")
    result = data.get("result")
    out: list[Sample] = []
    if kind == "scalar" and isinstance(result, list):
        out.append(Sample({}, float(result[1])))
    elif kind == "vector" and isinstance(result, list):
        for item in result:
            out.append(Sample(dict(item.get("metric") or {}), float(item["value"][1])))
    return [s for s in out if not math.isnan(s.value)]


def histogram_from_buckets(samples: list[Sample]) -> Histogram | None:
    """A Histogram from cumulative ``le`` buckets; None when there are none or they are empty."""
    points: list[tuple[float, float]] = []
    for sample in samples:
        le = sample.labels.get("le")
        if le is None:
            continue
        points.append((math.inf if le in ("+Inf", "Inf", "inf") else float(le), sample.value))
    if not points:
        return None
    points.sort()
    if points[-1][0] != math.inf:
        return None  # without +Inf the total is unknown
    # increase() extrapolates each series separately; keep the counts monotone as cumulative counts are.
    cumulative: list[float] = []
    running = 0.0
    for _, value in points:
        running = max(running, value)
        cumulative.append(running)
    if cumulative[-1] < 0.5:
        return None
    bounds = tuple(b for b, _ in points[:-1])
    return Histogram.from_cumulative(bounds, cumulative)


class PrometheusProvider:
    name = "prometheus"

    def __init__(self, plan: Plan, *, client: httpx.Client | None = None) -> None:
        self.plan = plan
        self.settings: Prometheus = plan.metrics.prometheus or Prometheus()
        self.url = self.settings.url.rstrip("/")
        self._client = client or httpx.Client(timeout=self.settings.timeout)
        self.last_error: str | None = None  # why the last observe() had no data, for the journal

    # ---------------------------------------------------------------- HTTP

    def query(self, promql: str, at: float) -> list[Sample]:
        """Run an instant query at ``at``; retries timeouts, connection errors and 5xx answers."""
        attempts = self.settings.retries + 1
        last = ""
        for attempt in range(attempts):
            try:
                answer = self._client.get(f"{self.url}/api/v1/query", params={"query": promql, "time": f"{at:.3f}"})
            except httpx.HTTPError as exc:
                last = f"{secrets.redact_url(self.url)} unreachable: {exc}"
            else:
                if answer.status_code in (400, 422):
                    detail = _error_of(answer)
                    raise QueryError(f"Prometheus refused the query {promql!r}: {detail}")
                if answer.status_code < 500:
                    if answer.status_code != 200:
                        last = f"{secrets.redact_url(self.url)} answered {answer.status_code}"
                        break
                    return parse_vector(answer.json())
                last = f"{secrets.redact_url(self.url)} answered {answer.status_code}: {_error_of(answer)}"
            if attempt + 1 < attempts:
                time.sleep(min(2.0, 0.2 * 2**attempt))
        raise ConnectionError(last)

    def _template(self, key: str) -> str:
        configured = getattr(self.settings.queries, key, None) if key in ("requests", "error_rate", "p95", "p99") \
            else None
        return configured or DEFAULT_QUERIES[key]

    def _scalar(self, key: str, role: str, window: Window) -> float | None:
        samples = self.query(self._promql(key, role, window), window.end)
        return sum(s.value for s in samples) if samples else None

    def _promql(self, key: str, role: str, window: Window) -> str:
        return render(self._template(key), app=self.plan.name, role=role, interval=prom_duration(window.seconds))

    # ---------------------------------------------------------------- MetricsProvider

    def observe(self, role: str, window: Window) -> Observation | None:
        try:
            return self._observe(role, window)
        except (ConnectionError, QueryError) as exc:
            self.last_error = str(exc)
            return None

    def _observe(self, role: str, window: Window) -> Observation | None:
        if self.settings.queries.requests:
            counted = self._counts_from_queries(role, window)
        else:
            counted = self._counts_from_counters(role, window)
        if counted is None:
            self.last_error = f"no data for role {role} in the window"
            return None
        requests, errors, histogram = counted
        quantiles: dict[float, float] = {}
        if histogram is None or self.settings.queries.p95:
            histogram = None if self.settings.queries.p95 else histogram
            p95 = self._scalar("p95", role, window)
            if p95 is not None:
                quantiles[0.95] = p95
            if self.settings.queries.p99:
                p99 = self._scalar("p99", role, window)
                if p99 is not None:
                    quantiles[0.99] = p99
        saturation = None
        source = self.plan.metrics.saturation
        if source is not None and source.query:
            saturation = self.scalar_query(source.query, role, window)
        self.last_error = None
        return Observation(role=role, window=window, requests=requests, errors=min(errors, requests),
                           histogram=histogram, quantiles=quantiles, saturation=saturation, source="prometheus")

    def _counts_from_counters(self, role: str, window: Window) -> tuple[int, int, Histogram | None] | None:
        """Exact counts: the counters at the window's end minus the same series at its start (a series
        absent at the start counts from zero; a reset counts from zero). ``increase()`` over the
        window would lose the step between the last sample before the window and the first in it."""
        selector = render(COUNTER_SELECTORS["requests"], app=self.plan.name, role=role, interval="")
        end = self.query(selector, window.end)
        if not end:
            return None
        per_series = series_deltas(self.query(selector, window.start), end)
        requests = round(sum(per_series.values()))
        errors = round(sum(v for labels, v in per_series.items() if dict(labels).get("status", "").startswith("5")))
        histogram = None
        if not self.settings.queries.p95:
            bucket_selector = render(COUNTER_SELECTORS["buckets"], app=self.plan.name, role=role, interval="")
            bucket_end = self.query(bucket_selector, window.end)
            if bucket_end:
                by_le: dict[str, float] = {}
                for labels, value in series_deltas(self.query(bucket_selector, window.start), bucket_end).items():
                    le = dict(labels).get("le")
                    if le is not None:
                        by_le[le] = by_le.get(le, 0.0) + value
                histogram = histogram_from_buckets([Sample({"le": le}, v) for le, v in by_le.items()])
        return requests, errors, histogram

    def _counts_from_queries(self, role: str, window: Window) -> tuple[int, int, Histogram | None] | None:
        """The plan's own ``requests`` query (and ``error_rate``), evaluated at the window's end."""
        requests = self._scalar("requests", role, window)
        if requests is None:
            return None
        if self.settings.queries.error_rate:
            rate = self._scalar("error_rate", role, window)
            errors = round((rate or 0.0) * requests)
        else:
            errors = round(self._scalar("errors", role, window) or 0.0)
        histogram = None
        if not self.settings.queries.p95:
            histogram = histogram_from_buckets(self.query(self._promql("buckets", role, window), window.end))
        return round(requests), errors, histogram

    def scalar_query(self, template: str, role: str, window: Window) -> float | None:
        """A templated query's value at the window's end (the largest sample); None when empty."""
        promql = render(template, app=self.plan.name, role=role, interval=prom_duration(window.seconds))
        samples = self.query(promql, window.end)
        return max(s.value for s in samples) if samples else None

    def is_online(self) -> bool:
        try:
            answer = self._client.get(f"{self.url}/-/ready")
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    def check_queries(self, now: float) -> list[str]:
        """Problems with the plan's queries (Prometheus refuses them), for preflight. Empty when fine."""
        problems: list[str] = []
        window = Window(now - self.plan.analysis.interval, now)
        keys = ["requests", "errors", "buckets", "p95"] if self.settings.queries.requests else ["p95"]
        keys += [k for k in ("error_rate", "p99") if getattr(self.settings.queries, k)]
        for key in keys:
            try:
                self.query(self._promql(key, "canary", window), now)
            except QueryError as exc:
                problems.append(f"metrics.prometheus.queries.{key}: {exc}")
            except ConnectionError as exc:
                raise UserError(str(exc)) from None
        source = self.plan.metrics.saturation
        if source is not None and source.query:
            try:
                self.scalar_query(source.query, "canary", window)
            except QueryError as exc:
                problems.append(f"metrics.saturation.query: {exc}")
            except ConnectionError as exc:
                raise UserError(str(exc)) from None
        return problems

    def close(self) -> None:
        self._client.close()


def _error_of(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    return str(body.get("error") or body)[:300]
