"""`switchover data backfill`, `data cdc`, `data dlq list|replay`: thin wrappers over ``switchover.data``."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from switchover.cli import data_app
from switchover.data.backfill_control import BackfillStatus
from switchover.data.move_tables import ColumnMap, Side
from switchover.data.urls import DbUrl
from switchover.durations import format_duration, parse_duration
from switchover.engine.store import StateStore, pid_alive, whoami
from switchover.errors import UserError
from switchover.secrets import redact

DEFAULT_STATE = "sqlite:///.switchover/data-move.db"
err = Console(stderr=True)


def _seconds(value: str, option: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from None


def _store(state: str) -> StateStore:
    return StateStore(state)


@data_app.command("backfill")
def backfill_cmd(
    src_url: str | None = typer.Argument(None, help="source database URL (postgresql://, mysql://, sqlite:///)"),
    dst_url: str | None = typer.Argument(None, help="target database URL"),
    table: list[str] = typer.Option([], "--table", help="source table (with --plan: only these plan tables)"),
    target_table: str | None = typer.Option(None, "--target-table", help="target table (default: same name)"),
    map_: list[str] = typer.Option([], "--map", help="src_col:dst_col (repeatable)"),
    chunk_time: str = typer.Option("0.5s", "--chunk-time", help="target time per chunk; chunk size adapts"),
    max_lag_ms: float = typer.Option(500.0, "--max-lag-ms", help="pause while replication/CDC lag exceeds this"),
    throttle_query: str | None = typer.Option(None, "--throttle-query", help="SQL on the source; > 0 = pause"),
    throttle_file: str | None = typer.Option(None, "--throttle-file", help="pause while this file exists"),
    state: str = typer.Option(DEFAULT_STATE, "--state", help="state store for checkpoints and commands"),
    pause: bool = typer.Option(False, "--pause", help="pause a running backfill of this table"),
    resume: bool = typer.Option(False, "--resume", help="resume a paused backfill of this table"),
    status: bool = typer.Option(False, "--status", help="show the progress of this table's backfill"),
    as_json: bool = typer.Option(False, "--json", help="JSON summary on stdout (no progress bar)"),
    plan: Path | None = typer.Option(None, "--plan", help="databases, tables and state store from the plan"),
) -> None:
    """Copy a table's rows to the target: keyset chunks, idempotent merge, throttled, resumable."""
    if sum([pause, resume, status]) > 1:
        raise UserError("use one of --pause, --resume, --status")
    job = _resolve(src_url, dst_url, table, target_table, plan, state)
    for name, target in job.tables:
        _backfill_one(job, name, target, map_, chunk_time, max_lag_ms, throttle_query, throttle_file,
                      pause, resume, status, as_json)


@dataclass(frozen=True)
class _Job:
    src: DbUrl
    dst: DbUrl
    tables: list[tuple[str, str | None]]  # (source table, target table or None)
    store: StateStore | None  # only when the command keeps state (backfill)
    stream: str | None  # the plan's stream name, so CLI and controller share one slot and position


def _resolve(src_url: str | None, dst_url: str | None, tables: list[str], target_table: str | None,
             plan: Path | None, state: str | None) -> _Job:
    from switchover.data.urls import parse_db_url

    if plan is not None:
        from switchover.data.planned import databases, plan_data, select_tables
        from switchover.plan import load_plan

        if src_url or dst_url:
            raise UserError("give either SRC_URL DST_URL or --plan PLAN, not both")
        loaded = load_plan(plan)
        data = plan_data(loaded)
        src, dst = databases(data, where=f"{plan}: data")
        chosen = select_tables(data, tables or None, where=f"{plan}: --table")
        store = StateStore(loaded.state_url(), loaded.base_dir()) if state is not None else None
        return _Job(src, dst, [(t.name, t.target_name) for t in chosen], store, f"{loaded.name}_fwd")
    if not src_url or not dst_url or not tables:
        raise UserError("give SRC_URL DST_URL --table T (or --plan PLAN)")
    if target_table and len(tables) > 1:
        raise UserError("--target-table applies to a single --table")
    src = parse_db_url(src_url, where="SRC_URL")
    dst = parse_db_url(dst_url, where="DST_URL")
    return _Job(src, dst, [(t, target_table) for t in tables], _store(state) if state is not None else None, None)


