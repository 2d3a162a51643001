"""The Prometheus provider's and preflight's pure parts."""

from __future__ import annotations

from switchover.metrics.prometheus import (
    Sample,
    histogram_from_buckets,
    parse_vector,
    prom_duration,
    render,
    series_deltas,
)
from switchover.probes.checks import Status
from switchover.probes.dns import parse_resolver
from switchover.probes.preflight import plan_hostnames, timeout_checks
from tests.unit.adapters.conftest import make_plan


def test_series_deltas_new_series_and_resets() -> None:
    start = [Sample({"status": "200"}, 100.0), Sample({"status": "503"}, 7.0)]
    end = [Sample({"status": "200"}, 150.0), Sample({"status": "503"}, 2.0), Sample({"status": "500"}, 4.0)]
    deltas = {dict(k)["status"]: v for k, v in series_deltas(start, end).items()}
    # 503 went down: the process restarted and counted 2 since; 500 appeared inside the window
    assert deltas == {"200": 50.0, "503": 2.0, "500": 4.0}


def test_histogram_from_cumulative_buckets() -> None:
    samples = [Sample({"le": "0.1"}, 5.0), Sample({"le": "+Inf"}, 12.0), Sample({"le": "0.05"}, 2.0),
               Sample({"le": "0.2"}, 4.9)]  # extrapolation noise: not monotone
    hist = histogram_from_buckets(samples)
    assert hist is not None
    assert hist.bounds == (0.05, 0.1, 0.2)
    assert hist.counts == (2, 3, 0, 7) and hist.count == 12
    assert histogram_from_buckets([Sample({"le": "0.1"}, 5.0)]) is None  # no +Inf: total unknown
    assert histogram_from_buckets([Sample({"le": "+Inf"}, 0.0)]) is None  # nothing observed


def test_parse_vector_drops_nan_and_reads_scalars() -> None:
    body = {"data": {"resultType": "vector", "result": [
        {"metric": {"role": "canary"}, "value": [1, "3.5"]}, {"metric": {}, "value": [1, "NaN"]}]}}
    assert parse_vector(body) == [Sample({"role": "canary"}, 3.5)]
    assert parse_vector({"data": {"resultType": "scalar", "result": [1, "0.25"]}}) == [Sample({}, 0.25)]
    assert parse_vector({"data": {"resultType": "vector", "result": []}}) == []


def test_templates_and_durations() -> None:
    assert render('x{app="{{app}}",role="{{role}}"}[{{interval}}]', app="orders", role="canary",
                  interval="30s") == 'x{app="orders",role="canary"}[30s]'
    assert prom_duration(10.4) == "10s" and prom_duration(90) == "1m30s" and prom_duration(0.2) == "1s"


def test_timeout_alignment() -> None:
    assert timeout_checks(10, 5)[0].status is Status.WARN
    assert "dogpile" in timeout_checks(10, 5)[0].reason
    assert timeout_checks(5, 5)[0].status is Status.PASS
    assert timeout_checks(3, 5)[0].status is Status.PASS


def test_hostnames_and_resolvers() -> None:
    plan = make_plan(stable={"url": "http://orders-v1.internal:8081"}, dns={"hostnames": ["orders.example.com"]},
                     traffic={"driver": "route53", "route53": {"zone_id": "Z", "record_name": "api.example.com.",
                                                              "stable_value": "a", "candidate_value": "b"}})
    assert plan_hostnames(plan) == ["orders.example.com", "orders-v1.internal", "api.example.com"]
    assert parse_resolver("10.0.0.2") == ("10.0.0.2", 53)
    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("[::1]:53") == ("::1", 53)
