"""Counters and their two renderings (JSON stats and Prometheus text)."""

from __future__ import annotations

import multiprocessing

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from switchover.metrics.base import LATENCY_BOUNDS
from switchover.traffic.proxy.shared import HelperBlock, Shared
from switchover.traffic.proxy.stats import ProxyStats, StatsCollector, snapshot


def test_role_stats_buckets_are_prometheus_le_and_workers_add_up() -> None:
    shared = Shared(2)
    first, second = ProxyStats(shared, 0), ProxyStats(shared, 1)
    first.stable.record(200, 0.001)  # exactly a bound: counted in that bound's bucket (le = less or equal)
    second.stable.record(200, 0.00101)
    first.stable.record(503, 100.0)  # beyond the last bound: +Inf
    second.mirror_sent += 2
    first.ejected = 1
    shared.set_split(25, 5)
    stats = snapshot(shared, "orders", 1.0, 2.0)
    stable = stats["roles"]["stable"]
    counts = stable["latency_counts"]
    assert counts[LATENCY_BOUNDS.index(0.001)] == 1
    assert counts[LATENCY_BOUNDS.index(0.0012)] == 1
    assert counts[-1] == 1 and sum(counts) == 3
    assert stable["requests"] == 3 and stable["errors"] == 1
    assert stable["status"] == {"200": 2, "503": 1}
    assert abs(stable["latency_sum"] - 100.00201) < 1e-6
    assert stats["split"] == {"candidate_weight": 25, "mirror_percent": 5}
    assert stats["mirror"]["sent"] == 2 and stats["candidate"]["ejected"] is True
    assert stats["roles"]["canary"] == {"requests": 0, "errors": 0, "status": {}, "latency_counts": [0] * len(counts),
                                        "latency_sum": 0.0}


def test_collector_renders_cumulative_buckets_and_counters() -> None:
    shared = Shared(1)
    shared.set_split(25, 5)
    stats = ProxyStats(shared, 0)
    stats.canary.record(500, 0.05)
    stats.canary.record(200, 0.2)
    stats.ejected, stats.ejections, stats.overload_rejected, stats.mirror_dropped = 1, 1, 7, 1
    registry = CollectorRegistry()
    registry.register(StatsCollector(lambda: snapshot(shared, "orders", 0.0, 1.0)))
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


def _helper_counts(block: HelperBlock) -> None:
    """In another process: what the parity worker does with the block the proxy gave it."""
    stats = ProxyStats(Shared.attach(block), block.index)
    stats.shadow.record(200, 0.002)
    stats.shadow.record(502, 0.004)
    stats.mirror_sent += 2


def test_a_spawned_helper_counts_in_the_proxys_own_counters() -> None:
    """``copies_from: worker``: the copies the parity worker (a spawned process, which inherits no
    memory) sends show in the proxy's stats as its own would."""
    shared = Shared(1, helpers=1)
    ProxyStats(shared, 0).shadow.record(200, 0.001)  # a copy the proxy sent itself
    block = shared.helper_block()
    assert block is not None and block.index == 1 and shared.helper_block(1) is None
    helper = multiprocessing.get_context("spawn").Process(target=_helper_counts, args=(block,))
    helper.start()
    helper.join(30)
    assert helper.exitcode == 0
    stats = snapshot(shared, "orders", 1.0, 2.0)
    assert stats["roles"]["shadow"]["status"] == {"200": 2, "502": 1}
    assert stats["roles"]["shadow"]["errors"] == 1 and stats["mirror"]["sent"] == 2
    assert Shared(1).helper_block() is None  # no helper block asked for: none to give