def _backfill_one(job: _Job, table: str, target_table: str | None, map_: list[str], chunk_time: str,
                  max_lag_ms: float, throttle_query: str | None, throttle_file: str | None, pause: bool,
                  resume: bool, status: bool, as_json: bool) -> None:
    from switchover.data.backfill import Backfill, BackfillOptions
    from switchover.data.backfill_state import StoreControl, backfill_key

    src_parsed, dst_parsed, store = job.src, job.dst, job.store
    assert store is not None
    target = target_table or table
    key = backfill_key(dst_parsed.safe, target)
    control = StoreControl(store, key, f"backfill:{target}", whoami())
    if pause or resume:
        control.set_paused(pause, whoami())
        control.journal("operator_command", {"command": "pause" if pause else "resume", "table": table})
        _print_status(control.load(), as_json, note="paused" if pause else "resumed")
        return
    if status:
        current = control.load()
        if current is None:
            raise UserError(f"no backfill of {table} into {dst_parsed.safe} recorded in {store.path}")
        _print_status(current, as_json, paused=control.paused())
        return
    options = BackfillOptions(table=table, target_table=target_table, mapping=ColumnMap.parse(map_),
                              chunk_time=_seconds(chunk_time, "--chunk-time"), max_lag_ms=max_lag_ms,
                              throttle_query=throttle_query, throttle_file=throttle_file)
    src = Side(src_parsed, autocommit=True)
    dst = Side(dst_parsed)
    copy = Backfill(src, dst, options, control)
    signal.signal(signal.SIGTERM, lambda *_: copy.stop())
    try:
        result = copy.run() if as_json else _with_progress(copy, table)
    except KeyboardInterrupt:
        copy.stop()
        raise
    except _db_errors() as exc:
        raise UserError(f"backfill of {table} stopped: {redact(str(exc)).strip()}; the checkpoint is kept, "
                        "run the same command to resume") from None
    finally:
        src.close()
        dst.close()
    if as_json:
        print(json.dumps(result.to_json(), default=str))
    else:
        took = max(0.001, result.updated_at - result.started_at)
        err.print(f"[green]backfill {result.state}[/green]: {table} -> {target}, {result.rows:,} rows "
                  f"in {result.chunks} chunks, {format_duration(took)}, {result.rows_per_s:,.0f} rows/s")


def _with_progress(job: Any, table: str) -> BackfillStatus:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]} rows/s"), TextColumn("lag {task.fields[lag]}"),
               TimeRemainingColumn(), TextColumn("[yellow]{task.fields[throttle]}"))
    with Progress(*columns, console=err, transient=False) as bar:
        task: TaskID = bar.add_task(table, total=None, rate="-", lag="-", throttle="")

        def show(st: BackfillStatus) -> None:
            total = max(st.total_estimate or 0, st.rows) or None
            bar.update(task, completed=st.rows, total=total, rate=f"{st.rows_per_s:,.0f}",
                       lag="-" if st.lag_ms is None else f"{st.lag_ms:.0f}ms",
                       throttle=f"throttled: {st.throttle}" if st.throttle else "")

        job.on_progress = show
        result: BackfillStatus = job.run()
        return result


def _print_status(current: BackfillStatus | None, as_json: bool, *, paused: bool | None = None,
                  note: str | None = None) -> None:
    data: dict[str, Any] = current.to_json() if current else {}
    if paused is not None:
        data["paused"] = paused
    if note:
        data["command"] = note
    if as_json:
        print(json.dumps(data, default=str))
        return
    if note:
        err.print(f"backfill {note}" + ("" if current else " (no progress recorded yet)"))
    if current:
        age = time.time() - current.updated_at
        alive = pid_alive(current.pid)
        err.print(f"{current.table}: {current.state}{' (process gone)' if current.state == 'running' and not alive else ''}"
                  f", {current.rows:,} rows, {current.chunks} chunks, last key {current.last_key}, "
                  f"{current.rows_per_s:,.0f} rows/s, chunk {current.chunk_size}, updated {age:.1f}s ago"
                  + (f", throttled: {current.throttle}" if current.throttle else "")
                  + (", paused" if paused else ""))


