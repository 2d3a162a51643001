"""The shadow step end to end: `switchover run` (the controller), the real proxy mirroring to the
candidate, the proxy's sink diffing, the shadow gate reading the store; and the replay source for
routers that cannot mirror."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import httpx
import yaml

from switchover.demo.runner import free_port
from switchover.engine.store import StateStore
from tests.integration.parity.conftest import start_proxy, write_requests

IGNORE = ["$.generated_at", "$.items[*].etag"]


def plan_for(tmp: Any, stable: str, candidate: str, shadow: dict[str, Any], driver: str = "proxy") -> tuple[Any, int, int]:
    listen, admin, api = free_port(), free_port(), free_port()
    doc: dict[str, Any] = {
        "name": "sw_parity_step", "stable": {"url": stable, "ready": "/orders/1"},
        "candidate": {"url": candidate, "ready": "/orders/1"},
        "state": f"sqlite:///{tmp}/journal.db", "controller": {"api": f"127.0.0.1:{api}"},
        "traffic": {"driver": driver},
        "analysis": {"interval": "1s", "min_requests": 5, "failure_limit": 3, "inconclusive_limit": 50},
        "parity": {"ignore": IGNORE},
        "steps": [{"shadow": shadow}],
    }
    if driver != "proxy":  # no proxy runs, so the builtin metrics provider has nothing to read
        doc["steps"].insert(0, {"preflight": {"skip": ["metrics"]}})
    if driver == "proxy":
        doc["traffic"].update({"listen": f"127.0.0.1:{listen}", "admin": f"127.0.0.1:{admin}",
                               "state_file": f"{tmp}/split.json"})
    plan = tmp / "plan.yaml"
    plan.write_text(yaml.safe_dump(doc, sort_keys=False))
    return plan, listen, admin


def users(listen: int, stop: threading.Event) -> threading.Thread:
    """Bounded user load through the proxy: at most 3000 requests or until stopped."""
    def loop() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{listen}", timeout=5) as client:
            for i in range(3000):
                if stop.is_set():
                    return
                client.get(f"/orders/{i % 400}")
                time.sleep(0.005)
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def run(plan: Any) -> Any:
    import subprocess

    return subprocess.run([sys.executable, "-m", "switchover", "run", str(plan)], capture_output=True, text=True,
                          timeout=120)


def journal(tmp: Any) -> list[Any]:
    store = StateStore(f"sqlite:///{tmp}/journal.db")
    try:
        return store.events()
    finally:
        store.close()


def test_shadow_step_passes_then_turns_mirroring_off(services, processes, tmp_path) -> None:
    stable, candidate = services(), services()
    plan, listen, admin = plan_for(tmp_path, stable.url, candidate.url,
                                   {"percent": 50, "hold": "4s", "budget": 0.001, "min_compared": 30})
    start_proxy(processes, plan, admin)
    stop = threading.Event()
    load = users(listen, stop)
    try:
        r = run(plan)
    finally:
        stop.set()
        load.join(10)
    assert r.returncode == 0, r.stdout + r.stderr
    events = journal(tmp_path)
    kinds = [e.kind for e in events]
    assert "shadow_started" in kinds and "shadow_result" in kinds
    result = next(e for e in events if e.kind == "shadow_result").payload
    assert result["outcome"] == "pass" and result["compared"] >= 30 and result["regressed"] == 0
    # The mirror was set to 50% keeping the weight (0), then turned off at the end of the step.
    mirrors = [(e.payload["weight"], e.payload["mirror"]) for e in events
               if e.kind == "weight_set" and "rehearsal" not in str(e.payload.get("reason", ""))]
    assert mirrors[:2] == [(0, 50), (0, 0)]
    assert httpx.get(f"http://127.0.0.1:{admin}/api/v1/split").json()["mirror_percent"] == 0
    assert any(e.kind == "gate_evaluated" and any(v["gate"] == "shadow.budget" for v in e.payload["verdicts"])
               for e in events)


def test_shadow_step_over_budget_fails_naming_field_and_endpoint(services, processes, tmp_path) -> None:
    def broken(oid: int, doc: dict[str, Any]) -> dict[str, Any]:
        if oid % 5 == 0:
            doc["total_cents"] = -1
        return doc

    stable, candidate = services(), services(broken)
    plan, listen, admin = plan_for(tmp_path, stable.url, candidate.url,
                                   {"percent": 100, "hold": "4s", "budget": 0.01, "min_compared": 30})
    start_proxy(processes, plan, admin)
    stop = threading.Event()
    load = users(listen, stop)
    try:
        r = run(plan)
    finally:
        stop.set()
        load.join(10)
    assert r.returncode == 1, r.stdout + r.stderr
    events = journal(tmp_path)
    finished = next(e for e in events if e.kind == "run_finished").payload
    assert finished["outcome"] == "rolled_back"
    assert "$.total_cents" in finished["reason"] and "GET /orders/{id}" in finished["reason"]
    assert httpx.get(f"http://127.0.0.1:{admin}/api/v1/split").json() == {"candidate_weight": 0, "mirror_percent": 0}


class Route53Like:
    """A router that cannot mirror, as Route 53: a non-zero mirror is refused (traffic/base.py).
    Stands in for the route53/command adapters, which live in another area."""

    name = "route53"

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def sync(self, plan: Any) -> None:
        pass

    def set_routes(self, weight: int, mirror_percent: int) -> None:
        from switchover.errors import UserError

        if mirror_percent:
            raise UserError("route53 cannot mirror")
        self.calls.append((weight, mirror_percent))

    def get_routes(self) -> tuple[int, int]:
        return (self.calls[-1][0] if self.calls else 0), 0

    def is_online(self) -> bool:
        return True


def run_without_mirror(plan_path: Any) -> tuple[str, Route53Like]:
    """The controller in this process with a router that cannot mirror; returns the run's outcome."""
    from switchover.engine.controller import Controller, metrics_for
    from switchover.plan import load_plan

    plan = load_plan(plan_path)
    store = StateStore(plan.state_url(), plan.base_dir())
    router = Route53Like()
    try:
        return Controller(plan, store, router, metrics_for(plan), serve_api=False).run(), router
    finally:
        store.close()


