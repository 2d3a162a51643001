"""`switchover parity replay|serve|report`: shadow parity from the command line (docs/parity.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from switchover import secrets
from switchover.cli import parity_app
from switchover.errors import CheckFailed, UserError
from switchover.parity.budget import BudgetResult
from switchover.parity.compare import Request
from switchover.parity.recorded import load_requests
from switchover.parity.report import DEFAULT_BUDGET, build_report, plan_budget
from switchover.parity.store import MismatchStore, store_path
from switchover.plan import Plan, load_plan, plan_from_dict
from switchover.plan.parity import Parity
from switchover.secrets import redact_url


def _plan_or_adhoc(plan: Path | None, stable: str | None, candidate: str | None) -> Plan:
    if plan is not None:
        loaded = load_plan(plan)
        if stable or candidate:
            update = {}
            if stable:
                update["stable"] = loaded.stable.model_copy(update={"url": stable.rstrip("/")})
            if candidate:
                update["candidate"] = loaded.candidate.model_copy(update={"url": candidate.rstrip("/")})
            loaded = loaded.model_copy(update=update)
        return loaded
    if not stable or not candidate:
        raise UserError("give --stable URL and --candidate URL (or --plan PLAN)")
    return plan_from_dict({"name": "replay", "stable": {"url": stable}, "candidate": {"url": candidate}},
                          filename="--stable/--candidate")


def _print(result: BudgetResult, as_json: bool, console: Console) -> None:
    if as_json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return
    table = Table(title="parity by endpoint")
    for col in ("endpoint", "compared", "regressed", "rate", "top fields (rate / noise)"):
        table.add_column(col, justify="right" if col in ("compared", "regressed", "rate") else "left")
    for ep in result.endpoints:
        fields = ", ".join(f"{'[red]' if f.regression else '[dim]'}{f.field} {f.kind} {f.rate:.2%}/{f.noise_rate:.2%}"
                           f"{'[/red]' if f.regression else '[/dim]'}" for f in ep.fields[:4])
        table.add_row(ep.endpoint, str(ep.compared), str(ep.regressed), f"{ep.regression_rate:.3%}", fields)
    if result.endpoints:
        console.print(table)
    for sample in (result.extra.get("samples") or [])[:3]:
        shown = "; ".join(f"{d['where']} ({d['kind']}) {d['stable'] or '-'} -> {d['candidate'] or '-'}"
                          for d in sample["differences"][:3])
        console.print(f"e.g. {sample['method']} {sample['path']}: {shown}", highlight=False, markup=False)
    skipped = (result.extra.get("replay") or {}).get("writes_skipped")
    if skipped:
        console.print(f"{skipped} writes not replayed (parity.mirror_writes is false)")
    counters = result.extra.get("counters") or {}
    if counters.get("dropped"):
        console.print(f"[yellow]{counters['dropped']} copies dropped[/yellow] (queue full: candidate or diff too slow)")
    if counters.get("skipped_too_large"):
        console.print(f"[yellow]{counters['skipped_too_large']} answers not compared[/yellow] "
                      "(larger than the proxy's 64 KiB copy cap)")
    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[result.outcome]
    console.print(f"[{colour}]{result.outcome}[/{colour}]: {result.summary()}")


def _verdict(result: BudgetResult) -> None:
    if result.over_budget:
        raise CheckFailed()


@parity_app.command()
def replay(
    file: Path = typer.Argument(..., help="recorded requests: JSON lines {method, path, headers?, body?} or HAR"),
    stable: str | None = typer.Option(None, "--stable", help="stable's base URL (default: the plan's)"),
    candidate: str | None = typer.Option(None, "--candidate", help="the candidate's base URL (default: the plan's)"),
    plan: Path | None = typer.Option(None, "--plan", help="plan file: parity settings, noise, store, budget"),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="requests in flight"),
    rate: float | None = typer.Option(None, "--rate", min=0.001, help="requests per second at most"),
    budget: float | None = typer.Option(None, "--budget", min=0, max=1, help="regression rate allowed"),
    store: Path | None = typer.Option(None, "--store", help="mismatch store (default: the plan's, else temporary)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Send recorded requests to stable and the candidate, diff the answers, report; exit 1 over budget."""
    loaded = _plan_or_adhoc(plan, stable, candidate)
    requests = load_requests(file)
    if not requests:
        raise UserError(f"{file}: no requests in the file")
    plan_budget_, _ = plan_budget(loaded) if plan else (DEFAULT_BUDGET, 1)
    limit = plan_budget_ if budget is None else budget
    with contextlib.ExitStack() as stack:
        if store is not None:
            path = store
        elif plan is not None:
            path = store_path(loaded)
        else:
            path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="switchover-replay-"))) / "parity.db"
        db = MismatchStore(path, loaded.parity.samples)
        stack.callback(db.close)
        mark = db.mark()
        result = _run_replay(loaded, requests, db, concurrency, rate, as_json)
        report = build_report(db, loaded.parity, limit, 1, since_mark=mark,
                              extra={"replay": {"file": str(file), "requests": len(requests), **result}})
        _print(report, as_json, Console(stderr=as_json))
    _verdict(report)


