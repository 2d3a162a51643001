"""`switchover data check` (aggregates) and `switchover data diff` (exact row diff).

Both take ``SRC_URL DST_URL --table T [--target-table T2]`` or ``--plan PLAN`` (the plan's
``data:`` section: databases, tables, keys, checks). Exit 0 equal, 1 different, 2 bad input or an
unreachable database.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable

from switchover import secrets
from switchover.cli import data_app
from switchover.data.rowdiff import DiffOptions, DiffResult, ProgressFn, TableSpec, diff_tables, jsonable
from switchover.data.urls import DbUrl, parse_db_url
from switchover.errors import CheckFailed, UserError

if TYPE_CHECKING:
    from switchover.data.checks import ChecksReport

SRC_HELP = "source database URL (postgresql://, mysql://, sqlite:///path); a password may be env:NAME"
DST_HELP = "target database URL"


@data_app.command("check")
def check(
    src_url: str | None = typer.Argument(None, metavar="SRC_URL", help=SRC_HELP),
    dst_url: str | None = typer.Argument(None, metavar="DST_URL", help=DST_HELP),
    table: list[str] = typer.Option([], "--table", "-t", help="table (with --plan: only these plan tables)"),
    target_table: str | None = typer.Option(None, "--target-table", help="the table's name in the target"),
    checks: list[str] = typer.Option([], "--check", help="count, count:COL, sum:COL, avg:COL, min:COL, max:COL"),
    where: str | None = typer.Option(None, "--where", help="SQL condition applied on both sides"),
    tolerance: float = typer.Option(0.0, "--tolerance", min=0.0, help="relative drift accepted (0 = exact)"),
    plan: Path | None = typer.Option(None, "--plan", help="take databases, tables and checks from the plan"),
    source_password: str | None = typer.Option(None, "--source-password", help="env:NAME"),
    target_password: str | None = typer.Option(None, "--target-password", help="env:NAME"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Aggregates (count, sums, min/max) on both sides, concurrently, with their drift. Exit 1 on drift."""
    jobs = _jobs(src_url, dst_url, table, target_table, [], None, where, plan, source_password, target_password)
    from switchover.data.checks import run_checks

    reports: list[ChecksReport] = []
    for src, dst, spec, plan_checks, _precision in jobs:
        reports.append(run_checks(src, dst, spec, checks or plan_checks or ["count"], tolerance=tolerance,
                                  float_precision=_precision))
    ok = all(r.ok for r in reports)
    if as_json:
        print(json.dumps(secrets.redact_obj({"ok": ok, "source": jobs[0][0].safe, "target": jobs[0][1].safe,
                                             "tables": [r.to_json() for r in reports]})))
    else:
        console = Console()
        for report in reports:
            _print_checks(console, report)
    if not ok:
        raise CheckFailed("")