def replay_run(tmp_path: Any, stable: Any, candidate: Any, ids: range,
               **shadow: Any) -> tuple[str, Route53Like, list[Any]]:
    """A run whose shadow step replays requests for ``ids`` (a router that cannot mirror): its
    outcome, the router, and the journal."""
    reqs = write_requests(tmp_path, ids)
    plan_path, _, _ = plan_for(tmp_path, stable.url, candidate.url, {"percent": 10, **shadow, "replay": reqs.name},
                               driver="route53")
    outcome, router = run_without_mirror(plan_path)
    return outcome, router, journal(tmp_path)


def shadow_copies(svc: Any) -> int:
    return len([s for s in svc.seen if s[2].get("x-switchover-shadow") == "1"])  # not the probes


def test_routers_that_cannot_mirror_replay_recorded_requests_once_with_replay_loop_false(services, tmp_path) -> None:
    stable, candidate = services(), services()
    outcome, router, events = replay_run(tmp_path, stable, candidate, range(60), hold="3s", budget=0.001,
                                         min_compared=50, replay_loop=False)
    result = [e.payload for e in events if e.kind == "shadow_result"]
    assert outcome == "promoted", [e.payload for e in events if e.kind == "run_finished"]
    assert result[0]["compared"] == 60 and result[0]["outcome"] == "pass"
    assert shadow_copies(candidate) == 60
    [replayed] = [e.payload for e in events if e.kind == "shadow_replay"]
    assert (replayed["passes"], replayed["sent"], replayed["loop"]) == (1, 60, False)
    assert all(m == 0 for _, m in router.calls)  # never asked to mirror