def _run_replay(plan: Plan, requests: list[Request], db: MismatchStore, concurrency: int,
                rate: float | None, quiet: bool) -> dict[str, int]:
    from switchover.parity.replay import replay as run
    from switchover.parity.sink import ParitySink
    from switchover.parity.upstream import Upstreams

    _reachable({"stable": plan.stable.url, "candidate": plan.candidate.url}, plan.timeouts.server)
    sink = ParitySink(plan, db, fetch_noise=False)
    upstreams = Upstreams.of(plan.stable.url, plan.candidate.url, plan.parity)
    console = Console(stderr=True)
    columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), _Rate(),
               TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, disable=quiet) as bar:
            task = bar.add_task("replay", total=len(requests))
            stats = asyncio.run(run(requests, sink, upstreams, concurrency=concurrency, rate=rate,
                                    timeout=plan.timeouts.server, mirror_writes=plan.parity.mirror_writes,
                                    progress=lambda n: bar.advance(task, n)))
    finally:
        sink.close()
    return {"sent": stats.sent, "writes_skipped": stats.writes_skipped, "dropped": sink.dropped}


def _reachable(urls: dict[str, str], timeout: float) -> None:
    """Exit 2 before replaying when a side cannot be reached at all (any HTTP answer will do)."""
    import httpx

    for role, url in urls.items():
        try:
            httpx.get(url + "/", timeout=timeout)
        except httpx.HTTPError as exc:
            raise UserError(f"{role} {redact_url(url)}: unreachable ({type(exc).__name__}: {exc})") from None


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.0f} req/s" if task.speed else "- req/s")


def _address(value: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; an empty host means every interface)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535 or (host and host.strip("[]") == ""):
        example = "127.0.0.1:9904" if option == "--admin" else "127.0.0.1:9903"
        raise UserError(f"{option}: expected HOST:PORT, e.g. {example}, got {value!r}")
    return host.strip("[]"), int(port)


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"


