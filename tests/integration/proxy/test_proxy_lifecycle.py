"""Start-up errors, the admin API, /metrics, and SIGTERM draining."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.proxy.conftest import Upstream, launch


def test_sigterm_drains_requests_in_flight_then_exits_0(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url)
    answers: list[httpx.Response] = []
    users = [threading.Thread(target=lambda: answers.append(httpx.get(proxy.url + "/slow?s=1.5", timeout=30)))
             for _ in range(3)]
    for user in users:
        user.start()
    deadline = time.monotonic() + 10
    while proxy.stats()["in_flight"]["stable"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    proxy.proc.send_signal(signal.SIGTERM)
    for user in users:
        user.join(30)
    assert proxy.proc.wait(30) == 0
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.text for a in answers] == ["stable"] * 3
    assert "drained, exiting" in proxy.output()
    with pytest.raises(httpx.ConnectError):  # no longer accepting
        httpx.get(proxy.url + "/")


def test_admin_api_rejects_bad_input_and_changes_nothing(stable: Upstream, candidate: Upstream, start_proxy,
                                                        tmp_path: Path) -> None:
    state = tmp_path / "split.json"
    proxy = start_proxy(stable.url, candidate.url, "--weight", "10", state_file=state)
    for body in ('{"candidate_weight": 101}', '{"candidate_weight": "50"}', '{"weight": 50}', "not json", "{}",
                 '{"candidate_weight": 20, "mirror_percent": -1}', "[1]", '{"candidate_weight": true}'):
        response = httpx.put(proxy.admin + "/api/v1/split", content=body)
        assert response.status_code == 400, body
        assert response.json()["error"]
    assert proxy.split() == {"candidate_weight": 10, "mirror_percent": 0}
    assert json.loads(state.read_text())["candidate_weight"] == 10
    assert proxy.set_split(mirror_percent=5).json() == {"candidate_weight": 10, "mirror_percent": 5}
    assert json.loads(state.read_text())["mirror_percent"] == 5
    assert httpx.get(proxy.admin + "/healthz").json() == {"status": "ok"}
    assert httpx.get(proxy.admin + "/api/v1/parity").json() == {"enabled": False}
    assert httpx.get(proxy.admin + "/nope").status_code == 404


def test_admin_token_is_required_when_set(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url, "--admin-token", "env:SW_PROXY_TOKEN",
                        env={"SW_PROXY_TOKEN": "s3cret-token"})
    assert httpx.get(proxy.admin + "/api/v1/split").status_code == 401
    assert httpx.put(proxy.admin + "/api/v1/split", json={"candidate_weight": 50},
                     headers={"authorization": "Bearer wrong"}).status_code == 401
    proxy.headers = {"authorization": "Bearer s3cret-token"}
    assert proxy.set_split(candidate_weight=50).status_code == 200
    assert proxy.split()["candidate_weight"] == 50
    assert httpx.get(proxy.admin + "/healthz").status_code == 200
    assert "s3cret-token" not in proxy.output()


@pytest.mark.parametrize(("flags", "message"), [
    (["--admin", "0.0.0.0:0"], "not a loopback address: give --admin-token"),
    (["--workers", "100"], "--workers must be within 1-64"),
    (["--weight", "120"], "--weight must be within 0-100"),
    (["--admin-token", "plain-token"], "--admin-token takes env:NAME"),
    (["--admin-token", "env:SW_PROXY_NOT_SET"], "SW_PROXY_NOT_SET is not set"),
])
def test_bad_start_up_exits_2_with_a_clear_message(stable: Upstream, tmp_path: Path, flags: list[str],
                                                    message: str) -> None:
    proxy = launch(["--listen", "127.0.0.1:0", "--stable", stable.url, "--candidate", stable.url,
                    "--state-file", str(tmp_path / "s.json"), *flags], tmp_path, wait=False)
    assert proxy.proc.wait(30) == 2
    assert message in proxy.output()
    assert "Traceback" not in proxy.output()


def test_bad_urls_state_file_and_busy_port_exit_2(stable: Upstream, tmp_path: Path, start_proxy) -> None:
    for flags, message in ((["--stable", "ftp://x", "--candidate", stable.url], "--stable: expected an http://"),
                           (["--stable", stable.url + "/api", "--candidate", stable.url], "origin only")):
        proxy = launch(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", *flags], tmp_path, wait=False)
        assert proxy.proc.wait(30) == 2 and message in proxy.output()
    broken = tmp_path / "broken.json"
    broken.write_text('{"candidate_weight": 400}')
    proxy = launch(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--stable", stable.url, "--candidate",
                    stable.url, "--state-file", str(broken)], tmp_path, wait=False)
    assert proxy.proc.wait(30) == 2 and f"{broken}: not a valid proxy state file" in proxy.output()
    running = start_proxy(stable.url, stable.url)
    port = running.url.rsplit(":", 1)[1]
    proxy = launch(["--listen", f"127.0.0.1:{port}", "--admin", "127.0.0.1:0", "--stable", stable.url,
                    "--candidate", stable.url, "--state-file", str(tmp_path / "t.json")], tmp_path, wait=False)
    assert proxy.proc.wait(30) == 2 and f"cannot listen on 127.0.0.1:{port}" in proxy.output()


def test_metrics_use_the_labels_teams_query(stable: Upstream, upstreams, start_proxy) -> None:
    failing = upstreams("candidate", "--fail")
    proxy = start_proxy(stable.url, failing.url, "--weight", "100", "--app", "orders")
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(proxy.url + "/").status_code == 200
    text = httpx.get(proxy.admin + "/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {(s.labels["role"], s.labels["status"]): s.value
                for s in families["http_requests"].samples if s.name == "http_requests_total"}
    assert requests == {("stable", "200"): 3.0, ("canary", "503"): 3.0}
    assert all(s.labels["app"] == "orders" for s in families["http_requests"].samples)
    buckets = [s for s in families["http_request_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["role"] == "stable"]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 3.0
    assert len(buckets) > 60  # log-linear buckets, fine enough for p95/p99
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative
    retries = families["switchover_proxy_retries"].samples[0]
    assert retries.value == 3.0
    weight = families["switchover_proxy_candidate_weight"].samples[0]
    assert weight.value == 100.0
    stats = proxy.stats()
    assert stats["roles"]["stable"]["latency_counts"][-1] == 0
    assert sum(stats["roles"]["stable"]["latency_counts"]) == 3
    assert len(stats["roles"]["stable"]["latency_counts"]) == len(stats["latency_bounds"]) + 1