@data_app.command("cdc")
def cdc_cmd(
    src_url: str | None = typer.Argument(None, help="source database URL"),
    dst_url: str | None = typer.Argument(None, help="target database URL"),
    table: list[str] = typer.Option([], "--table", help="source table (repeatable; with --plan: a subset)"),
    target_table: str | None = typer.Option(None, "--target-table", help="target table (one --table only)"),
    map_: list[str] = typer.Option([], "--map", help="src_col:dst_col (repeatable)"),
    stream: str | None = typer.Option(None, "--stream", help="stream name (slot name derives from it)"),
    metrics: str | None = typer.Option(None, "--metrics", help="serve Prometheus /metrics on HOST:PORT"),
    duration: str | None = typer.Option(None, "--duration", help="stop after this long (default: until Ctrl-C)"),
    prepare_only: bool = typer.Option(False, "--prepare-only", help="start capture (slot/triggers) and exit"),
    drop_slot: bool = typer.Option(False, "--drop-slot", help="drop this stream's slot and publication, and exit"),
    status: bool = typer.Option(False, "--status", help="show position, lag and slot retention, and exit"),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
    plan: Path | None = typer.Option(None, "--plan", help="databases and tables from the plan (its forward stream)"),
    debezium_out: str | None = typer.Option(None, "--debezium-out", help="also write applied changes as "
                                            "Debezium JSON lines to PATH (- = stdout)"),
    debezium_in: str | None = typer.Option(None, "--debezium-in", help="apply Debezium JSON lines from PATH "
                                           "(- = stdin) instead of reading the source's log"),
) -> None:
    """Stream changes from the source to the target (PostgreSQL slot, MySQL binlog, SQLite triggers)."""
    import threading

    from switchover.data.cdc.stream import CdcStream, TableRoute

    resolved = _resolve(src_url, dst_url, table, target_table, plan, None)
    src, dst = resolved.src, resolved.dst
    mapping = ColumnMap.parse(map_)
    from switchover.data.cdc.stream import default_stream

    names = [t for t, _ in resolved.tables]
    if debezium_in is not None and stream is None:  # its positions are line numbers: a stream of its own
        stream = "dbz_" + default_stream(src, names)
    job = CdcStream(src, dst, [TableRoute(t, tt, mapping) for t, tt in resolved.tables], stream or resolved.stream,
                    debezium_in=debezium_in, debezium_out=debezium_out)
    table = [t for t, _ in resolved.tables]
    if drop_slot or status:
        info = _cdc_info(job, drop=drop_slot)
        if as_json:
            print(json.dumps(info, default=str))
        else:
            for k, v in info.items():
                err.print(f"{k}: {v}")
        return
    for warning in job.prepare():
        err.print(f"[yellow]warning[/yellow]: {warning}")
    if prepare_only:
        info = {"stream": job.stream, "prepared": True, "slot": job.slot if src.engine == "postgresql" else None}
        print(json.dumps(info)) if as_json else err.print(f"capture started for stream {job.stream}")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    gauges = _serve_metrics(metrics, job.stream) if metrics else None
    limit = _seconds(duration, "--duration") if duration else None
    started = time.monotonic()

    def on_status(st: Any) -> None:
        if gauges is not None:
            gauges(st)
        if limit is not None and time.monotonic() - started >= limit:
            stop.set()

    if not as_json:
        err.print(f"cdc {job.stream}: streaming {', '.join(table)} from {src.safe} to {dst.safe} (Ctrl-C to stop)")
    try:
        result = job.run(stop, on_status)
    except KeyboardInterrupt:
        stop.set()
        result = job.status
    except _db_errors() as exc:
        raise UserError(f"cdc {job.stream} stopped: {redact(str(exc)).strip()}; the position is kept in the "
                        "target, run the same command to resume") from None
    if as_json:
        print(json.dumps(result.to_json(), default=str))
    else:
        err.print(f"cdc {result.state}: {result.transactions} transactions, {result.changes} changes, "
                  f"position {result.position}")