@parity_app.command()
def serve(
    plan: Path = typer.Option(..., "--plan", help="plan file: stable, candidate, parity settings"),
    listen: str | None = typer.Option(None, "--listen", help="HOST:PORT for mirrored copies (default parity.listen)"),
    admin: str | None = typer.Option(None, "--admin", help="HOST:PORT answering only GET /api/v1/parity and "
                                     "/healthz; the listen address then compares every copy "
                                     "(default parity.admin, else both answered on the listen address)"),
    admin_token: str | None = typer.Option(None, "--admin-token", help="env:NAME holding a bearer token that "
                                           "GET /api/v1/parity requires (default parity.admin_token)"),
    stable: str | None = typer.Option(None, "--stable", help="override stable's base URL"),
    candidate: str | None = typer.Option(None, "--candidate", help="override the candidate's base URL"),
    duration: float | None = typer.Option(None, "--duration", help="stop after this many seconds (default: run until Ctrl-C)"),
) -> None:
    """Take mirrored copies (nginx/Istio `mirror`), compare stable's and the candidate's answers, store."""
    from switchover.parity.serve import ParityServer
    from switchover.parity.sink import ParitySink
    from switchover.parity.upstream import Upstreams

    loaded = _plan_or_adhoc(plan, stable, candidate)
    host, port = _address(listen, "--listen") if listen is not None else _address(loaded.parity.listen,
                                                                                   "parity.listen")
    admin_option = "--admin" if admin is not None else "parity.admin"
    admin = admin if admin is not None else loaded.parity.admin
    admin_at = _address(admin, admin_option) if admin is not None else None
    if admin_at is not None and admin_at == (host, port) and port != 0:
        raise UserError(f"{admin_option} {admin}: that is the listen address too; give it another port, or leave "
                        f"{admin_option} out to answer the report and health on the listen address")
    token_option = "--admin-token" if admin_token is not None else "parity.admin_token"
    token_ref = admin_token if admin_token is not None else loaded.parity.admin_token
    if token_ref is not None and not secrets.is_ref(token_ref):
        raise UserError("--admin-token takes env:NAME (the token itself never goes on a command line)")
    token = None if token_ref is None else secrets.resolve(token_ref, where=token_option)
    console = Console(stderr=True)
    sink = ParitySink(loaded, fetch_noise=False)
    server = ParityServer(sink, Upstreams.of(loaded.stable.url, loaded.candidate.url, loaded.parity),
                          concurrency=loaded.parity.concurrency, queue_size=loaded.parity.queue,
                          timeout=loaded.timeouts.server, admin_token=token)
    started = False

    async def main() -> None:
        nonlocal started
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async def bind(start: Callable[[str, int], Awaitable[int]], at: tuple[str, int], option: str) -> int:
            try:
                return await start(*at)
            except OSError as exc:
                await server.stop()
                # asyncio's message repeats the address; the errno's text is the news.
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise UserError(f"parity serve: {option}: cannot listen on {_shown(*at)}: {reason}") from None

        # The admin address first, so that no copy of /healthz reaches the listen address before the
        # server knows those copies are to be compared.
        if admin_at is not None:
            admin_port = await bind(server.start_admin, admin_at, admin_option)
        bound = await bind(server.start, (host, port), "--listen" if listen is not None else "parity.listen")
        started = True
        where = (f"admin={_shown(admin_at[0], admin_port)}" if admin_at is not None
                 else f"admin={_shown(host, bound)} (the listen address: copies of /api/v1/parity and /healthz "
                      "are not compared)")
        # The line tests and scripts wait for (the ports may have been 0).
        print(f"parity serve listening on {_shown(host, bound)} {where} stable={redact_url(loaded.stable.url)} "
              f"candidate={redact_url(loaded.candidate.url)} store={sink.store.path}", flush=True)
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            server.flush_counters()
            if deadline is not None and time.monotonic() >= deadline:
                break
        await server.stop()

    try:
        asyncio.run(main())
    finally:
        sink.close()
        if started:
            s = server.stats
            console.print(f"parity serve: {s.received} copies received, {sink.compared} compared, "
                          f"{s.dropped} dropped, {s.writes_skipped} writes not mirrored")


@parity_app.command()
def report(
    plan: Path | None = typer.Option(None, "--plan", help="plan file (its parity store and shadow budget)"),
    store: Path | None = typer.Option(None, "--store", help="a mismatch store file"),
    budget: float | None = typer.Option(None, "--budget", min=0, max=1, help="regression rate allowed"),
    samples: int = typer.Option(5, "--samples", min=0, help="recent differing answers shown in --json"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """What the store holds: compared answers, regressions by field and endpoint; exit 1 over budget."""
    if (plan is None) == (store is None):
        raise UserError("give exactly one of --plan PLAN or --store PATH")
    parity, limit, minimum = Parity(), DEFAULT_BUDGET, 1
    if plan is not None:
        loaded = load_plan(plan)
        parity, (limit, minimum) = loaded.parity, plan_budget(loaded)
        path = store_path(loaded)
    else:
        assert store is not None
        path = store
    db = MismatchStore.open_existing(path)
    try:
        result = build_report(db, parity, limit if budget is None else budget, minimum, samples=samples)
    finally:
        db.close()
    _print(result, as_json, Console())
    _verdict(result)
