"""`switchover validate PLAN` and `switchover schema`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from switchover.cli import app
from switchover.engine.steps.base import unsupported_kinds
from switchover.errors import UserError
from switchover.plan import load_plan, plan_schema


@app.command()
def validate(
    plan: Path = typer.Argument(..., help="plan file (YAML)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Check a plan: YAML, every field, and that this build supports every step kind it uses."""
    loaded = load_plan(plan)
    missing = unsupported_kinds(loaded)
    if missing:
        raise UserError(f"{plan}: step kinds not supported yet by this build: {', '.join(missing)}")
    kinds = [str(getattr(s, "kind", "")) for s in loaded.step_list()]
    if as_json:
        print(json.dumps({"plan": str(plan), "name": loaded.name, "valid": True, "steps": kinds}))
        return
    Console().print(f"[green]ok[/green] {plan}: plan [bold]{loaded.name}[/bold], {len(kinds)} steps: "
                    + " -> ".join(kinds))


@app.command()
def schema() -> None:
    """Print the plan's JSON Schema (for editors: yaml-language-server)."""
    print(plan_schema())
