"""Preflight: everything that must hold before traffic moves, as a table of checks.

Candidate ready, stable healthy, metrics provider online (and its queries accepted), databases
reachable, router reachable, DNS TTLs from each resolver, timeout alignment, and a rollback
rehearsal (weight 0 through the real router, read back). An unreachable system is a failed check,
not an error: the report says what failed and why. The rehearsal is done only by whoever holds the
plan's run lock: the run itself, or a standalone ``switchover preflight`` when no run holds it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from switchover import secrets
from switchover.data.urls import connect, parse_db_url
from switchover.errors import UserError
from switchover.metrics.base import MetricsProvider, provider_for
from switchover.probes.checks import Check, Status
from switchover.probes.dns import check_ttls
from switchover.traffic.base import Router, router_for

if TYPE_CHECKING:
    from switchover.engine.store import StateStore
    from switchover.plan import Plan
    from switchover.plan.data import Database

__all__ = ["Check", "PreflightReport", "Status", "metrics_provider_for", "plan_hostnames", "run_preflight"]

Journal = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class PreflightReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not any(c.status is Status.FAIL for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status is Status.FAIL]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_json() for c in self.checks]}


def metrics_provider_for(plan: Plan) -> MetricsProvider:
    """The MetricsProvider the plan's ``metrics.provider`` names (UserError when not available)."""
    return provider_for(plan)


def plan_hostnames(plan: Plan) -> list[str]:
    """Hostnames whose TTL matters: ``dns.hostnames``, the services' hosts, the Route 53 record."""
    names = list(plan.dns.hostnames)
    for url in (plan.stable.url, plan.candidate.url):
        host = urlsplit(url).hostname or ""
        if host and host != "localhost" and not _is_ip(host):
            names.append(host)
    if plan.traffic.driver == "route53" and plan.traffic.route53 is not None:
        names.append(plan.traffic.route53.record_name.rstrip("."))
    return list(dict.fromkeys(names))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- the checks


def _probe(name: str, url: str, timeout: float, bad: str) -> list[Check]:
    safe = secrets.redact_url(url)
    try:
        answer = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return [Check(name, Status.FAIL, f"{bad}: GET {safe}: {type(exc).__name__}: {exc}")]
    checks = []
    if 200 <= answer.status_code < 300:
        checks.append(Check(name, Status.PASS, f"GET {safe} -> {answer.status_code}"))
    else:
        checks.append(Check(name, Status.FAIL, f"{bad}: GET {safe} -> {answer.status_code}"))
    if answer.status_code == 503 and "retry-after" not in answer.headers:
        checks.append(Check("timeouts.retry_after", Status.WARN,
                            f"{safe} answered 503 without Retry-After: clients retry at once and pile up"))
    return checks


def _readiness(plan: Plan, timeout: float) -> list[Check]:
    return _probe("candidate.ready", plan.candidate.url + plan.candidate.ready, timeout, "candidate not ready")


def _stable(plan: Plan, timeout: float) -> list[Check]:
    return _probe("stable.healthy", plan.stable.url + (plan.stable.health or plan.stable.ready), timeout,
                  "stable not healthy")


def _metrics(plan: Plan, metrics: MetricsProvider | None, now: float) -> list[Check]:
    name = "metrics.online"
    try:
        provider = metrics or metrics_provider_for(plan)
    except UserError as exc:
        return [Check(name, Status.FAIL, str(exc))]
    if not provider.is_online():
        return [Check(name, Status.FAIL, f"metrics provider {provider.name} does not answer")]
    check_queries = getattr(provider, "check_queries", None)
    if check_queries is not None:
        try:
            problems: list[str] = check_queries(now)
        except UserError as exc:
            return [Check(name, Status.FAIL, str(exc))]
        if problems:
            return [Check(name, Status.FAIL, "; ".join(problems))]
    return [Check(name, Status.PASS, f"{provider.name} answers")]


def _database(label: str, db: Database | str) -> list[Check]:
    url, password = (db, None) if isinstance(db, str) else (db.url, db.password)
    try:
        parsed = parse_db_url(url, password, where=f"data.{label}")
        conn = connect(parsed)
    except UserError as exc:
        return [Check(f"data.{label}", Status.FAIL, str(exc))]
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT 1")
        cursor.fetchall()
    except Exception as exc:  # each driver has its own error classes
        return [Check(f"data.{label}", Status.FAIL, f"{parsed.safe}: {exc}")]
    finally:
        conn.close()
    return [Check(f"data.{label}", Status.PASS, f"{parsed.safe} answers")]


def _router(plan: Plan, router: Router | None) -> list[Check]:
    name = "router.online"
    try:
        active = router or router_for(plan)
        online = active.is_online()
    except UserError as exc:
        return [Check(name, Status.FAIL, str(exc))]
    if not online:
        return [Check(name, Status.FAIL, f"router {plan.traffic.driver} does not answer")]
    return [Check(name, Status.PASS, f"{plan.traffic.driver} answers")]


