"""`switchover run | status | pause | resume | promote | abort | rollback | confirm | demo`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import typer
from rich.console import Console

from switchover import secrets
from switchover.cli import app
from switchover.engine.api import api_token
from switchover.engine.state import fold
from switchover.engine.store import StateStore, whoami
from switchover.errors import CheckFailed, UserError
from switchover.plan import Plan, load_plan

PLAN_ARG = typer.Argument(..., help="plan file (YAML)")


def _store(plan: Plan) -> StateStore:
    return StateStore(plan.state_url(), plan.base_dir())


@app.command()
def run(plan: Path = PLAN_ARG) -> None:
    """Run the plan: move traffic step by step, judge every interval, roll back by itself.

    Exit 0 when the candidate is promoted, 1 when rolled back or aborted, 2 on bad input. Killing
    it never interrupts users; run it again to resume where it stopped.
    """
    from switchover.engine.controller import Controller, metrics_for
    from switchover.traffic.base import router_for
    from switchover.ui.live import LiveView

    loaded = load_plan(plan)
    store = _store(loaded)
    controller = Controller(loaded, store, router_for(loaded), metrics_for(loaded), view=LiveView())
    outcome = controller.run()
    if outcome != "promoted":
        state = controller.refresh()
        raise CheckFailed(f"{outcome.replace('_', ' ')}: {state.finish_reason}")


def _post(plan: Plan, command: str) -> dict[str, object]:
    url = f"http://{plan.controller.api}/api/v1/commands"
    token = api_token(plan)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(url, json={"command": command, "actor": whoami()}, headers=headers, timeout=5.0)
    except httpx.HTTPError:
        raise UserError(f"controller API {url} unreachable: is `switchover run {plan.source_path}` running? "
                        f"(`switchover rollback` works without it)") from None
    if response.status_code >= 400:
        raise UserError(f"controller API {url}: HTTP {response.status_code}: {secrets.redact(response.text)}")
    body: dict[str, object] = response.json()
    return body


def _operator(plan: Path, command: str, as_json: bool) -> None:
    loaded = load_plan(plan)
    answer = _post(loaded, command)
    if as_json:
        print(json.dumps(answer))
    elif answer.get("accepted"):
        Console().print(f"[green]{command}[/green] recorded for step {int(str(answer.get('step_index', -1))) + 1}")
    if not answer.get("accepted"):
        raise UserError(f"{command} refused: {answer.get('reason')}")


JSON_OPT = typer.Option(False, "--json", help="print the answer as JSON")


@app.command()
def pause(plan: Path = PLAN_ARG, as_json: bool = JSON_OPT) -> None:
    """Pause the run: holds stop counting; analysis (and automatic rollback) goes on."""
    _operator(plan, "pause", as_json)


@app.command()
def resume(plan: Path = PLAN_ARG, as_json: bool = JSON_OPT) -> None:
    """Resume a paused run (also one paused by inconclusive analysis)."""
    _operator(plan, "resume", as_json)


@app.command()
def promote(plan: Path = PLAN_ARG, as_json: bool = JSON_OPT) -> None:
    """End the current hold or pause now and go to the next step."""
    _operator(plan, "promote", as_json)


@app.command()
def abort(plan: Path = PLAN_ARG, as_json: bool = JSON_OPT) -> None:
    """Abort the run: every user back to stable (a rollback), the run ends as aborted."""
    _operator(plan, "abort", as_json)


@app.command()
def confirm(plan: Path = PLAN_ARG, as_json: bool = JSON_OPT) -> None:
    """Tick the manual step the run waits on."""
    _operator(plan, "confirm", as_json)


@app.command()
def rollback(
    plan: Path = PLAN_ARG,
    reason: str = typer.Option("operator rollback", "--reason", help="recorded in the journal"),
    as_json: bool = JSON_OPT,
) -> None:
    """Every user to stable now, mirroring off, dual writes off, rollback hooks; works with the
    controller dead or alive (a live one sees it and stops). Idempotent."""
    from switchover.engine.rollback import rollback as do_rollback

    loaded = load_plan(plan)
    store = _store(loaded)
    report = do_rollback(loaded, store, whoami(), reason)
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        console = Console()
        for step in report.steps:
            mark = "[green]ok[/green]" if step.get("ok", True) else "[red]failed[/red]"
            what = step.get("action")
            detail = step.get("detail") or step.get("argv") or step.get("target") or ""
            console.print(f"{mark} {what} {secrets.redact(str(detail))}", highlight=False)
        if report.repeat:
            console.print("(already rolled back: routes re-asserted, hooks not run again)")
    if not report.routed:
        raise UserError("rollback could not set the router to 100% stable: see above; retry when it answers")
    if not report.ok:
        raise CheckFailed("routed to stable, but some rollback actions failed (see above)")


@app.command()
def status(plan: Path = PLAN_ARG, as_json: bool = JSON_OPT) -> None:
    """The run's state from the journal (works whether the controller runs or not)."""
    loaded = load_plan(plan)
    store = _store(loaded)
    state = fold(store.events())
    holder = store.lock_holder(f"run:{loaded.name}")
    body = state.to_json()
    body["controller"] = ({"holder": holder.holder, "pid": holder.pid, "host": holder.host,
                           "heartbeat": holder.heartbeat} if holder else None)
    if as_json:
        print(json.dumps(body, default=str))
        return
    console = Console()
    if not state.run_id:
        console.print(f"plan {loaded.name}: no run yet")
        return
    step = f"{state.step_index + 1}/{len(state.steps)} {state.step_kind}" if state.step_index >= 0 else "not started"
    console.print(f"[bold]{loaded.name}[/bold] run {state.run_id}: [bold]{state.status}[/bold]", highlight=False)
    console.print(f"step {step}, weight {state.weight}%, mirror {state.mirror}%", highlight=False)
    if state.rollback_at is not None:
        console.print(f"rolled back by {state.rollback_actor}: {state.rollback_reason}", highlight=False)
    if state.finish_reason:
        console.print(f"finished: {state.outcome} ({state.finish_reason})", highlight=False)
    console.print("controller: " + (f"{holder.holder} pid {holder.pid}" if holder else "not running"), highlight=False)
    for v in state.last_verdicts:
        console.print(f"  {v.get('outcome'):<12} {v.get('gate'):<24} {v.get('reason')}", highlight=False, markup=False)
    for e in state.tail:
        at = datetime.fromtimestamp(e.at, UTC).strftime("%H:%M:%S")
        console.print(f"  {at} {e.kind} ({e.actor})", highlight=False, markup=False)


@app.command()
def demo(
    bad_candidate: bool = typer.Option(False, "--bad-candidate", help="v2 answers 5% 500s, slower: the shadow step catches it and rolls back before any user reaches v2"),
) -> None:
    """A cutover of a sample orders service, v1 -> v2, under load, in about a minute."""
    from switchover.demo.runner import run_demo

    outcome = run_demo(bad_candidate=bad_candidate)
    if outcome != "promoted":
        raise CheckFailed()
