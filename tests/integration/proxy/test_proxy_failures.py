"""Failure handling: retries on stable, ejection, 502/504, slowloris, limits, overload."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx

from tests.integration.proxy.conftest import Upstream, closed_port_url, write_plan


def test_candidate_down_gets_still_succeed_and_the_candidate_is_ejected(stable: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, closed_port_url(), "--weight", "100")
    with httpx.Client() as client:
        answers = [client.get(proxy.url + "/") for _ in range(20)]
    assert [a.status_code for a in answers] == [200] * 20
    assert {a.headers["x-upstream"] for a in answers} == {"stable"}
    stats = proxy.stats()
    # Each failed candidate attempt counts as a canary error; the user's answer counts under stable.
    assert stats["roles"]["canary"]["errors"] >= 5
    assert stats["roles"]["canary"]["status"]["502"] == stats["roles"]["canary"]["requests"]
    assert stats["roles"]["stable"]["requests"] == 20
    assert stats["retries"]["attempted"] == stats["roles"]["canary"]["requests"]
    assert stats["candidate"]["ejected"] is True and stats["candidate"]["ejections"] == 1
    # Ejected: the candidate's share goes to stable directly, without new canary attempts.
    assert stats["roles"]["canary"]["requests"] < 20


def test_candidate_5xx_is_retried_on_stable_for_idempotent_requests_only(
        stable: Upstream, upstreams, start_proxy) -> None:
    failing = upstreams("candidate", "--fail")
    proxy = start_proxy(stable.url, failing.url, "--weight", "100")
    with httpx.Client() as client:
        get = client.get(proxy.url + "/echo")
        post = client.post(proxy.url + "/echo", content=b"order")
        keyed = client.post(proxy.url + "/echo", content=b"order", headers={"idempotency-key": "k1"})
    assert get.status_code == 200 and get.json()["upstream"] == "stable"
    assert post.status_code == 503  # not idempotent: the candidate's answer stands
    assert keyed.status_code == 200 and keyed.json()["body_length"] == 5  # the body was replayed on stable
    stats = proxy.stats()
    assert stats["roles"]["canary"]["status"] == {"503": 3}
    assert stats["retries"] == {"attempted": 2, "succeeded": 2, "budget_exhausted": 0}


def test_ejected_candidate_recovers_after_a_successful_probe(stable: Upstream, start_proxy, tmp_path: Path) -> None:
    # The candidate is down at first (a free port), then comes up on that port.
    dead = closed_port_url()
    plan = write_plan(tmp_path, stable.url, dead, {"ejection": {"consecutive_failures": 2, "base_time": "1s"}})
    proxy = start_proxy(None, None, "--plan", str(plan), "--weight", "100")
    with httpx.Client() as client:
        for _ in range(4):
            assert client.get(proxy.url + "/").status_code == 200
        assert proxy.stats()["candidate"]["ejected"] is True
        port = dead.rsplit(":", 1)[1]
        import subprocess
        import sys

        up = subprocess.Popen([sys.executable, str(Path(__file__).parent / "upstream_app.py"), "candidate", port],
                              stdout=subprocess.PIPE, text=True)
        try:
            assert up.stdout is not None and int(up.stdout.readline()) == int(port)
            sides: list[str] = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "candidate" not in sides:
                sides.append(client.get(proxy.url + "/").headers["x-upstream"])
                time.sleep(0.1)
            assert "candidate" in sides
            assert proxy.stats()["candidate"]["ejected"] is False
        finally:
            up.kill()
            up.wait()


def test_stable_down_gives_502_with_a_clear_body(start_proxy) -> None:
    proxy = start_proxy(closed_port_url(), closed_port_url())
    response = httpx.get(proxy.url + "/")
    assert response.status_code == 502
    assert "stable refused the connection" in response.text
    assert proxy.stats()["roles"]["stable"]["status"] == {"502": 1}


def test_slow_upstream_gives_504(stable: Upstream, candidate: Upstream, start_proxy, tmp_path: Path) -> None:
    plan = write_plan(tmp_path, stable.url, candidate.url, {"limits": {"response_timeout": "1s"}})
    proxy = start_proxy(None, None, "--plan", str(plan))
    response = httpx.get(proxy.url + "/slow?s=5", timeout=30)
    assert response.status_code == 504
    assert "stable did not answer in time" in response.text
    assert httpx.get(proxy.url + "/").status_code == 200  # the proxy carries on
    assert proxy.stats()["roles"]["stable"]["status"] == {"200": 1, "504": 1}


def test_slowloris_client_is_cut_off(stable: Upstream, candidate: Upstream, start_proxy, tmp_path: Path) -> None:
    plan = write_plan(tmp_path, stable.url, candidate.url, {"limits": {"header_timeout": "1s"}})
    proxy = start_proxy(None, None, "--plan", str(plan))
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        received = b""
        for i in range(40):  # one header line every 0.25 s, never finishing the head
            try:
                sock.sendall(b"x-slow-%d: 1\r\n" % i)
            except OSError:
                break
            sock.settimeout(0.25)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            received += chunk
            if not chunk or b"408" in received:
                break
    assert received.startswith(b"HTTP/1.1 408")
    assert i < 39  # cut off before the client gave up


def test_oversize_header_gets_431(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url)
    response = httpx.get(proxy.url + "/", headers={"x-big": "a" * 70_000})
    assert response.status_code == 431
    many = {f"x-h{i}": "b" * 100 for i in range(700)}
    assert httpx.get(proxy.url + "/", headers=many).status_code == 431
    assert httpx.get(proxy.url + "/").status_code == 200


def test_overload_answers_503_with_retry_after_at_once(stable: Upstream, candidate: Upstream, start_proxy,
                                                        tmp_path: Path) -> None:
    plan = write_plan(tmp_path, stable.url, candidate.url, {"limits": {"max_in_flight": 1}})
    proxy = start_proxy(None, None, "--plan", str(plan))
    slow: list[int] = []
    first = threading.Thread(target=lambda: slow.append(httpx.get(proxy.url + "/slow?s=2", timeout=30).status_code))
    first.start()
    deadline = time.monotonic() + 10
    while proxy.stats()["in_flight"]["stable"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    rejected = httpx.get(proxy.url + "/")
    assert slow == []  # answered while the first request was still in flight
    first.join(30)
    assert rejected.status_code == 503 and rejected.headers["retry-after"] == "1"
    assert slow == [200]
    assert proxy.stats()["overload"]["rejected"] == 1
