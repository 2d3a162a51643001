"""The weighted split, sticky users, persistence across restarts, weight changes under load."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.integration.proxy.conftest import Upstream


def _side(client: httpx.Client, url: str, user: str | None = None) -> str:
    response = client.get(url + "/", headers={"x-user-id": user} if user else {})
    assert response.status_code == 200
    return response.headers["x-upstream"]


def test_split_follows_the_weight_within_wide_bounds(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url, "--weight", "30", "--app", "sw_proxy_split")
    with httpx.Client() as client:
        sides = [_side(client, proxy.url) for _ in range(400)]
    on_candidate = sides.count("candidate")
    # Binomial(400, 0.3): mean 120, sd 9.2; +-5 sd never fails by chance.
    assert 74 <= on_candidate <= 166, on_candidate
    stats = proxy.stats()
    assert stats["roles"]["canary"]["requests"] == on_candidate
    assert stats["roles"]["stable"]["requests"] == 400 - on_candidate
    assert stats["app"] == "sw_proxy_split"
    assert stats["split"] == {"candidate_weight": 30, "mirror_percent": 0}


def test_weight_0_and_100_are_exact(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url)
    with httpx.Client() as client:
        assert {_side(client, proxy.url) for _ in range(30)} == {"stable"}
        assert proxy.set_split(candidate_weight=100).status_code == 200
        assert {_side(client, proxy.url) for _ in range(30)} == {"candidate"}


def test_sticky_users_stay_put_move_monotonically_and_survive_a_restart(
        stable: Upstream, candidate: Upstream, start_proxy, tmp_path: Path) -> None:
    state = tmp_path / "split.json"
    users = [f"user-{i}" for i in range(150)]
    proxy = start_proxy(stable.url, candidate.url, "--weight", "20", "--sticky-header", "X-User-Id", state_file=state)
    with httpx.Client() as client:
        at_20 = {u: _side(client, proxy.url, u) for u in users}
        again = {u: _side(client, proxy.url, u) for u in users}
        assert again == at_20  # same weight: nobody flips
        assert 0 < list(at_20.values()).count("candidate") < len(users)
        assert proxy.stop() == 0
        # Restarted with a different --weight: the saved split wins, nobody moves.
        proxy = start_proxy(stable.url, candidate.url, "--weight", "90", "--sticky-header", "X-User-Id",
                            state_file=state)
        assert proxy.split() == {"candidate_weight": 20, "mirror_percent": 0}
        assert {u: _side(client, proxy.url, u) for u in users} == at_20
        assert "using the split saved in" in proxy.output()
        proxy.set_split(candidate_weight=50)
        at_50 = {u: _side(client, proxy.url, u) for u in users}
    moved_back = [u for u in users if at_20[u] == "candidate" and at_50[u] == "stable"]
    assert moved_back == []  # monotone: a user on the candidate at 20% is still there at 50%
    assert list(at_50.values()).count("candidate") > list(at_20.values()).count("candidate")


def test_sticky_cookie(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url, "--weight", "50", "--sticky-cookie", "uid")
    with httpx.Client() as client:
        for i in range(20):
            cookie = {"cookie": f"theme=dark; uid=u{i}; other=1"}
            first = client.get(proxy.url + "/", headers=cookie).headers["x-upstream"]
            assert all(client.get(proxy.url + "/", headers=cookie).headers["x-upstream"] == first for _ in range(3))


def test_weight_changes_under_load_fail_no_request(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url, "--weight", "0")
    failures: list[str] = []
    done = threading.Event()
    counts = [0] * 4

    def load(i: int) -> None:
        with httpx.Client() as client:
            for _ in range(2000):  # bounded; stops early when the weight changes are over
                if done.is_set():
                    return
                try:
                    response = client.get(proxy.url + "/echo")
                    if response.status_code != 200:
                        failures.append(str(response.status_code))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                counts[i] += 1

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for weight in (10, 25, 50, 100, 50, 0, 100, 0):
        before = sum(counts)
        assert proxy.set_split(candidate_weight=weight).status_code == 200
        while sum(counts) < before + 20 and any(t.is_alive() for t in threads):
            threading.Event().wait(0.01)
    done.set()
    for t in threads:
        t.join(30)
    assert failures == []
    stats = proxy.stats()
    assert stats["roles"]["canary"]["requests"] > 0 and stats["roles"]["stable"]["requests"] > 0
    assert stats["roles"]["canary"]["errors"] == stats["roles"]["stable"]["errors"] == 0