def timeout_checks(client: float, server: float) -> list[Check]:
    """The checklist's failure mode: clients that give up later than servers (mobile SDKs at 10 s,
    server at 5 s) get the server's timeout errors while they still have budget, and retry into a
    slow backend, a retry dogpile. Aligned means the client gives up no later than the server."""
    if client > server:
        return [Check("timeouts.alignment", Status.WARN,
                      f"clients give up after {client:g}s, later than the server's {server:g}s: they see the "
                      "server's timeouts and retry within their budget (retry dogpile); align timeouts.client "
                      "with timeouts.server and send Retry-After with 503s")]
    return [Check("timeouts.alignment", Status.PASS, f"client {client:g}s <= server {server:g}s")]


def _mine(holder: Any) -> bool:
    return bool(holder.pid == os.getpid() and holder.host == socket.gethostname())


def _rehearse(plan: Plan, router: Router | None, store: StateStore, journal: Journal | None) -> list[Check]:
    name = "rollback.rehearsal"
    from switchover.engine.store import whoami

    holder = store.lock_holder(plan.name)
    acquired = False
    if holder is None or not _mine(holder):
        other = store.acquire_lock(plan.name, f"preflight {whoami()}")
        if other is not None:
            return [Check(name, Status.WARN, f"not rehearsed: run lock held by {other.holder} "
                          f"(pid {other.pid} on {other.host}); only the run holding it may move traffic")]
        acquired = True
    try:
        active = router or router_for(plan)
        weight, mirror = active.get_routes()
        if weight != 0:
            return [Check(name, Status.WARN, f"not rehearsed: the router sends {weight}% to the candidate now, "
                          "and a rehearsal would move those users to stable")]
        active.set_routes(0, 0)
        if journal is not None:
            journal("weight_set", {"weight": 0, "mirror": 0, "reason": "rollback rehearsal"})
        back = active.get_routes()
        if mirror:
            active.set_routes(0, mirror)  # mirroring is invisible to users: put it back as it was
            if journal is not None:
                journal("weight_set", {"weight": 0, "mirror": mirror, "reason": "rollback rehearsal: mirror restored"})
        if back != (0, 0):
            return [Check(name, Status.FAIL, f"set weight 0, mirror 0 but the router reads back {back}")]
        return [Check(name, Status.PASS, f"weight 0 set through {plan.traffic.driver} and read back")]
    except UserError as exc:
        return [Check(name, Status.FAIL, str(exc))]
    finally:
        if acquired:
            store.release_lock(plan.name)


def _skipped(name: str, skip: list[str]) -> bool:
    return any(name == s or name.startswith(s + ".") or name.startswith(s + " ") for s in skip)


def run_preflight(plan: Plan, *, router: Router | None, metrics: MetricsProvider | None, store: StateStore,
                  rehearse: bool, skip: list[str] | None = None, now: float | None = None,
                  journal: Journal | None = None) -> PreflightReport:
    """Run every check (independent ones in parallel, the rehearsal last) and return the report.

    ``router``/``metrics`` None: built from the plan (a failure to build is a failed check).
    ``journal``: called for the actions taken (the rehearsal's ``weight_set``).
    """
    import time

    moment = time.time() if now is None else now
    timeout = min(5.0, plan.timeouts.client)
    jobs: list[Callable[[], list[Check]]] = [
        lambda: _readiness(plan, timeout),
        lambda: _stable(plan, timeout),
        lambda: _metrics(plan, metrics, moment),
    ]
    if plan.data is not None:
        source, target = plan.data.source, plan.data.target
        jobs += [lambda: _database("source", source), lambda: _database("target", target)]
    jobs.append(lambda: _router(plan, router))
    hostnames = plan_hostnames(plan)
    if hostnames:
        jobs.append(lambda: check_ttls(hostnames, plan.dns.resolvers, plan.dns.max_ttl, timeout=min(3.0, timeout)))
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = [f.result() for f in [pool.submit(job) for job in jobs]]
    checks = [c for group in results for c in group]
    if "timeouts" in plan.model_fields_set:  # only what the plan declares: defaults say nothing of clients
        checks += timeout_checks(plan.timeouts.client, plan.timeouts.server)
    skip = skip or []
    if rehearse and not _skipped("rollback.rehearsal", skip):
        router_ok = not any(c.name == "router.online" and c.status is Status.FAIL for c in checks)
        if router_ok:
            checks += _rehearse(plan, router, store, journal)
        else:
            checks.append(Check("rollback.rehearsal", Status.FAIL, "not rehearsed: the router does not answer"))
    return PreflightReport(tuple(c for c in checks if not _skipped(c.name, skip)))