def _db_errors() -> tuple[type[BaseException], ...]:
    """The drivers' error classes: a database refusing or failing during the work (exit 2, no traceback)."""
    import sqlite3

    import psycopg
    import psycopg2
    import pymysql

    return (psycopg.Error, psycopg2.Error, pymysql.err.MySQLError, sqlite3.Error)


def _cdc_info(job: Any, *, drop: bool) -> dict[str, Any]:
    info: dict[str, Any] = {"stream": job.stream, "position": job.stored_position()}
    if job.src_url.engine == "postgresql":
        from switchover.data.cdc import postgres

        side = Side(job.src_url, autocommit=True)
        try:
            slot = postgres.slot_info(side, job.slot)
            info["slot"] = slot.to_json() if slot else None
            if drop:
                info["dropped"] = postgres.drop_slot(side, job.slot)
        finally:
            side.close()
    return info


def _serve_metrics(address: str, stream: str) -> Any:
    from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise UserError(f"--metrics {address!r}: write HOST:PORT, e.g. 127.0.0.1:9108")
    registry = CollectorRegistry()
    lag = Gauge("switchover_cdc_lag_seconds", "source commit to target apply", ["stream"], registry=registry)
    changes = Counter("switchover_cdc_applied_changes_total", "row changes applied", ["stream"], registry=registry)
    try:
        start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    except OSError as exc:
        raise UserError(f"--metrics {address}: {exc}") from None
    seen = {"changes": 0}

    def update(st: Any) -> None:
        if st.lag_ms is not None:
            lag.labels(stream).set(st.lag_ms / 1000.0)
        if st.changes > seen["changes"]:
            changes.labels(stream).inc(st.changes - seen["changes"])
            seen["changes"] = st.changes

    return update


dlq_app = typer.Typer(help="Dead letters of dual writes: list and replay them.", no_args_is_help=True)
data_app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(
    primary_url: str = typer.Argument(..., help="the primary database (holds switchover_dead_letters)"),
    include_replayed: bool = typer.Option(False, "--all", help="include letters already replayed"),
    as_json: bool = typer.Option(False, "--json", help="JSON lines"),
) -> None:
    """Show dead letters: secondary writes that failed and wait for a replay."""
    from rich.table import Table

    from switchover.data import dlq

    side = Side.open(primary_url, where="PRIMARY_URL")
    try:
        dlq.ensure_dlq(side)
        letters = dlq.pending(side, include_replayed=include_replayed)
    finally:
        side.close()
    if as_json:
        print(json.dumps([letter.to_json() for letter in letters], default=str))
        return
    table = Table("id", "table", "op", "key", "attempts", "error", "replayed")
    for letter in letters:
        e = letter.event
        table.add_row(str(letter.id), e.table, e.op, json.dumps({k: e.row.get(k) for k in e.key}, default=str),
                      str(letter.attempts), letter.error[:60], "yes" if letter.replayed_at else "")
    Console().print(table)
    err.print(f"{len(letters)} dead letter(s)")


@dlq_app.command("replay")
def dlq_replay(
    primary_url: str = typer.Argument(..., help="the primary database (holds switchover_dead_letters)"),
    secondary_url: str = typer.Argument(..., help="the secondary database the letters go to"),
    as_json: bool = typer.Option(False, "--json", help="JSON summary"),
) -> None:
    """Apply pending dead letters to the secondary, idempotently (exit 1 if some still fail)."""
    from switchover.data import dlq
    from switchover.errors import CheckFailed

    primary = Side.open(primary_url, where="PRIMARY_URL")
    secondary = Side.open(secondary_url, where="SECONDARY_URL")
    try:
        dlq.ensure_dlq(primary)
        result = dlq.replay(primary, secondary)
    finally:
        primary.close()
        secondary.close()
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        err.print(f"replayed {result.replayed}, already applied {result.duplicates}, failed {result.failed}")
        for line in result.errors[:20]:
            err.print(f"  {line}")
    if result.failed:
        raise CheckFailed(f"{result.failed} dead letter(s) could not be replayed" if not as_json else "")
