"""The preflight step inside a real run: the controller, the built-in proxy, the demo services.
The run holds the plan's lock, so its preflight rehearses the rollback through the proxy's admin API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from switchover.demo.load import LoadGenerator
from switchover.demo.runner import stack
from switchover.engine.controller import Controller, metrics_for
from switchover.engine.store import StateStore
from switchover.plan import load_plan
from switchover.traffic.base import router_for
from tests.integration.adapters.conftest import DnsServer

PLAN = """\
name: sw-adapters-run
stable:    {{url: "http://127.0.0.1:{v1}", ready: /healthz/ready}}
candidate: {{url: "http://127.0.0.1:{v2}", ready: {ready}}}
state: "sqlite:///{state}"
controller: {{api: "127.0.0.1:{api}"}}
traffic:
  driver: proxy
  listen: "127.0.0.1:{listen}"
  admin: "127.0.0.1:{admin}"
  state_file: "{split_state}"
slo: {{p95_ms: 500, error_rate: 0.02}}
analysis: {{interval: 1s, min_requests: 10, failure_limit: 3, inconclusive_limit: 20, on_inconclusive: rollback}}
{extra}
steps: [{{preflight: {{}}}}, {{canary: {{weight: 20, hold: 2s}}}}, {{canary: {{weight: 100, hold: 1s}}}}]
"""


def run(plan_path: Path) -> str:
    plan = load_plan(plan_path)
    return Controller(plan, StateStore(plan.state_url(), plan.base_dir()), router_for(plan), metrics_for(plan)).run()


def journal(workdir: Path) -> list[tuple[str, dict[str, object]]]:
    store = StateStore(f"sqlite:///{workdir / 'journal.db'}")
    try:
        return [(e.kind, e.payload) for e in store.events()]
    finally:
        store.close()


@pytest.mark.slow
def test_run_with_preflight_step_rehearses_then_promotes(tmp_path: Path) -> None:
    with stack(tmp_path, plan_template=PLAN, ready="/healthz/ready", extra="") as s:
        load = LoadGenerator("127.0.0.1", s.ports["listen"], rate=150, duration=40, workers=2)
        load.start()
        try:
            outcome = run(s.plan_path)
        finally:
            load.stop()
        events = journal(tmp_path)
        report = next(p for k, p in events if k == "preflight")
        checks = {c["name"]: c["status"] for c in report["checks"]}  # type: ignore[union-attr]
        assert report["ok"] is True, report
        assert checks["rollback.rehearsal"] == "pass" and checks["router.online"] == "pass"
        assert checks["metrics.online"] == "pass" and checks["candidate.ready"] == "pass"
        kinds = [k for k, _ in events]
        # the rehearsal's weight 0 comes before the first step that moves users
        rehearsal = next(i for i, (k, p) in enumerate(events) if k == "weight_set" and p.get("reason") == "rollback rehearsal")
        first_move = next(i for i, (k, p) in enumerate(events) if k == "weight_set" and p.get("weight") == 20)
        assert rehearsal < first_move and "run_finished" in kinds
        assert outcome == "promoted"
        split = httpx.get(f"http://127.0.0.1:{s.ports['admin']}/api/v1/split", timeout=5).json()
        assert split["candidate_weight"] == 100


def test_failed_preflight_never_moves_users(
        tmp_path: Path, dns_server: Callable[[dict[str, tuple[str, int]]], DnsServer]) -> None:
    dns = dns_server({"orders.sw-adapters.test": ("192.0.2.10", 3600)})
    extra = f'dns: {{hostnames: [orders.sw-adapters.test], resolvers: ["{dns.address}"]}}'
    with stack(tmp_path, plan_template=PLAN, ready="/healthz/ready", extra=extra) as s:
        outcome = run(s.plan_path)
        events = journal(tmp_path)
        assert outcome != "promoted"
        report = next(p for k, p in events if k == "preflight")
        assert report["ok"] is False
        failed = [c for c in report["checks"] if c["status"] == "fail"]  # type: ignore[union-attr]
        assert [c["name"] for c in failed] == [f"dns.ttl orders.sw-adapters.test @{dns.address}"]
        moved = [p["weight"] for k, p in events if k == "weight_set" and p.get("weight")]
        assert moved == []
        split = httpx.get(f"http://127.0.0.1:{s.ports['admin']}/api/v1/split", timeout=5).json()
        assert split["candidate_weight"] == 0
