"""Counters and their two renderings (JSON stats and Prometheus text)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from switchover.metrics.base import LATENCY_BOUNDS
from switchover.traffic.proxy.stats import ProxyStats, RoleStats, StatsCollector


def test_role_stats_buckets_are_prometheus_le() -> None:
    stats = RoleStats()
    stats.record(200, 0.001)  # exactly a bound: counted in that bound's bucket (le = less or equal)
    stats.record(200, 0.00101)
    stats.record(503, 100.0)  # beyond the last bound: +Inf
    counts = stats.latency_counts
    assert counts[LATENCY_BOUNDS.index(0.001)] == 1
    assert counts[LATENCY_BOUNDS.index(0.0012)] == 1
    assert counts[-1] == 1
    assert stats.requests == 3 and stats.errors == 1
    assert stats.to_json()["status"] == {"200": 2, "503": 1}


def test_collector_renders_cumulative_buckets_and_counters() -> None:
    stats = ProxyStats("orders", 0.0)
    stats.canary.record(500, 0.05)
    stats.canary.record(200, 0.2)
    snapshot = {
        "app": "orders", "split": {"candidate_weight": 25, "mirror_percent": 5},
        "latency_bounds": list(LATENCY_BOUNDS),
        "roles": {r: stats.role(r).to_json() for r in ("stable", "canary", "shadow")},
        "candidate": {"ejected": True, "ejections": 1, "consecutive_failures": 5},
        "retries": {"attempted": 2, "succeeded": 1, "budget_exhausted": 0},
        "mirror": {"sent": 4, "completed": 3, "dropped": 1, "failed": 0, "in_flight": 1},
        "overload": {"rejected": 7},
    }
    registry = CollectorRegistry()
    registry.register(StatsCollector(lambda: snapshot))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    samples = families["http_request_duration_seconds"].samples
    canary = [s for s in samples if s.labels.get("role") == "canary" and s.name.endswith("_bucket")]
    by_le = {s.labels["le"]: s.value for s in canary}
    assert by_le["0.045"] == 0 and by_le["0.05"] == 1 and by_le["0.2"] == 2 and by_le["+Inf"] == 2
    total = next(s for s in samples if s.labels.get("role") == "canary" and s.name.endswith("_sum"))
    assert abs(total.value - 0.25) < 1e-9
    requests = {(s.labels["role"], s.labels["status"]): s.value for s in families["http_requests"].samples
                if s.name == "http_requests_total"}
    assert requests == {("canary", "500"): 1, ("canary", "200"): 1}
    assert families["switchover_proxy_candidate_ejected"].samples[0].value == 1
    assert families["switchover_proxy_overload_rejected"].samples[0].value == 7
    assert families["switchover_proxy_mirror_dropped"].samples[0].value == 1
