"""The Prometheus provider against a real Prometheus scraping an exporter of the proxy's metric names."""

from __future__ import annotations

import time

import httpx
import pytest

from switchover.metrics.base import Window
from switchover.metrics.prometheus import PrometheusProvider
from switchover.plan import Plan, plan_from_dict
from tests.integration.adapters.conftest import PromStack, Service, free_port

pytestmark = pytest.mark.prometheus


def prom_plan(url: str, **metrics: object) -> Plan:
    return plan_from_dict({
        "name": "sw_adapters_orders", "stable": {"url": "http://127.0.0.1:8081"},
        "candidate": {"url": "http://127.0.0.1:8082"},
        "metrics": {"provider": "prometheus", "prometheus": {"url": url, "timeout": "2s", "retries": 1}, **metrics},
    })


def test_counts_and_histograms_per_role(prom_stack: PromStack) -> None:
    provider = PrometheusProvider(prom_plan(prom_stack.url))
    assert provider.is_online()
    start = time.time() - 2
    prom_stack.record("sw_adapters_orders", "stable", 1000, 5, 0.045)
    prom_stack.record("sw_adapters_orders", "canary", 400, 40, 0.150)
    time.sleep(3.5)  # three scrapes
    window = Window(start, time.time())
    canary = provider.observe("canary", window)
    stable = provider.observe("stable", window)
    assert canary is not None and stable is not None, provider.last_error
    assert canary.requests == 400 and canary.errors == 40
    assert canary.error_rate == pytest.approx(0.10, abs=0.01)
    assert stable.error_rate == pytest.approx(0.005, abs=0.002)
    assert canary.histogram is not None and stable.histogram is not None
    assert canary.histogram.count == canary.requests
    # every canary request took 150 ms: all its counts sit in the bucket that holds 0.150
    slow = [b for b, c in zip((*canary.histogram.bounds, float("inf")), canary.histogram.counts, strict=True) if c]
    assert slow and 0.14 <= slow[0] <= 0.2 and len(slow) == 1
    fast = [b for b, c in zip((*stable.histogram.bounds, float("inf")), stable.histogram.counts, strict=True) if c]
    assert fast[0] < slow[0]


def test_no_data_is_inconclusive(prom_stack: PromStack) -> None:
    provider = PrometheusProvider(prom_plan(prom_stack.url))
    assert provider.observe("shadow", Window(time.time() - 10, time.time())) is None
    assert provider.last_error is not None and "no data" in provider.last_error


def test_plan_queries_and_quantiles(prom_stack: PromStack) -> None:
    plan = prom_plan(prom_stack.url, saturation={"query": 'max(up{job="sw_adapters"}) * 0.5'},
                     **{"prometheus": {"url": prom_stack.url, "queries": {
                         "p95": 'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket'
                                '{app="{{app}}",role="{{role}}"}[{{interval}}])))'}}})
    provider = PrometheusProvider(plan)
    start = time.time() - 2
    prom_stack.record("sw_adapters_orders", "canary", 200, 0, 0.150)
    time.sleep(3.5)
    obs = provider.observe("canary", Window(start, time.time()))
    assert obs is not None, provider.last_error
    assert obs.histogram is None and 0.14 <= obs.quantiles[0.95] <= 0.2
    assert obs.saturation == pytest.approx(0.5)
    assert provider.check_queries(time.time()) == []


def test_bad_query_and_unreachable_prometheus(prom_stack: PromStack) -> None:
    bad = PrometheusProvider(prom_plan(prom_stack.url, **{"prometheus": {
        "url": prom_stack.url, "queries": {"requests": "sum(rate(http_requests_total[{{interval}}]"}}}))
    assert bad.observe("canary", Window(time.time() - 10, time.time())) is None
    assert bad.last_error is not None and "refused the query" in bad.last_error
    problems = bad.check_queries(time.time())
    assert len(problems) == 1 and problems[0].startswith("metrics.prometheus.queries.requests")

    gone = PrometheusProvider(prom_plan(f"http://127.0.0.1:{free_port()}"))
    assert not gone.is_online()
    assert gone.observe("canary", Window(time.time() - 10, time.time())) is None
    assert gone.last_error is not None and "unreachable" in gone.last_error


@pytest.mark.slow
def test_prometheus_scraping_the_builtin_proxy(tmp_path, services: tuple[Service, Service]) -> None:  # type: ignore[no-untyped-def]
    """The whole path a user runs: `switchover proxy` serves /metrics, Prometheus scrapes it, the
    provider's PromQL reads per-role counts and histograms back."""
    from tests.integration.adapters.conftest import PromStack, start_prometheus, stop_process
    from tests.integration.proxy.conftest import launch

    stable, candidate = services
    served = {"n": 0}

    def every_fourth_fails(_h: object, _b: bytes) -> tuple[int, dict[str, str], bytes]:
        served["n"] += 1
        return (503, {}, b"") if served["n"] % 4 == 0 else (200, {}, b"ok")

    candidate.routes[("POST", "/order")] = every_fourth_fails
    proxy = launch(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--app", "sw_adapters_orders",
                    "--stable", stable.url, "--candidate", candidate.url, "--weight", "50",
                    "--state-file", str(tmp_path / "proxy.json")], tmp_path)
    prom, url = start_prometheus(tmp_path, proxy.admin.removeprefix("http://"))
    try:
        with httpx.Client(timeout=5) as client:
            # warm-up: every series (including the 503 one) exists before the measured window
            for _ in range(40):
                client.post(proxy.url + "/order", content=b"{}")
            PromStack(url, None, None).wait_scraped()
            time.sleep(2)
            start = time.time()
            before = proxy.stats()
            for _ in range(400):
                client.post(proxy.url + "/order", content=b"{}")
            time.sleep(3.5)
            after = proxy.stats()
        window = Window(start, time.time())
        provider = PrometheusProvider(prom_plan(url))
        canary = provider.observe("canary", window)
        stable_obs = provider.observe("stable", window)
        assert canary is not None and stable_obs is not None, provider.last_error
        sent = after["roles"]["canary"]["requests"] - before["roles"]["canary"]["requests"]
        assert canary.requests == sent  # counters read at both ends of the window: exact
        assert canary.errors == after["roles"]["canary"]["errors"] - before["roles"]["canary"]["errors"]
        assert canary.error_rate == pytest.approx(0.25, abs=0.06)
        assert stable_obs.errors == 0 and stable_obs.requests > 100
        assert canary.histogram is not None and canary.histogram.count == canary.requests
    finally:
        stop_process(prom)
        proxy.stop()


def test_saturation_query_for_any_provider(prom_stack: PromStack) -> None:
    from switchover.metrics.saturation_promql import read_saturation_query

    plan = prom_plan(prom_stack.url, saturation={"query": 'max(up{job="sw_adapters"}) * 0.25'})
    plan = plan.model_copy(update={"metrics": plan.metrics.model_copy(update={"provider": "builtin"})})
    assert read_saturation_query(plan, "canary", Window(time.time() - 10, time.time())) == pytest.approx(0.25)
    over = prom_plan(prom_stack.url, saturation={"query": 'max(up{job="sw_adapters"}) * 3'})
    assert read_saturation_query(over, "canary", Window(time.time() - 10, time.time())) is None  # not a 0-1 share
    gone = prom_plan(f"http://127.0.0.1:{free_port()}", saturation={"query": "vector(0.5)"})
    assert read_saturation_query(gone, "canary", Window(time.time() - 10, time.time())) is None
