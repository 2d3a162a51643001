"""Preflight against real things: HTTP services, PostgreSQL, MariaDB, Prometheus, a DNS server, a
command router run as real processes, the SQLite run lock held by another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchover.engine.store import StateStore
from switchover.plan import Plan, load_plan
from switchover.probes.checks import Status
from switchover.probes.preflight import PreflightReport, run_preflight
from tests.integration.adapters.conftest import DnsServer, PromStack, Service, free_port

ROUTER = """
import sys, pathlib
state = pathlib.Path(sys.argv[1])
if sys.argv[2] == "set":
    state.write_text(sys.argv[3] + " " + sys.argv[4])
else:
    print(state.read_text() if state.exists() else "0 0")
"""
SWITCHOVER = str(Path(sys.executable).parent / "switchover")


def write_plan(tmp_path: Path, stable: Service, candidate: Service, **extra: Any) -> Path:
    script = tmp_path / "router.py"
    script.write_text(ROUTER)
    state = tmp_path / "weight"
    doc: dict[str, Any] = {
        "name": "sw_adapters_orders",
        "stable": {"url": stable.url}, "candidate": {"url": candidate.url},
        "state": f"sqlite:///{tmp_path / 'state.db'}",
        "traffic": {"driver": "command", "command": {
            "set_weight": [sys.executable, str(script), str(state), "set", "{weight}", "{mirror}"],
            "get_weight": [sys.executable, str(script), str(state), "get"]}},
        "steps": [{"preflight": {}}, {"canary": {"weight": 10, "hold": "1m"}}],
    }
    doc.update(extra)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def by_name(report: PreflightReport) -> dict[str, Any]:
    return {c.name: c for c in report.checks}


def preflight(plan: Plan, rehearse: bool = True) -> PreflightReport:
    store = StateStore(plan.state_url(), plan.base_dir())
    try:
        return run_preflight(plan, router=None, metrics=None, store=store, rehearse=rehearse)
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.mariadb
@pytest.mark.prometheus
def test_everything_in_order_passes_and_rehearses(
        tmp_path: Path, services: tuple[Service, Service], prom_stack: PromStack,
        dns_server: Callable[[dict[str, tuple[str, int]]], DnsServer]) -> None:
    stable, candidate = services
    dns_a = dns_server({"orders.sw-adapters.test": ("192.0.2.10", 30)})
    dns_b = dns_server({"orders.sw-adapters.test": ("192.0.2.10", 60)})
    plan = load_plan(write_plan(
        tmp_path, stable, candidate,
        metrics={"provider": "prometheus", "prometheus": {"url": prom_stack.url}},
        data={"source": "postgresql://postgres@127.0.0.1:5432/test", "target": "mysql://root@127.0.0.1:3306/test",
              "tables": [{"name": "sw_adapters_orders", "key": ["id"]}]},
        dns={"hostnames": ["orders.sw-adapters.test"], "resolvers": [dns_a.address, dns_b.address]}))
    report = preflight(plan)
    checks = by_name(report)
    assert report.ok, [c.to_json() for c in report.checks]
    assert set(checks) >= {"candidate.ready", "stable.healthy", "metrics.online", "data.source", "data.target",
                           "router.online", f"dns.ttl orders.sw-adapters.test @{dns_a.address}",
                           f"dns.ttl orders.sw-adapters.test @{dns_b.address}", "rollback.rehearsal"}
    assert all(c.status is Status.PASS for c in report.checks)
    assert "GET /healthz/ready" in candidate.hits
    assert (tmp_path / "weight").read_text() == "0 0"  # the rehearsal went through the real router
    assert dns_a.queries and dns_b.queries


def test_failures_are_checks_with_reasons(
        tmp_path: Path, services: tuple[Service, Service],
        dns_server: Callable[[dict[str, tuple[str, int]]], DnsServer]) -> None:
    stable, candidate = services
    candidate.routes[("GET", "/healthz/ready")] = lambda _h, _b: (503, {}, b"warming up")
    dns = dns_server({"orders.sw-adapters.test": ("192.0.2.10", 300)})
    plan = load_plan(write_plan(
        tmp_path, stable, candidate, timeouts={"client": "10s", "server": "5s"},
        metrics={"provider": "prometheus", "prometheus": {"url": f"http://127.0.0.1:{free_port()}"}},
        data={"source": f"postgresql://postgres@127.0.0.1:{free_port()}/test",
              "target": "mysql://root@127.0.0.1:3306/test", "tables": [{"name": "t", "key": ["id"]}]},
        dns={"hostnames": ["orders.sw-adapters.test", "gone.sw-adapters.test"], "resolvers": [dns.address]}))
    report = preflight(plan, rehearse=False)
    checks = by_name(report)
    assert not report.ok
    assert checks["candidate.ready"].status is Status.FAIL and "503" in checks["candidate.ready"].reason
    assert checks["timeouts.retry_after"].status is Status.WARN
    assert checks["stable.healthy"].status is Status.PASS
    assert checks["metrics.online"].status is Status.FAIL
    assert checks["data.source"].status is Status.FAIL and "cannot connect" in checks["data.source"].reason
    assert checks["data.target"].status is Status.PASS
    ttl = checks[f"dns.ttl orders.sw-adapters.test @{dns.address}"]
    assert ttl.status is Status.FAIL and "300s" in ttl.reason
    assert "NXDOMAIN" in checks[f"dns.ttl gone.sw-adapters.test @{dns.address}"].reason
    assert checks["timeouts.alignment"].status is Status.WARN
    assert "rollback.rehearsal" not in checks


@pytest.mark.prometheus
def test_rehearsal_refused_while_another_run_holds_the_lock(
        tmp_path: Path, services: tuple[Service, Service], prom_stack: PromStack) -> None:
    stable, candidate = services
    plan_path = write_plan(tmp_path, stable, candidate,
                           metrics={"provider": "prometheus", "prometheus": {"url": prom_stack.url}})
    (tmp_path / "weight").write_text("10 0")
    plan = load_plan(plan_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom switchover.engine.store import StateStore\n"
        f"s = StateStore({plan.state_url()!r})\nassert s.acquire_lock('sw_adapters_orders', 'controller alice') is None\n"
        "print('locked', flush=True)\ntime.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        report = preflight(plan)
        rehearsal = by_name(report)["rollback.rehearsal"]
        assert rehearsal.status is Status.WARN and "controller alice" in rehearsal.reason
        assert (tmp_path / "weight").read_text() == "10 0"  # nobody moved
        answer = subprocess.run([SWITCHOVER, "preflight", str(plan_path), "--json"], capture_output=True, text=True,
                                timeout=60)
        body = json.loads(answer.stdout)
        assert answer.returncode == 0, answer.stderr
        assert {c["name"]: c["status"] for c in body["checks"]}["rollback.rehearsal"] == "warn"
    finally:
        holder.terminate()
        holder.wait(timeout=10)
    # The lock is free now: a rehearsal would move the users at 10%, so it says so instead.
    rehearsal = by_name(preflight(plan))["rollback.rehearsal"]
    assert rehearsal.status is Status.WARN and "10%" in rehearsal.reason
    assert (tmp_path / "weight").read_text() == "10 0"


@pytest.mark.prometheus
def test_cli_table_json_and_exit_codes(tmp_path: Path, services: tuple[Service, Service],
                                       prom_stack: PromStack) -> None:
    stable, candidate = services
    plan_path = write_plan(tmp_path, stable, candidate,
                           metrics={"provider": "prometheus", "prometheus": {"url": prom_stack.url}})
    env = {**os.environ, "COLUMNS": "200"}
    good = subprocess.run([SWITCHOVER, "preflight", str(plan_path)], capture_output=True, text=True, timeout=60, env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "rollback.rehearsal" in good.stdout and "pass" in good.stdout and "Traceback" not in good.stderr
    store = StateStore(load_plan(plan_path).state_url())
    try:
        journaled = [e for run in {r[0] for r in store._db.execute("SELECT run_id FROM events")}
                     for e in store.events(run)]
    finally:
        store.close()
    assert [e.payload.get("reason") for e in journaled if e.kind == "weight_set"] == ["rollback rehearsal"]

    candidate.routes[("GET", "/healthz/ready")] = lambda _h, _b: (500, {}, b"")
    bad = subprocess.run([SWITCHOVER, "preflight", str(plan_path), "--json"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert bad.returncode == 1
    body = json.loads(bad.stdout)
    assert body["ok"] is False
    assert {c["name"]: c["status"] for c in body["checks"]}["candidate.ready"] == "fail"

    missing = subprocess.run([SWITCHOVER, "preflight", str(tmp_path / "nope.yaml")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "no such plan file" in missing.stderr
