"""`switchover proxy`: the built-in data plane (weighted split, sticky users, mirror, metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from switchover import secrets
from switchover.cli import app
from switchover.errors import UserError
from switchover.traffic.proxy.config import (
    ProxyConfig,
    is_loopback,
    parse_host_port,
    parse_upstream,
)

if TYPE_CHECKING:
    from switchover.plan import Plan


def _percent(value: int | None, what: str) -> int | None:
    if value is not None and not 0 <= value <= 100:
        raise UserError(f"{what} must be within 0-100, got {value}")
    return value


def build_config(
    *, plan_path: Path | None, listen: str | None, admin: str | None, stable: str | None, candidate: str | None,
    app_name: str | None, weight: int | None, mirror: int | None, mirror_writes: bool, sticky_header: str | None,
    sticky_cookie: str | None, state_file: Path | None, admin_token: str | None, workers: int | None,
) -> tuple[ProxyConfig, Plan | None]:
    """The proxy's configuration: the plan's name, URLs and ``traffic:`` section, flags overriding them."""
    from switchover.plan.traffic import Traffic

    plan: Plan | None = None
    traffic = Traffic()
    if plan_path is not None:
        from switchover.plan import load_plan

        plan = load_plan(plan_path)
        traffic = plan.traffic
        if traffic.driver != "proxy":
            raise UserError(f"{plan_path}: traffic.driver is {traffic.driver!r}; `switchover proxy` is the data "
                            "plane of driver: proxy")
        app_name = app_name or plan.name
        stable = stable or plan.stable.url
        candidate = candidate or plan.candidate.url
        listen = listen or traffic.listen
        admin = admin or traffic.admin
        admin_token = admin_token or traffic.admin_token
        workers = workers or traffic.workers
        mirror_writes = mirror_writes or plan.parity.mirror_writes  # shadow writes: see docs/parity.md
        if sticky_header is None and sticky_cookie is None and traffic.sticky is not None:
            sticky_header, sticky_cookie = traffic.sticky.header, traffic.sticky.cookie
        if state_file is None:
            state_file = (Path(traffic.state_file) if traffic.state_file
                          else Path(".switchover") / f"{plan.name}-proxy.json")
            if not state_file.is_absolute():
                state_file = plan.base_dir() / state_file
    if stable is None or candidate is None:
        raise UserError("give --stable URL and --candidate URL (or --plan PLAN)")
    if sticky_header is not None and sticky_cookie is not None:
        raise UserError("give one of --sticky-header or --sticky-cookie, not both")
    app_name = app_name or "app"
    if state_file is None:
        state_file = Path(".switchover") / f"{app_name}-proxy.json"
    workers = workers or 1
    if not 1 <= workers <= 64:
        raise UserError(f"--workers must be within 1-64, got {workers}")
    admin_host, admin_port = parse_host_port(admin or "127.0.0.1:9901", "--admin")
    token = None
    if admin_token is not None:
        if not secrets.is_ref(admin_token):
            raise UserError("--admin-token takes env:NAME (the token itself never goes on a command line)")
        token = secrets.resolve(admin_token, where="--admin-token")
    if not is_loopback(admin_host) and token is None:
        raise UserError(f"--admin {admin_host}:{admin_port} is not a loopback address: give --admin-token env:NAME "
                        "so that only holders of the token can move traffic")
    config = ProxyConfig(
        app=app_name,
        listen=parse_host_port(listen or "127.0.0.1:8080", "--listen"),
        admin=(admin_host, admin_port),
        stable=parse_upstream(stable, "--stable"),
        candidate=parse_upstream(candidate, "--candidate"),
        weight=_percent(weight, "--weight") or 0,
        mirror=_percent(mirror, "--mirror") or 0,
        mirror_writes=mirror_writes,
        sticky_header=sticky_header.lower().encode("latin-1") if sticky_header else None,
        sticky_cookie=sticky_cookie,
        state_file=state_file,
        admin_token=token,
        workers=workers,
        retry=traffic.retry,
        ejection=traffic.ejection,
        limits=traffic.limits,
        plan_path=str(plan_path) if plan_path else None,
    )
    return config, plan


@app.command()
def proxy(
    plan: Path | None = typer.Option(None, "--plan", help="take name, URLs and traffic settings from this plan"),
    listen: str | None = typer.Option(None, "--listen", help="HOST:PORT for users [default: 127.0.0.1:8080]"),
    admin: str | None = typer.Option(None, "--admin", help="HOST:PORT of the admin API [default: 127.0.0.1:9901]"),
    stable: str | None = typer.Option(None, "--stable", help="stable upstream, e.g. http://127.0.0.1:8001"),
    candidate: str | None = typer.Option(None, "--candidate", help="candidate upstream, e.g. http://127.0.0.1:8002"),
    app_name: str | None = typer.Option(None, "--app", help="the `app` label of metrics [default: app]"),
    weight: int | None = typer.Option(None, "--weight", help="candidate weight, percent (0-100) [default: 0]"),
    mirror: int | None = typer.Option(None, "--mirror", help="share of requests mirrored to the candidate, percent"),
    mirror_writes: bool = typer.Option(False, "--mirror-writes", help="mirror non-idempotent methods too"),
    sticky_header: str | None = typer.Option(None, "--sticky-header", help="sticky users by this header's value"),
    sticky_cookie: str | None = typer.Option(None, "--sticky-cookie", help="sticky users by this cookie's value"),
    state_file: Path | None = typer.Option(None, "--state-file",
                                           help="where the split is kept [default: .switchover/<app>-proxy.json]"),
    admin_token: str | None = typer.Option(None, "--admin-token", help="env:NAME holding the admin bearer token"),
    workers: int | None = typer.Option(None, "--workers", help="worker processes sharing the port (SO_REUSEPORT) [default: 1]"),
) -> None:
    """Run the built-in proxy: split users between stable and candidate, mirror, measure, obey the admin API."""
    from switchover.traffic.proxy.runner import serve

    config, loaded = build_config(
        plan_path=plan, listen=listen, admin=admin, stable=stable, candidate=candidate, app_name=app_name,
        weight=weight, mirror=mirror, mirror_writes=mirror_writes, sticky_header=sticky_header,
        sticky_cookie=sticky_cookie, state_file=state_file, admin_token=admin_token, workers=workers)
    serve(config, loaded)
