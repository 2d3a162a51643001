"""Parity behind real routers: the built-in proxy diffing in place, nginx `mirror` -> `parity serve`."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest

from switchover.demo.runner import free_port
from tests.integration.parity.conftest import (
    cli,
    start_nginx,
    start_proxy,
    start_serve,
    wait_for,
    write_plan,
)

IGNORE = {"ignore": ["$.generated_at", "$.items[*].etag"]}


def candidate_changes(oid: int, doc: dict[str, Any]) -> dict[str, Any]:
    if oid % 10 == 7:
        doc["total_cents"] += 1
    if oid % 25 == 3:
        doc["status"] = 3  # a string became a number
    if oid % 50 == 11:
        del doc["items"]
    return doc


def proxy_plan(dir_: Any, stable: str, candidate: str, **parity: Any) -> tuple[Any, int, int]:
    listen, admin = free_port(), free_port()
    dir_.mkdir(parents=True, exist_ok=True)
    plan = write_plan(dir_, stable, candidate, {**IGNORE, **parity})
    text = plan.read_text().replace("driver: proxy", f"driver: proxy\n  listen: 127.0.0.1:{listen}\n"
                                    f"  admin: 127.0.0.1:{admin}\n  state_file: {dir_}/split.json")
    plan.write_text(text)
    return plan, listen, admin


def fields_of(report: dict[str, Any]) -> set[tuple[str, str, str, int]]:
    return {(e["endpoint"], f["field"], f["kind"], f["diffs"]) for e in report["endpoints"] for f in e["fields"]}


@pytest.mark.nginx
def test_parity_serve_behind_nginx_mirror_reports_the_same_fields_as_the_builtin_proxy(
        services, processes, tmp_path) -> None:
    stable, candidate = services(), services(candidate_changes)
    paths = [f"/orders/{i}" for i in range(200)]

    # 1. The built-in proxy, mirror 100%, diffing in place.
    plan_a, listen, admin = proxy_plan(tmp_path / "proxy", stable.url, candidate.url)
    start_proxy(processes, plan_a, admin)
    assert httpx.put(f"http://127.0.0.1:{admin}/api/v1/split", json={"mirror_percent": 100}).status_code == 200
    with httpx.Client(base_url=f"http://127.0.0.1:{listen}") as users:
        assert all(users.get(p).status_code == 200 for p in paths)
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{admin}/api/v1/parity").json()["compared"] == 200,
             what="the proxy to compare 200 answers")
    via_proxy = httpx.get(f"http://127.0.0.1:{admin}/api/v1/parity").json()

    # 2. nginx `mirror` -> `switchover parity serve`, which calls stable and the candidate itself.
    (tmp_path / "serve").mkdir()
    plan_b = write_plan(tmp_path / "serve", stable.url, candidate.url, IGNORE)
    serve_url = start_serve(processes, plan_b, tmp_path)
    nginx = start_nginx(processes, tmp_path / "nginx", stable.url, serve_url)
    with httpx.Client(base_url=nginx) as users:
        assert all(users.get(p).status_code == 200 for p in paths)
    wait_for(lambda: json.loads(cli("parity", "report", "--plan", str(plan_b), "--json").stdout or "{}")
             .get("compared", 0) >= 201, what="parity serve to compare the mirrored copies")
    via_nginx = json.loads(cli("parity", "report", "--plan", str(plan_b), "--json").stdout)

    expected = {("GET /orders/{id}", "$.total_cents", "changed", 20), ("GET /orders/{id}", "$.status", "type", 8),
                ("GET /orders/{id}", "$.items", "missing", 4)}
    assert fields_of(via_proxy) == expected
    # nginx also mirrored the readiness probe start_nginx made (GET /orders/0): one more equal answer.
    assert fields_of(via_nginx) == expected
    assert via_proxy["regressed"] == via_nginx["regressed"] == 20 + 8 + 4  # no id has two changes
    # Every copy the candidate saw carried the shadow header; stable saw each path from users and serve.
    copies = [h for _, p, h in candidate.seen if p.startswith("/orders/")]
    assert copies and all(h.get("x-switchover-shadow") == "1" for h in copies)


@pytest.mark.parametrize("copies_from", ["proxy", "worker"])
def test_the_builtin_proxy_with_diff_on_worker_finds_the_same_and_diffs_nothing_on_its_loop(
        services, processes, tmp_path, copies_from: str) -> None:
    # copies_from: worker: the parity process also sends the copies, and counts what came of them in
    # the proxy's own stats (mirror, the shadow role) as well as in the parity report's counters.
    stable, candidate = services(), services(candidate_changes)
    plan, listen, admin = proxy_plan(tmp_path, stable.url, candidate.url, diff_on="worker", copies_from=copies_from)
    start_proxy(processes, plan, admin)
    assert httpx.put(f"http://127.0.0.1:{admin}/api/v1/split", json={"mirror_percent": 100}).status_code == 200
    with httpx.Client(base_url=f"http://127.0.0.1:{listen}") as users:
        assert all(users.get(f"/orders/{i}").status_code == 200 for i in range(200))
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{admin}/api/v1/parity").json()["compared"] == 200,
             what="the proxy's worker to compare 200 answers")
    report = httpx.get(f"http://127.0.0.1:{admin}/api/v1/parity").json()
    assert fields_of(report) == {("GET /orders/{id}", "$.total_cents", "changed", 20),
                                 ("GET /orders/{id}", "$.status", "type", 8), ("GET /orders/{id}", "$.items", "missing", 4)}
    sink = report["sink"]
    assert (sink["diffed_in_proxy"], sink["to_worker"], sink["dropped"]) == (0, 200, 0)
    copies = [h for _, p, h in candidate.seen if p.startswith("/orders/")]
    assert len(copies) == 200 and all(h.get("x-switchover-shadow") == "1" for h in copies)
    stats = httpx.get(f"http://127.0.0.1:{admin}/api/v1/stats").json()
    assert (stats["mirror"]["sent"], stats["mirror"]["completed"], stats["mirror"]["failed"]) == (200, 200, 0)
    shadow = stats["roles"]["shadow"]
    assert (shadow["requests"], shadow["status"], sum(shadow["latency_counts"])) == (200, {"200": 200}, 200)
    metrics = httpx.get(f"http://127.0.0.1:{admin}/metrics").text
    assert re.search(r'http_requests_total\{app="[^"]*",role="shadow",status="200"\} 200\.0', metrics), metrics[:2000]
    if copies_from == "worker":
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{admin}/api/v1/parity").json()["counters"]
                 .get("copies_completed") == 200, what="the worker to count the copies it sent")
        counters = httpx.get(f"http://127.0.0.1:{admin}/api/v1/parity").json()["counters"]
        assert (counters["copies_sent"], counters.get("copies_failed", 0), counters.get("copies_dropped", 0)) == (200, 0, 0)


@pytest.mark.parametrize("copies_from", ["proxy", "worker"])
def test_users_complete_while_slow_copies_are_in_flight(services, processes, tmp_path, copies_from: str) -> None:
    stable, candidate = services(), services(delay=2.0)
    plan, listen, admin = proxy_plan(tmp_path, stable.url, candidate.url, copies_from=copies_from)
    start_proxy(processes, plan, admin)
    assert httpx.put(f"http://127.0.0.1:{admin}/api/v1/split", json={"mirror_percent": 100}).status_code == 200
    answered_before_copy = []
    with httpx.Client(base_url=f"http://127.0.0.1:{listen}") as users:
        for i in range(10):
            r = users.get(f"/orders/{1000 + i}")
            assert r.status_code == 200 and r.json()["id"] == 1000 + i
            # The user has stable's answer; the candidate has not answered this request's copy yet.
            answered_before_copy.append(f"/orders/{1000 + i}" not in candidate.done)
    assert all(answered_before_copy)
    wait_for(lambda: len(candidate.done) == 10, what="the slow candidate to answer the copies")
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{admin}/api/v1/parity").json()["compared"] == 10,
             what="the copies to be diffed")
    report = httpx.get(f"http://127.0.0.1:{admin}/api/v1/parity").json()
    # Same service, different timestamps only (ignored): nothing regressed.
    assert (report["regressed"], report["sink"]["dropped"]) == (0, 0)


def test_the_worker_sends_copies_handed_over_in_bursts_pipelined(services, processes, tmp_path) -> None:
    # copies_from: worker: copies reach the worker in bursts (one hand-over every 20 ms), so many in
    # flight at once is no sign of a candidate falling behind: they leave pipelined, up to 16 on a
    # connection, not each on a connection of its own (which cost the worker a third more CPU per pair).
    stable, candidate = services(), services()
    plan, listen, admin = proxy_plan(tmp_path, stable.url, candidate.url, diff_on="worker", copies_from="worker")
    start_proxy(processes, plan, admin)
    assert httpx.put(f"http://127.0.0.1:{admin}/api/v1/split", json={"mirror_percent": 100}).status_code == 200

    async def users() -> list[int]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listen}", limits=limits, timeout=30) as client:
            statuses: list[int] = []
            for _ in range(4):  # four bursts of 64 users at once
                answers = await asyncio.gather(*(client.get(f"/orders/{i}") for i in range(64)))
                statuses += [r.status_code for r in answers]
            return statuses

    assert asyncio.run(users()) == [200] * 256
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{admin}/api/v1/parity").json()["compared"] == 256,
             what="the worker to compare 256 answers")
    report = httpx.get(f"http://127.0.0.1:{admin}/api/v1/parity").json()
    assert (report["regressed"], report["sink"]["dropped"], report["counters"].get("copies_dropped", 0)) == (0, 0, 0)
    copies = [h for _, p, h in candidate.seen if p.startswith("/orders/")]
    assert len(copies) == 256
    assert len(candidate.peers) <= 8, f"{len(candidate.peers)} connections for 256 copies"


@pytest.mark.nginx
def test_parity_serve_does_not_forward_writes_and_answers_at_once(services, processes, tmp_path) -> None:
    stable, candidate = services(), services(delay=2.0)
    plan = write_plan(tmp_path, stable.url, candidate.url, IGNORE)
    serve_url = start_serve(processes, plan, tmp_path)
    with httpx.Client(base_url=serve_url) as mirror_source:
        r = mirror_source.post("/orders", json={"sku": "S1"})
        assert r.status_code == 202
        for i in range(5):
            assert mirror_source.get(f"/orders/{i}").status_code == 202
        # All six copies were accepted while the slow candidate had answered none.
        assert candidate.done == []
    wait_for(lambda: len(candidate.done) == 5, what="the candidate to answer the reads")
    assert not [s for s in stable.seen + candidate.seen if s[0] == "POST"]


@pytest.mark.nginx
def test_parity_serve_bounds_its_queue_when_the_candidate_is_slow(services, processes, tmp_path) -> None:
    stable, candidate = services(), services(delay=2.0)
    plan = write_plan(tmp_path, stable.url, candidate.url, {**IGNORE, "queue": 5, "concurrency": 1})
    serve_url = start_serve(processes, plan, tmp_path)
    with httpx.Client(base_url=serve_url) as mirror_source:
        assert all(mirror_source.get(f"/orders/{i}").status_code == 202 for i in range(30))
    # One copy in flight (none if the worker had not taken one yet), five waiting: the rest
    # were dropped and counted, not piled up.
    wait_for(lambda: json.loads(cli("parity", "report", "--plan", str(plan), "--json").stdout or "{}")
             .get("counters", {}).get("dropped", 0) >= 24, what="the drops to be counted")
    report = json.loads(cli("parity", "report", "--plan", str(plan), "--json").stdout)
    assert report["counters"]["dropped"] in (24, 25)
    assert len(candidate.seen) <= 6


def test_parity_serve_answers_its_report_and_health_on_its_listen_address(services, processes, tmp_path) -> None:
    stable, candidate = services(), services(candidate_changes)
    plan = write_plan(tmp_path, stable.url, candidate.url, IGNORE)
    serve_url = start_serve(processes, plan, tmp_path)
    with httpx.Client(base_url=serve_url) as client:
        assert client.get("/healthz").json() == {"ok": True}
        assert all(client.get(f"/orders/{i}").status_code == 202 for i in range(10))
        wait_for(lambda: client.get("/api/v1/parity").json()["compared"] == 10, what="the copies to be diffed")
        report = client.get("/api/v1/parity").json()
    assert report["serve"]["received"] == 10  # the admin calls were not taken for copies
    assert fields_of(report) == {("GET /orders/{id}", "$.total_cents", "changed", 1),
                                 ("GET /orders/{id}", "$.status", "type", 1)}
    from_cli = json.loads(cli("parity", "report", "--plan", str(plan), "--json").stdout)
    assert fields_of(from_cli) == fields_of(report) and from_cli["regressed"] == report["regressed"] == 2


@pytest.mark.parametrize("copies_from", ["proxy", "worker"])
def test_stopping_the_proxy_with_copies_in_flight_charges_the_candidate_nothing(
        services, processes, tmp_path, copies_from: str) -> None:
    # The proxy stops (SIGTERM to its process group, parity worker included) while the candidate still
    # works on five copies. A copy the proxy gives up on is counted as skipped, never as the
    # candidate's error; with copies_from: worker the worker waits for the answers (up to 10 s) and
    # compares them. One copy first: the candidate is then known to be slow, and the five go side
    # by side rather than pipelined one behind the other.
    stable, candidate = services(), services(delay=1.0)
    plan, listen, admin = proxy_plan(tmp_path, stable.url, candidate.url, diff_on="worker", copies_from=copies_from)
    start_proxy(processes, plan, admin)
    assert httpx.put(f"http://127.0.0.1:{admin}/api/v1/split", json={"mirror_percent": 100}).status_code == 200
    with httpx.Client(base_url=f"http://127.0.0.1:{listen}") as users:
        assert users.get("/orders/1999").status_code == 200
        wait_for(lambda: len(candidate.done) == 1, what="the candidate to answer the first copy")
        assert all(users.get(f"/orders/{2000 + i}").status_code == 200 for i in range(5))
    assert len(candidate.done) == 1  # the five copies are still with the candidate
    processes.stop()
    report = json.loads(cli("parity", "report", "--plan", str(plan), "--json").stdout)
    assert report["regressed"] == 0
    skipped = report["counters"].get("skipped_stopped", 0)
    assert report["compared"] + skipped == 6
    if copies_from == "worker":
        assert (report["compared"], report["counters"]["copies_completed"]) == (6, 6)
