"""`switchover preflight PLAN` and `switchover export argo|istio|nginx|terraform-route53|grafana PLAN`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from switchover.cli import app, export_app
from switchover.engine.store import StateStore, whoami
from switchover.errors import CheckFailed
from switchover.plan import load_plan
from switchover.probes.checks import Status
from switchover.probes.preflight import run_preflight

_STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "red"}


@app.command()
def preflight(
    plan: Path = typer.Argument(..., help="plan file (YAML)"),
    as_json: bool = typer.Option(False, "--json", help="print the checks as JSON"),
    rehearse: bool = typer.Option(True, "--rehearse/--no-rehearse",
                                  help="rehearse the rollback (weight 0 through the router, read back); "
                                       "refused while a run holds the plan's lock"),
) -> None:
    """Check everything a cutover needs before traffic moves. Exit 1 when any check fails."""
    loaded = load_plan(plan)
    store = StateStore(loaded.state_url(), loaded.base_dir())
    run_id = f"preflight-{int(time.time())}"
    actor = whoami()

    def journal(kind: str, payload: dict[str, object]) -> None:
        store.append(run_id, kind, actor, dict(payload))

    try:
        report = run_preflight(loaded, router=None, metrics=None, store=store, rehearse=rehearse, journal=journal)
    finally:
        store.close()
    if as_json:
        print(json.dumps({"plan": str(plan), **report.to_json()}, indent=2))
    else:
        table = Table(title=f"preflight: {loaded.name}")
        table.add_column("check")
        table.add_column("status")
        table.add_column("reason", overflow="fold")
        for check in report.checks:
            data = check.to_json()
            table.add_row(data["name"], f"[{_STYLE[check.status]}]{data['status']}[/]", data["reason"],
                          style=None)
        Console().print(table)
    if not report.ok:
        raise CheckFailed(f"preflight: {len(report.failed)} check(s) failed" if not as_json else "")


def _write(text: str, out: Path | None) -> None:
    if out is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    Console(stderr=True).print(f"wrote {out}")


_OUT = typer.Option(None, "--out", "-o", help="write to this file instead of standard output")


@export_app.command("argo")
def export_argo(plan: Path = typer.Argument(..., help="plan file (YAML)"), out: Path | None = _OUT) -> None:
    """An Argo Rollouts Rollout (canary steps) and AnalysisTemplates equivalent to the plan."""
    from switchover.export.argo import export_argo as render

    _write(render(load_plan(plan)), out)


@export_app.command("istio")
def export_istio(plan: Path = typer.Argument(..., help="plan file (YAML)"), out: Path | None = _OUT,
                 weight: int = typer.Option(0, help="candidate weight to write (0-100)"),
                 mirror: int = typer.Option(0, help="mirror percentage to write (0-100)")) -> None:
    """An Istio VirtualService and DestinationRule for the plan."""
    from switchover.export.istio import export_istio as render

    _write(render(load_plan(plan), weight, mirror), out)


@export_app.command("nginx")
def export_nginx(plan: Path = typer.Argument(..., help="plan file (YAML)"), out: Path | None = _OUT,
                 weight: int = typer.Option(0, help="candidate weight to write (0-100)"),
                 mirror: int = typer.Option(0, help="mirror percentage to write (0-100)")) -> None:
    """The nginx configuration switchover's nginx router writes (include it inside http {})."""
    from switchover.export.nginx import export_nginx as render

    _write(render(load_plan(plan), weight, mirror), out)


@export_app.command("terraform-route53")
def export_terraform_route53(plan: Path = typer.Argument(..., help="plan file (YAML)"), out: Path | None = _OUT,
                             weight: int = typer.Option(0, help="candidate weight to write (0-100)")) -> None:
    """Terraform (JSON syntax, *.tf.json) for the two weighted Route 53 records."""
    from switchover.export.terraform import export_terraform_route53 as render

    _write(render(load_plan(plan), weight), out)


@export_app.command("grafana")
def export_grafana(plan: Path = typer.Argument(..., help="plan file (YAML)"), out: Path | None = _OUT) -> None:
    """A Grafana dashboard (JSON) of the golden signals by role."""
    from switchover.export.grafana import export_grafana as render

    _write(render(load_plan(plan)), out)
