"""The ``switchover`` command. Thin: it parses and delegates. One module per command group."""

from __future__ import annotations

import sys

import typer

from switchover import secrets
from switchover.errors import CheckFailed, UserError

app = typer.Typer(
    name="switchover",
    help="Move an HTTP service and its data from stable to candidate without users noticing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="Data: aggregate checks, row diff, backfill, CDC, dead letters.", no_args_is_help=True)
parity_app = typer.Typer(help="Shadow parity: diff candidate answers against stable's.", no_args_is_help=True)
export_app = typer.Typer(help="Export the plan for other tools (Argo Rollouts, Istio, nginx, Terraform, Grafana).",
                         no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(parity_app, name="parity")
app.add_typer(export_app, name="export")


MODULES = ("plan_cmds", "proxy", "control", "parity", "data_verify", "data_move", "adapters")
# A command in one of these groups needs only its group's modules: `data diff` starts without
# importing the proxy, the controller and the parity engine (a short diff is mostly start-up).
GROUP_MODULES = {"data": ("data_verify", "data_move"), "parity": ("parity",)}


def _modules_for(argv: list[str]) -> tuple[str, ...]:
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return GROUP_MODULES.get(first or "", MODULES)


def _register(modules: tuple[str, ...] = MODULES) -> None:
    # Each module adds its commands to `app` or a group above when imported.
    import importlib

    for module in modules:
        try:
            importlib.import_module(f"switchover.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"switchover.cli.{module}":
                raise


def main() -> None:
    _register(_modules_for(sys.argv[1:]))
    try:
        app(standalone_mode=False)
    except UserError as exc:
        print(f"switchover: {secrets.redact(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except CheckFailed as exc:
        if str(exc):
            print(f"switchover: {secrets.redact(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
