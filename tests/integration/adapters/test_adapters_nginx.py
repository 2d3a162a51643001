"""The nginx router against a real nginx under load: weights honoured, zero failed requests across reloads."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from switchover.errors import UserError
from switchover.plan import Plan, plan_from_dict
from switchover.traffic.base import router_for
from switchover.traffic.nginx import NginxRouter, render_config
from tests.integration.adapters.conftest import Nginx, Service

pytestmark = pytest.mark.nginx


def nginx_plan(ng: Nginx, stable: Service, candidate: Service, **traffic: Any) -> Plan:
    return plan_from_dict({
        "name": "sw_adapters_orders",
        "stable": {"url": stable.url}, "candidate": {"url": candidate.url},
        "traffic": {"driver": "nginx", "listen": f"127.0.0.1:{ng.port}",
                    "nginx": {"config_path": str(ng.include), "test": ng.argv("-t", "-q"),
                              "reload": ng.argv("-s", "reload")}, **traffic},
    })


def started(ng: Nginx, plan: Plan) -> NginxRouter:
    assert plan.traffic.nginx is not None
    ng.include.write_text(render_config(plan, plan.traffic.nginx, 0, 0))
    ng.start()
    router = router_for(plan)
    assert isinstance(router, NginxRouter)
    return router


def side(client: httpx.Client, url: str, **headers: str) -> str:
    answer = client.get(url, headers=headers)
    assert answer.status_code == 200
    return str(answer.json()["service"])


def share_on_candidate(url: str, n: int) -> float:
    with httpx.Client(timeout=5) as client:
        return sum(side(client, url) == "candidate" for _ in range(n)) / n


def test_weights_are_honoured_and_read_back(nginx: Nginx, services: tuple[Service, Service]) -> None:
    stable, candidate = services
    router = started(nginx, nginx_plan(nginx, stable, candidate))
    url = f"http://127.0.0.1:{nginx.port}/orders"
    assert router.is_online()
    assert router.get_routes() == (0, 0)
    assert share_on_candidate(url, 100) == 0.0
    router.set_routes(30, 0)
    time.sleep(0.3)  # the old worker finishes; new connections reach the new one
    assert router.get_routes() == (30, 0)
    share = share_on_candidate(url, 600)
    assert 0.2 < share < 0.4, share
    router.set_routes(100, 0)
    time.sleep(0.3)
    assert share_on_candidate(url, 50) == 1.0
    router.set_routes(0, 0)  # rollback
    time.sleep(0.3)
    assert router.get_routes() == (0, 0)
    assert share_on_candidate(url, 50) == 0.0


def test_sticky_users_only_move_towards_the_candidate(nginx: Nginx, services: tuple[Service, Service]) -> None:
    stable, candidate = services
    router = started(nginx, nginx_plan(nginx, stable, candidate, sticky={"header": "X-User-Id"}))
    url = f"http://127.0.0.1:{nginx.port}/"
    users = [f"user-{i}" for i in range(200)]
    router.set_routes(25, 0)
    time.sleep(0.3)
    with httpx.Client(timeout=5) as client:
        at_25 = {u: side(client, url, **{"X-User-Id": u}) for u in users}
        again = {u: side(client, url, **{"X-User-Id": u}) for u in users}
        assert at_25 == again  # a user keeps their side while the weight is unchanged
        router.set_routes(60, 0)
        time.sleep(0.3)
        at_60 = {u: side(client, url, **{"X-User-Id": u}) for u in users}
    moved_back = [u for u in users if at_25[u] == "candidate" and at_60[u] == "stable"]
    assert moved_back == []
    assert sum(v == "candidate" for v in at_60.values()) > sum(v == "candidate" for v in at_25.values())


def test_zero_failed_requests_across_reloads(nginx: Nginx, services: tuple[Service, Service]) -> None:
    stable, candidate = services
    router = started(nginx, nginx_plan(nginx, stable, candidate))
    url = f"http://127.0.0.1:{nginx.port}/load"
    stop = threading.Event()
    failures: list[str] = []
    done: list[int] = []

    def load() -> None:
        count = 0
        deadline = time.monotonic() + 30
        # A new connection per request: an idle keep-alive connection that the old worker closes at the
        # very moment a client reuses it is the HTTP/1.1 race every client must retry (docs/traffic.md);
        # what nginx itself must never do is refuse or fail a request, which this measures.
        with httpx.Client(timeout=5, headers={"Connection": "close"}) as client:
            while not stop.is_set() and count < 3000 and time.monotonic() < deadline:
                try:
                    answer = client.get(url)
                    if answer.status_code != 200:
                        failures.append(f"status {answer.status_code}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                count += 1
        done.append(count)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for weight in (10, 25, 50, 75, 100, 50, 0, 10, 25, 0):
            router.set_routes(weight, 0)
            assert router.get_routes() == (weight, 0)
            time.sleep(0.25)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=40)
    assert sum(done) > 200  # the load really ran across the reloads
    assert failures == []
    assert {h.split()[0] for h in candidate.hits} == {"GET"} and stable.hits


def test_a_config_nginx_rejects_is_rolled_back(nginx: Nginx, services: tuple[Service, Service]) -> None:
    stable, candidate = services
    plan = nginx_plan(nginx, stable, candidate)
    router = started(nginx, plan)
    router.set_routes(20, 0)
    before = nginx.include.read_text()
    # A server_name nginx refuses: the check fails, the previous file is put back, nginx keeps serving.
    bad = plan.model_copy(update={"traffic": plan.traffic.model_copy(update={
        "nginx": plan.traffic.nginx.model_copy(update={"server_name": "bad;name {"})})})  # type: ignore[union-attr]
    broken = NginxRouter(bad)
    with pytest.raises(UserError, match="nginx configuration check"):
        broken.set_routes(50, 0)
    assert nginx.include.read_text() == before
    assert router.get_routes() == (20, 0)


def test_mirror_sends_a_sample_of_copies(nginx: Nginx, services: tuple[Service, Service]) -> None:
    stable, candidate = services
    from tests.integration.adapters.conftest import start_service

    shadow = start_service("parity-serve")
    try:
        plan = nginx_plan(nginx, stable, candidate)
        plan = plan.model_copy(update={"traffic": plan.traffic.model_copy(update={
            "nginx": plan.traffic.nginx.model_copy(update={"mirror_url": shadow.url})})})  # type: ignore[union-attr]
        router = started(nginx, plan)
        router.set_routes(0, 50)
        time.sleep(0.3)
        assert router.get_routes() == (0, 50)
        with httpx.Client(timeout=5) as client:
            for i in range(200):
                assert side(client, f"http://127.0.0.1:{nginx.port}/item/{i}") == "stable"
        time.sleep(0.5)
        copies = len(shadow.hits)
        assert 50 < copies < 150, copies
        router.set_routes(0, 0)
        time.sleep(0.3)
        with httpx.Client(timeout=5) as client:
            for i in range(50):
                side(client, f"http://127.0.0.1:{nginx.port}/after/{i}")
        time.sleep(0.3)
        assert not [h for h in shadow.hits if "/after/" in h]
    finally:
        shadow.server.shutdown()
        shadow.server.server_close()


def test_stopped_nginx_is_offline(nginx: Nginx, services: tuple[Service, Service]) -> None:
    stable, candidate = services
    router = started(nginx, nginx_plan(nginx, stable, candidate))
    assert router.is_online()
    nginx.stop()
    assert not router.is_online()  # the configuration is still valid, but nothing serves it
    with pytest.raises(UserError, match="nginx reload"):
        router.set_routes(40, 0)
    assert router.get_routes() == (0, 0)  # the file still says what nginx last loaded


def test_idempotent_requests_failing_on_the_candidate_are_answered_by_stable(
        nginx: Nginx, services: tuple[Service, Service]) -> None:
    stable, candidate = services
    candidate.routes[("GET", "/flaky")] = lambda _h, _b: (503, {}, b"overloaded")
    candidate.routes[("POST", "/flaky")] = lambda _h, _b: (503, {}, b"overloaded")
    router = started(nginx, nginx_plan(nginx, stable, candidate))
    router.set_routes(100, 0)
    time.sleep(0.3)
    with httpx.Client(timeout=5) as client:
        post = client.post(f"http://127.0.0.1:{nginx.port}/flaky", content=b"{}")
        gets = [client.get(f"http://127.0.0.1:{nginx.port}/flaky") for _ in range(20)]
    assert post.status_code == 503  # a write is never repeated on stable
    assert stable.hits.count("POST /flaky") == 0
    assert {g.status_code for g in gets} == {200}
    assert {g.json()["service"] for g in gets} == {"stable"}
    # after max_fails (ejection.consecutive_failures) the candidate is ejected: stable answers directly
    assert candidate.hits.count("GET /flaky") == 5