def test_a_short_replay_file_is_replayed_until_the_hold_ends(services, tmp_path) -> None:
    stable, candidate = services(), services()
    outcome, _, events = replay_run(tmp_path, stable, candidate, range(3), hold="3s", budget=0.001, min_compared=20)
    assert outcome == "promoted", [e.payload for e in events if e.kind == "run_finished"]
    [result] = [e.payload for e in events if e.kind == "shadow_result"]
    assert result["outcome"] == "pass" and result["compared"] >= 20 and result["regressed"] == 0
    # Three requests cannot make 20 comparisons in one pass: the file was replayed at least seven times.
    [replayed] = [e.payload for e in events if e.kind == "shadow_replay"]
    assert replayed["passes"] >= 7 and replayed["requests"] == 3 and not replayed["running"]
    assert replayed["sent"] == result["compared"]
    done = [e.payload["reason"] for e in events if e.kind == "step_done" and e.payload["kind"] == "shadow"]
    assert f"3 requests replayed {replayed['passes']} times" in done[0]
    # Every replayed request reached the candidate as a shadow copy (plus any cut short by the end of
    # the hold), and none after the step ended.
    after = shadow_copies(candidate)
    assert replayed["sent"] <= after <= replayed["sent"] + 8
    time.sleep(0.5)
    assert shadow_copies(candidate) == after


def test_the_replay_stops_when_the_run_rolls_back(services, tmp_path) -> None:
    def broken(oid: int, doc: dict[str, Any]) -> dict[str, Any]:
        doc["total_cents"] = -1
        return doc

    stable, candidate = services(), services(broken)
    # A hold far longer than the test: the gate, over budget, rolls back first.
    outcome, _, events = replay_run(tmp_path, stable, candidate, range(3), hold="10m", budget=0.01, min_compared=20)
    assert outcome == "rolled_back"
    assert "shadow_result" not in [e.kind for e in events]  # ended by the gates, not by the hold
    [replayed] = [e.payload for e in events if e.kind == "shadow_replay"]
    assert replayed["passes"] >= 1 and not replayed["running"]
    after = shadow_copies(candidate)
    time.sleep(0.5)
    assert shadow_copies(candidate) == after  # nothing replayed after the rollback


def test_an_empty_or_missing_replay_file_fails_the_step_naming_the_file(services, tmp_path) -> None:
    stable, candidate = services(), services()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n# nothing recorded yet\n")
    writes = tmp_path / "writes.jsonl"
    writes.write_text('{"method": "POST", "path": "/orders", "body": "{}"}\n')
    for name, says in (("empty.jsonl", "no requests in the file"), ("missing.jsonl", "no such file"),
                       ("writes.jsonl", "only writes")):
        (tmp_path / "journal.db").unlink(missing_ok=True)
        plan_path, _, _ = plan_for(tmp_path, stable.url, candidate.url,
                                   {"percent": 10, "hold": "10m", "min_compared": 20, "replay": name},
                                   driver="route53")
        outcome, _ = run_without_mirror(plan_path)
        events = journal(tmp_path)
        assert outcome == "rolled_back", name
        [done] = [e.payload for e in events if e.kind == "step_done" and e.payload["kind"] == "shadow"]
        assert done["status"] == "failed" and str(tmp_path / name) in done["reason"] and says in done["reason"]
    assert shadow_copies(candidate) == 0


def test_the_replay_keeps_to_its_rate(services, tmp_path) -> None:
    stable, candidate = services(), services()
    outcome, _, events = replay_run(tmp_path, stable, candidate, range(3), hold="2s", budget=0.001, min_compared=5,
                                    replay_rate=8)
    assert outcome == "promoted", [e.payload for e in events if e.kind == "run_finished"]
    [started] = [e for e in events if e.kind == "shadow_started"]
    [replayed] = [e for e in events if e.kind == "shadow_replay"]
    assert started.payload["replay_rate"] == 8 and replayed.payload["rate"] == 8
    # Start times are spaced 1/8 s apart over every pass (three requests looped without a rate make
    # hundreds of comparisons in two seconds): never more than the rate allows in the time it ran.
    assert 5 <= replayed.payload["sent"] <= 8 * (replayed.at - started.at) + 1
