"""--workers N: one split and one set of counters for all workers, seen from the admin API."""

from __future__ import annotations

import http.client
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.proxy.conftest import Upstream


def _fresh_connection_sides(url: str, n: int) -> set[str]:
    # A new connection each time: the kernel spreads connections over the workers (SO_REUSEPORT).
    host, port = url.removeprefix("http://").split(":")
    sides = set()
    for _ in range(n):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        sides.add(response.getheader("x-upstream") or "")
        conn.close()
    return sides


def test_workers_share_the_split_and_the_counters(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url, "--workers", "2", "--weight", "0")
    assert "workers=2" in proxy.output()
    assert _fresh_connection_sides(proxy.url, 40) == {"stable"}
    assert proxy.set_split(candidate_weight=100).status_code == 200
    assert _fresh_connection_sides(proxy.url, 40) == {"candidate"}  # every worker saw the change at once

    def load() -> None:
        with httpx.Client() as client:
            for _ in range(50):
                assert client.get(proxy.url + "/").status_code == 200

    users = [threading.Thread(target=load) for _ in range(6)]
    for user in users:
        user.start()
    for user in users:
        user.join(60)
    stats = proxy.stats()
    assert stats["roles"]["stable"]["requests"] == 40
    assert stats["roles"]["canary"]["requests"] == 40 + 300  # summed over the workers
    assert sum(stats["roles"]["canary"]["latency_counts"]) == 340
    assert stats["split"] == {"candidate_weight": 100, "mirror_percent": 0}


def test_workers_drain_on_sigterm(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url, "--workers", "2")
    answers: list[int] = []
    users = [threading.Thread(target=lambda: answers.append(httpx.get(proxy.url + "/slow?s=1.5",
                                                                      timeout=30).status_code)) for _ in range(4)]
    for user in users:
        user.start()
    deadline = time.monotonic() + 10
    while proxy.stats()["in_flight"]["stable"] < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    proxy.proc.send_signal(signal.SIGTERM)
    for user in users:
        user.join(30)
    assert proxy.proc.wait(30) == 0
    assert answers == [200] * 4
    assert "drained, exiting" in proxy.output()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid):
            found.append(int(stat.parent.name))
    return found


def _running(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":  # a zombie has exited (its parent, gone, cannot reap it; init will)
            out.append(pid)
    return out


def test_workers_never_outlive_a_killed_parent(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url, "--workers", "2")
    workers = _children(proxy.proc.pid)
    assert len(workers) == 2
    proxy.proc.kill()  # SIGKILL: no chance to stop its workers itself
    proxy.proc.wait()
    deadline = time.monotonic() + 20
    while _running(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(workers) == []
    with pytest.raises(httpx.ConnectError):  # nobody serves the port any more
        httpx.get(proxy.url + "/")