@data_app.command("diff")
def diff(
    src_url: str | None = typer.Argument(None, metavar="SRC_URL", help=SRC_HELP),
    dst_url: str | None = typer.Argument(None, metavar="DST_URL", help=DST_HELP),
    table: list[str] = typer.Option([], "--table", "-t", help="table (with --plan: only these plan tables)"),
    target_table: str | None = typer.Option(None, "--target-table", help="the table's name in the target"),
    key: list[str] = typer.Option([], "--key", "-k", help="key column(s); default: the primary key"),
    column: list[str] = typer.Option([], "--column", "-c", help="compare only these columns (default: all)"),
    where: str | None = typer.Option(None, "--where", help="SQL condition applied on both sides"),
    float_precision: int | None = typer.Option(None, "--float-precision", min=0, max=30,
                                               help="decimals kept when comparing floats (default 6)"),
    limit: int = typer.Option(20, "--limit", min=0, help="rows listed per kind of difference (text output)"),
    plan: Path | None = typer.Option(None, "--plan", help="take databases, tables and keys from the plan"),
    source_password: str | None = typer.Option(None, "--source-password", help="env:NAME"),
    target_password: str | None = typer.Option(None, "--target-password", help="env:NAME"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Exact row diff: keys missing in the target, extra in the target, and changed rows column by column."""
    jobs = _jobs(src_url, dst_url, table, target_table, key, column, where, plan, source_password, target_password)
    results: list[DiffResult] = []
    for src, dst, spec, _checks, precision in jobs:
        options = DiffOptions(float_precision=float_precision if float_precision is not None else precision)
        with _progress(not as_json, spec.name) as progress:
            results.append(diff_tables(src, dst, spec, options=options, progress=progress))
    equal = all(r.equal for r in results)
    if as_json:
        print(json.dumps(secrets.redact_obj({"equal": equal, "source": jobs[0][0].safe, "target": jobs[0][1].safe,
                                             "tables": [r.to_json() for r in results]})))
    else:
        console = Console()
        for result in results:
            _print_diff(console, result, limit)
    if not equal:
        raise CheckFailed("")


# ------------------------------------------------------------------------------------ inputs

Job = tuple[DbUrl, DbUrl, TableSpec, list[str], int]


def _jobs(src_url: str | None, dst_url: str | None, tables: list[str], target_table: str | None, key: list[str],
          columns: list[str] | None, where: str | None, plan: Path | None, source_password: str | None,
          target_password: str | None) -> list[Job]:
    if plan is not None:
        if src_url or dst_url:
            raise UserError("give either SRC_URL DST_URL or --plan PLAN, not both")
        # Imported here: the plan's models cost 0.15 s of start-up that a diff by URLs does not need.
        from switchover.data.planned import databases, plan_data, select_tables, table_spec
        from switchover.plan import load_plan

        data = plan_data(load_plan(plan))
        src, dst = databases(data, where=f"{plan}: data")
        jobs: list[Job] = []
        for t in select_tables(data, tables, where=f"{plan}: --table"):
            spec = table_spec(t)
            spec = TableSpec(spec.name, tuple(key) or spec.key, tuple(columns) if columns else spec.columns,
                             target_table or spec.target_name, where or spec.where)
            jobs.append((src, dst, spec, list(t.checks), data.float_precision))
        return jobs
    if not src_url or not dst_url:
        raise UserError("give SRC_URL DST_URL --table T (or --plan PLAN)")
    if len(tables) != 1:
        raise UserError("give one --table T (and --target-table T2 when its name differs in the target)")
    src = parse_db_url(src_url, source_password, where="SRC_URL")
    dst = parse_db_url(dst_url, target_password, where="DST_URL")
    spec = TableSpec(tables[0], tuple(key), tuple(columns) if columns else None, target_table, where)
    return [(src, dst, spec, [], 6)]


@contextmanager
def _progress(enabled: bool, table: str) -> Iterator[ProgressFn | None]:
    """A rich progress bar (rows, rows/s, ETA) on stderr when it is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]} rows/s"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"{table}: {phase}", total=total or None, rate="-")
            task = tasks[phase]
            bar.update(task, completed=done, total=total or None)
            speed = bar.tasks[task].speed if task < len(bar.tasks) else None
            bar.update(task, rate=f"{speed:,.0f}" if speed else "-")

        yield update


# ------------------------------------------------------------------------------------ output


def _fmt(value: Any) -> str:
    shown = jsonable(value)
    return "NULL" if shown is None else repr(shown) if isinstance(shown, str) else str(shown)


def _print_checks(console: Console, report: ChecksReport) -> None:
    grid = RichTable(title=f"{report.table} -> {report.target_table}", title_justify="left")
    for name in ("check", "source", "target", "drift", ""):
        grid.add_column(name)
    for r in report.results:
        drift = "-" if r.drift is None else f"{r.drift:.6%}"
        grid.add_row(r.check, _fmt(r.source), _fmt(r.target), drift, "[green]ok[/green]" if r.ok else "[red]DRIFT[/red]")
    console.print(grid)


def _print_diff(console: Console, result: DiffResult, limit: int) -> None:
    name = result.table if result.table == result.target_table else f"{result.table} -> {result.target_table}"
    head = (f"{name}: {result.source_rows} source rows, {result.target_rows} target rows, "
            f"{result.seconds:.2f}s")
    if result.equal:
        console.print(f"[green]equal[/green] {head}")
        return
    console.print(f"[red]different[/red] {head}: {len(result.missing)} missing in target, "
                  f"{len(result.extra)} extra in target, {len(result.changed)} changed")
    key = ", ".join(result.key)
    for label, keys in (("missing in target", result.missing), ("extra in target", result.extra)):
        for k in keys[:limit]:
            console.print(f"  {label}: ({key}) = ({', '.join(_fmt(v) for v in k)})", markup=False)
        if len(keys) > limit:
            console.print(f"  ... {len(keys) - limit} more {label} (--limit, or --json for all)")
    for row in result.changed[:limit]:
        cols = "; ".join(f"{c.column}: {_fmt(c.source)} -> {_fmt(c.target)}" for c in row.columns)
        console.print(f"  changed: ({key}) = ({', '.join(_fmt(v) for v in row.key)}): {cols}", markup=False)
    if len(result.changed) > limit:
        console.print(f"  ... {len(result.changed) - limit} more changed (--limit, or --json for all)")
