"""Plan steps that move data: ``cdc``, ``backfill``, ``dual_write``, ``finalize``; the CDC-lag and
``rollback_safe`` gates; and ``rollback_participant``, which the one rollback calls after traffic is
back on stable.

- ``cdc: {tables, max_lag, sustained, reverse}`` starts capture (slot / triggers) and leaves the
  stream running as a background activity ("cdc"); with ``reverse: true`` a second stream carries
  the candidate's writes back to the stable database ("cdc-reverse", loop-free). The step is done
  when lag has stayed under ``max_lag`` for ``sustained``; from then on the ``cdc.lag`` gate (scope
  run) fails any interval where lag exceeds ``max_lag`` or the stream has stopped.
- ``backfill: {tables, max_lag, chunk_time}`` copies each table (resumes from its checkpoint after a
  controller restart; tables journaled as done are skipped). Operator abort/rollback stops it.
- ``dual_write: {enabled}`` sets the ``dual_write`` flag in the state store (``DualWriter`` reads it).
- ``finalize: {dual_write, keep_cdc}`` sets the flag, then keeps the CDC streams running for
  ``keep_cdc`` (``switchover promote`` ends the wait) before stopping them.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from switchover.analysis.verdict import Outcome, Verdict
from switchover.data.backfill import Backfill, BackfillOptions
from switchover.data.backfill_control import BackfillStatus
from switchover.data.backfill_state import StoreControl, backfill_key
from switchover.data.cdc.stream import CdcBackground, CdcStatus, CdcStream, TableRoute
from switchover.data.move_tables import ColumnMap, Side
from switchover.engine.steps.base import Signal, StepContext, StepResult, StepStatus
from switchover.errors import UserError
from switchover.plan.steps import Backfill as BackfillSpec
from switchover.plan.steps import Cdc as CdcSpec
from switchover.plan.steps import DualWrite as DualWriteSpec
from switchover.plan.steps import Finalize as FinalizeSpec
from switchover.secrets import redact

if TYPE_CHECKING:
    from switchover.data.urls import DbUrl
    from switchover.engine.store import StateStore
    from switchover.plan import Plan
    from switchover.plan.data import Data, Table

STOP_SIGNALS = (Signal.ABORT, Signal.ROLLBACK)


# ---------------------------------------------------------------------- plan -> streams


def _data(plan: Plan) -> Data:
    from switchover.data.planned import plan_data

    return plan_data(plan)


def _tables(plan: Plan, names: list[str] | None, where: str) -> list[Table]:
    from switchover.data.planned import select_tables

    return select_tables(_data(plan), names, where=where)


def _urls(plan: Plan) -> tuple[DbUrl, DbUrl]:
    from switchover.data.planned import databases

    return databases(_data(plan))


def forward_stream(plan: Plan, tables: list[Table]) -> CdcStream:
    src, dst = _urls(plan)
    routes = [TableRoute(t.name, t.target_name) for t in tables]
    return CdcStream(src, dst, routes, f"{plan.name}_fwd")


def reverse_stream(plan: Plan, tables: list[Table]) -> CdcStream:
    """Target -> source: the candidate's writes reach stable, so a rollback loses none."""
    src, dst = _urls(plan)
    routes = [TableRoute(t.target_name or t.name, t.name) for t in tables]
    return CdcStream(dst, src, routes, f"{plan.name}_rev", mark_touched=False)


# ---------------------------------------------------------------------- gates (pure judgement + adapters)


def judge_lag(gate: str, lag_ms: float | None, max_lag_ms: float, alive: bool, error: str | None) -> Verdict:
    """Pure: a CDC stream's verdict for one interval."""
    if not alive:
        return Verdict(gate, Outcome.FAIL, f"CDC stream stopped{': ' + error if error else ''}")
    if lag_ms is None:
        return Verdict(gate, Outcome.PASS, "streaming, nothing to apply yet", {"max_lag_ms": max_lag_ms})
    numbers = {"lag_ms": lag_ms, "max_lag_ms": max_lag_ms}
    if lag_ms > max_lag_ms:
        return Verdict(gate, Outcome.FAIL, f"CDC lag {lag_ms:.0f} ms > {max_lag_ms:.0f} ms", numbers)
    return Verdict(gate, Outcome.PASS, f"CDC lag {lag_ms:.0f} ms <= {max_lag_ms:.0f} ms", numbers)


class CdcLagGate:
    """``cdc.lag``: fails while the stream is down or its apply lag exceeds ``max_lag``."""

    def __init__(self, background: CdcBackground, max_lag_s: float, name: str = "cdc.lag") -> None:
        self.name, self.background, self.max_lag_ms = name, background, max_lag_s * 1000.0

    def evaluate(self, now: float) -> list[Verdict]:
        st = self.background.stream.status
        error = redact(str(self.background.error)) if self.background.error else None
        return [judge_lag(self.name, st.lag_ms, self.max_lag_ms, self.background.alive(), error)]


def judge_rollback_safe(reverse: Verdict | None, dual_write_on: bool, dead_letters: int | None) -> Verdict:
    """Pure: is a rollback data-safe now? Reverse CDC keeping up, or dual writes with no dead letters."""
    gate = "rollback_safe"
    if reverse is not None:
        if reverse.outcome is Outcome.PASS:
            return Verdict(gate, Outcome.PASS, f"reverse CDC keeps stable up to date ({reverse.reason})",
                           reverse.numbers)
        return Verdict(gate, Outcome.FAIL, f"reverse CDC: {reverse.reason}", reverse.numbers)
    if dual_write_on:
        if dead_letters is None:
            return Verdict(gate, Outcome.INCONCLUSIVE, "dual writes on; dead letters unreadable")
        if dead_letters:
            return Verdict(gate, Outcome.FAIL, f"{dead_letters} dead letter(s) not replayed: a rollback now "
                           "would lose those writes (switchover data dlq replay)", {"dead_letters": dead_letters})
        return Verdict(gate, Outcome.PASS, "dual writes on, no dead letters", {"dead_letters": 0})
    return Verdict(gate, Outcome.FAIL, "neither reverse CDC nor dual writes: the candidate's writes would be "
                   "lost on rollback")


class RollbackSafeGate:
    """Reverse CDC keeping up (lag) and, once it has caught up past them, the keys it applied recently
    holding the same row in both databases (row diff, on a worker thread: ``evaluate`` never waits for
    it); or, with dual writes instead, no dead letters."""

    name = "rollback_safe"

    def __init__(self, plan: Plan, store: StateStore, reverse: CdcBackground | None, max_lag_s: float, *,
                 interval: float | None = None, keys_per_table: int = 50, confirm_timeout: float = 10.0) -> None:
        self.plan, self.store, self.reverse, self.max_lag_ms = plan, store, reverse, max_lag_s * 1000.0
        self.interval = float(plan.analysis.interval) if interval is None else interval
        self.keys_per_table, self.confirm_timeout = keys_per_table, confirm_timeout
        self.row_check: RowCheck | None = None
        self._worker: threading.Thread | None = None
        self._started_at = float("-inf")

    def evaluate(self, now: float) -> list[Verdict]:
        reverse = None
        if self.reverse is not None:
            st = self.reverse.stream.status
            error = redact(str(self.reverse.error)) if self.reverse.error else None
            reverse = judge_lag("cdc.reverse_lag", st.lag_ms, self.max_lag_ms, self.reverse.alive(), error)
            if reverse.outcome is Outcome.PASS:
                self._maybe_check()
        dual = bool(self.store.get_flag("dual_write", False))
        letters = _dead_letter_count(self.plan) if dual and reverse is None else None
        verdict = judge_rollback_safe(reverse, dual, letters)
        if reverse is not None and verdict.outcome is Outcome.PASS and self.row_check is not None:
            return [judge_row_check(verdict, self.row_check)]
        return [verdict]

    def _maybe_check(self) -> None:
        """Start a row check on a worker thread unless one runs or one started within the interval."""
        if self.reverse is None or (self._worker is not None and self._worker.is_alive()):
            return
        mono = time.monotonic()
        if mono - self._started_at < self.interval:
            return
        self._started_at = mono
        stream = self.reverse.stream

        def work() -> None:
            self.row_check = check_recent_keys(stream, self.keys_per_table, self.confirm_timeout)

        self._worker = threading.Thread(target=work, name=f"rollback-safe-{stream.stream}", daemon=True)
        self._worker.start()

    def wait_check(self, timeout: float) -> RowCheck | None:
        """The running row check's result (tests; the controller never waits)."""
        if self._worker is not None:
            self._worker.join(timeout)
        return self.row_check


# ---------------------------------------------------------------------- rollback_safe: row diff of recent keys


@dataclass(frozen=True)
class KeyDivergence:
    table: str  # the stable (reverse target) table
    key: tuple[Any, ...]
    problem: str  # "changed" | "missing in stable" | "only in stable"
    columns: tuple[str, ...] = ()

    def describe(self) -> str:
        key = ", ".join(repr(v) for v in self.key)
        cols = f": column(s) {', '.join(self.columns)}" if self.columns else ""
        return f"{self.table} key ({key}) {self.problem}{cols}"


@dataclass(frozen=True)
class RowCheck:
    """One row diff of the reverse stream's recent keys: candidate (its source) vs stable (its target)."""

    outcome: Outcome  # PASS: the settled keys match; FAIL: divergences; INCONCLUSIVE: unreachable / unconfirmed
    checked: int
    divergences: tuple[KeyDivergence, ...] = ()
    detail: str = ""
    at: float = 0.0
    pending: int = 0  # keys applied after the stream last caught up: checked by a later evaluation


def judge_row_check(lag: Verdict, check: RowCheck) -> Verdict:
    """Pure: the rollback_safe verdict once reverse lag passed, given the latest recent-keys row check."""
    gate = "rollback_safe"
    numbers = {**lag.numbers, "keys_checked": float(check.checked), "keys_pending": float(check.pending)}
    if check.outcome is Outcome.FAIL:
        shown = "; ".join(d.describe() for d in check.divergences[:5])
        more = f" (+{len(check.divergences) - 5} more)" if len(check.divergences) > 5 else ""
        numbers["keys_diverged"] = float(len(check.divergences))
        return Verdict(gate, Outcome.FAIL, f"stable differs from candidate after reverse CDC caught up: {shown}{more}",
                       numbers)
    if check.outcome is Outcome.INCONCLUSIVE:
        return Verdict(gate, Outcome.INCONCLUSIVE, f"recent-keys row diff: {check.detail}", numbers)
    return Verdict(gate, Outcome.PASS, f"{lag.reason}; {check.checked} recently applied key(s) identical", numbers)


_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _literal(value: Any, engines: set[str]) -> str | None:
    """``value`` as SQL text every engine in ``engines`` reads the same way; None when there is none."""
    if value is None or isinstance(value, bytes | bytearray | memoryview):
        return None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float | decimal.Decimal):
        return str(value)
    text = value.isoformat(sep=" ") if isinstance(value, dt.datetime) else \
        value.isoformat() if isinstance(value, dt.date | dt.time) else str(value)
    if "\\" in text or "\x00" in text:
        if "mysql" in engines and engines != {"mysql"}:
            return None  # MySQL reads backslashes as escapes, the others do not
        if "mysql" in engines:
            text = text.replace("\\", "\\\\")
    return "'" + text.replace("'", "''") + "'"


def keys_where(columns: tuple[str, ...], keys: list[tuple[Any, ...]], engines: set[str]) -> str | None:
    """A WHERE clause selecting ``keys`` that reads the same on both sides; None when none can be expressed."""
    if len(engines) == 1:
        quote_char = "`" if engines == {"mysql"} else '"'
        names = [quote_char + c.replace(quote_char, quote_char * 2) + quote_char for c in columns]
    elif all(_PLAIN_NAME.match(c) for c in columns):
        names = list(columns)
    else:
        return None
    terms = []
    for key in keys:
        lits = [_literal(v, engines) for v in key]
        if any(lit is None for lit in lits):
            continue
        terms.append(" AND ".join(f"{n} = {lit}" for n, lit in zip(names, lits, strict=True)))
    return " OR ".join(f"({t})" for t in terms) if terms else None


def check_recent_keys(stream: CdcStream, limit: int, confirm_timeout: float = 10.0) -> RowCheck:
    """Row-diff (``rowdiff.diff_tables``) the keys ``stream`` applied before it last caught up, at most
    ``limit`` per table, between its source (candidate) and its target (stable). A differing key counts
    once the stream has caught up again after the diff and did not apply that key meanwhile (otherwise
    the difference was a write still on its way)."""
    from switchover.data.rowdiff import TableSpec, diff_tables

    settled = stream.recent.settled(limit)
    pending = stream.recent.pending()
    pairs = {p.target.name: p for p in stream.pairs.values()}
    engines = {stream.src_url.engine, stream.dst_url.engine}
    started = time.time()
    checked = 0
    suspects: list[KeyDivergence] = []
    for table, keys in sorted(settled.items()):
        pair = pairs.get(table)
        if pair is None or tuple(pair.source_key) != tuple(pair.target_key):
            continue  # a renamed key column: no WHERE reads the same on both sides
        where = keys_where(tuple(pair.source_key), [k for k, _ in keys], engines)
        if where is None:
            continue
        spec = TableSpec(pair.source.name, key=tuple(pair.source_key), target_name=table, where=where,
                         columns=tuple(c for c in pair.source_columns if c in set(pair.target_columns)))
        try:
            result = diff_tables(stream.src_url, stream.dst_url, spec)
        except Exception as exc:  # unreachable database, dropped table: not a verdict on the data
            return RowCheck(Outcome.INCONCLUSIVE, checked, detail=redact(f"{table}: {exc}"), at=started,
                            pending=pending)
        checked += len(keys)
        suspects += [KeyDivergence(table, tuple(k), "missing in stable") for k in result.missing]
        suspects += [KeyDivergence(table, tuple(k), "only in stable") for k in result.extra]
        suspects += [KeyDivergence(table, tuple(r.key), "changed", tuple(c.column for c in r.columns))
                     for r in result.changed]
    if not suspects:
        return RowCheck(Outcome.PASS, checked, at=started, pending=pending)
    # Confirm: the stream catches up past the diff, and did not re-apply the key since it started.
    diffed = time.time()
    deadline = time.monotonic() + confirm_timeout
    while (stream.recent.caught_up_at or 0.0) <= diffed and time.monotonic() < deadline:
        time.sleep(0.05)
    if (stream.recent.caught_up_at or 0.0) <= diffed:
        return RowCheck(Outcome.INCONCLUSIVE, checked, detail=f"{len(suspects)} key(s) differ, reverse stream "
                        "has not caught up since to confirm", at=started, pending=pending)
    # A key the diff read back typed (42) was recorded as the change carried it ('42'): match by text.
    confirmed = [s for s in suspects if (stream.recent.applied_at(s.table, s.key) or 0.0) < started]
    if confirmed:
        return RowCheck(Outcome.FAIL, checked, tuple(confirmed), at=started, pending=pending)
    return RowCheck(Outcome.PASS, checked, detail="differences were writes in flight", at=started, pending=pending)


def _dead_letter_count(plan: Plan) -> int | None:
    """Dead letters of the candidate's dual writes: they sit in its primary (the plan's target)."""
    from switchover.data import dlq

    try:
        _src, dst = _urls(plan)
        side = Side(dst, autocommit=True)
    except UserError:
        return None
    try:
        if not side.table_exists(dlq.DLQ_TABLE):
            return 0
        return int(side.execute(f"SELECT count(*) FROM {dlq.DLQ_TABLE} WHERE replayed_at IS NULL")[0][0])
    finally:
        side.close()


# ---------------------------------------------------------------------- steps


class CdcStep:
    kind: ClassVar[str] = "cdc"

    def __init__(self, spec: CdcSpec) -> None:
        self.spec = spec

    def run(self, ctx: StepContext) -> StepResult:
        started = self._start(ctx)
        if isinstance(started, StepResult):
            return started
        return self._wait_caught_up(ctx, started)

    def resume_background(self, ctx: StepContext) -> None:
        """After a controller restart, a done `cdc` step's streams run again, from the position
        stored in the target (the controller calls this for done steps that have it)."""
        started = self._start(ctx)
        if isinstance(started, StepResult):
            raise UserError(f"cdc: cannot resume the stream after a restart: {started.reason}")

    def _start(self, ctx: StepContext) -> CdcBackground | StepResult:
        try:
            tables = _tables(ctx.plan, self.spec.tables, "cdc.tables")
            forward = forward_stream(ctx.plan, tables)
            for warning in forward.prepare():
                ctx.say(f"cdc: warning: {warning}")
            reverse = reverse_stream(ctx.plan, tables) if self.spec.reverse else None
            if reverse is not None:
                reverse.prepare()
        except UserError as exc:
            return StepResult(StepStatus.FAILED, str(exc))
        ctx.journal("cdc_started", {"stream": forward.stream, "tables": [t.name for t in tables],
                                    "reverse": reverse.stream if reverse else None})
        bg = CdcBackground(forward, "cdc", on_status=_exporter(ctx, forward.stream))
        bg.start()
        ctx.start_background(bg)
        ctx.add_gate(CdcLagGate(bg, self.spec.max_lag), scope="run")
        rev_bg = None
        if reverse is not None:
            rev_bg = CdcBackground(reverse, "cdc-reverse", on_status=_exporter(ctx, reverse.stream))
            rev_bg.start()
            ctx.start_background(rev_bg)
        ctx.add_gate(RollbackSafeGate(ctx.plan, ctx.store, rev_bg, self.spec.max_lag), scope="run")
        return bg

    def _wait_caught_up(self, ctx: StepContext, bg: CdcBackground) -> StepResult:
        """Done once lag stayed under max_lag for ``sustained`` seconds."""
        under_since: float | None = None
        while True:
            st: CdcStatus = bg.stream.status
            if not bg.alive():
                return StepResult(StepStatus.FAILED, f"CDC stream stopped: {redact(str(bg.error))}")
            now = time.monotonic()
            ok = st.state == "streaming" and (st.lag_ms or 0.0) <= self.spec.max_lag * 1000.0
            under_since = (under_since or now) if ok else None
            if under_since is not None and now - under_since >= self.spec.sustained:
                ctx.journal("cdc_caught_up", {"stream": st.stream, "lag_ms": st.lag_ms, "position": st.position})
                return StepResult(StepStatus.DONE, f"CDC streaming, lag {st.lag_ms or 0:.0f} ms")
            signal = ctx.wait(min(1.0, max(0.05, self.spec.sustained / 10)))
            if signal in STOP_SIGNALS:
                return StepResult(StepStatus.ABORTED, f"{signal} while waiting for CDC to catch up")

    def on_rollback(self, ctx: StepContext) -> None:
        """The controller stops the streams; ``rollback_participant`` drains the reverse one first."""


class BackfillStep:
    kind: ClassVar[str] = "backfill"

    def __init__(self, spec: BackfillSpec) -> None:
        self.spec = spec

    def run(self, ctx: StepContext) -> StepResult:
        try:
            tables = _tables(ctx.plan, self.spec.tables, "backfill.tables")
            src_url, dst_url = _urls(ctx.plan)
        except UserError as exc:
            return StepResult(StepStatus.FAILED, str(exc))
        done = {str(e.payload.get("table")) for e in ctx.step_events() if e.kind == "backfill_done"}
        total = 0
        for table in tables:
            if table.name in done:
                ctx.say(f"backfill {table.name}: done before the restart")
                continue
            try:
                result = self._copy(ctx, src_url, dst_url, table)
            except UserError as exc:
                return StepResult(StepStatus.FAILED, f"backfill {table.name}: {exc}")
            except Exception as exc:
                return StepResult(StepStatus.FAILED, f"backfill {table.name}: {redact(str(exc))}")
            if result is None:
                return StepResult(StepStatus.ABORTED, f"backfill of {table.name} stopped by the operator")
            total += result.rows
        return StepResult(StepStatus.DONE, f"{len(tables)} table(s) backfilled, {total} rows")

    def _copy(self, ctx: StepContext, src_url: DbUrl, dst_url: DbUrl, table: Table) -> BackfillStatus | None:
        target = table.target_name or table.name
        control = StoreControl(ctx.store, backfill_key(dst_url.safe, target), ctx.run_id, "controller",
                               journal_fn=ctx.journal)
        options = BackfillOptions(table=table.name, target_table=table.target_name, mapping=ColumnMap(),
                                  chunk_time=self.spec.chunk_time, max_lag_ms=self.spec.max_lag * 1000.0)
        src, dst = Side(src_url, autocommit=True), Side(dst_url)
        last_say = [0.0]

        def progress(st: BackfillStatus) -> None:
            labels = {"table": table.name}
            ctx.export_metric("switchover_backfill_rows", float(st.rows), labels)
            ctx.export_metric("switchover_backfill_rows_per_second", st.rows_per_s, labels)
            if time.monotonic() - last_say[0] > 5:
                last_say[0] = time.monotonic()
                ctx.say(f"backfill {table.name}: {st.rows:,} rows, {st.rows_per_s:,.0f} rows/s"
                        + (f", throttled: {st.throttle}" if st.throttle else ""))

        job = Backfill(src, dst, options, control, on_progress=progress)
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["status"] = job.run()
            except BaseException as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=work, name=f"backfill-{table.name}", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                signal = ctx.wait(1.0)
                if signal in STOP_SIGNALS:
                    job.stop()
                    worker.join(timeout=60)
                    return None
                worker.join(timeout=0.0)
        finally:
            worker.join(timeout=60)
            src.close()
            dst.close()
        if "error" in outcome:
            raise outcome["error"]
        status: BackfillStatus = outcome["status"]
        return status

    def on_rollback(self, ctx: StepContext) -> None:
        """Copied rows stay in the target (stable never read them): nothing to undo."""


class DualWriteStep:
    kind: ClassVar[str] = "dual_write"

    def __init__(self, spec: DualWriteSpec) -> None:
        self.spec = spec

    def run(self, ctx: StepContext) -> StepResult:
        ctx.store.set_flag("dual_write", self.spec.enabled, "controller")
        ctx.journal("dual_write_set", {"enabled": self.spec.enabled})
        ctx.export_metric("switchover_dual_write_enabled", 1.0 if self.spec.enabled else 0.0)
        return StepResult(StepStatus.DONE, f"dual writes {'on' if self.spec.enabled else 'off'}")

    def on_rollback(self, ctx: StepContext) -> None:
        ctx.store.set_flag("dual_write", False, "controller")


class FinalizeStep:
    kind: ClassVar[str] = "finalize"

    def __init__(self, spec: FinalizeSpec) -> None:
        self.spec = spec

    def run(self, ctx: StepContext) -> StepResult:
        ctx.store.set_flag("dual_write", self.spec.dual_write, "controller")
        resumed = [e for e in ctx.step_events() if e.kind == "finalize_started"]
        started_at = float(resumed[0].payload["at"]) if resumed else ctx.now()
        if not resumed:
            ctx.journal("finalize_started", {"at": started_at, "dual_write": self.spec.dual_write,
                                             "keep_cdc_s": self.spec.keep_cdc})
        running = [name for name in ("cdc", "cdc-reverse") if ctx.background(name) is not None]
        if running:
            ctx.say(f"finalize: dual writes {'on' if self.spec.dual_write else 'off'}; keeping "
                    f"{', '.join(running)} for {self.spec.keep_cdc:.0f}s (promote to end now)")
            while ctx.now() - started_at < self.spec.keep_cdc:
                signal = ctx.wait(min(60.0, max(0.05, self.spec.keep_cdc - (ctx.now() - started_at))))
                if signal in STOP_SIGNALS:
                    return StepResult(StepStatus.ABORTED, f"{signal} during finalize")
                if signal is Signal.PROMOTE:
                    break
            for name in running:
                bg = ctx.background(name)
                if bg is not None:
                    bg.stop()
        ctx.journal("finalized", {"stopped": running})
        return StepResult(StepStatus.DONE, "finalized" + (f"; stopped {', '.join(running)}" if running else ""))

    def on_rollback(self, ctx: StepContext) -> None:
        ctx.store.set_flag("dual_write", False, "controller")


def _exporter(ctx: StepContext, stream: str) -> Any:
    def export(st: CdcStatus) -> None:
        if st.lag_ms is not None:
            ctx.export_metric("switchover_cdc_lag_seconds", st.lag_ms / 1000.0, {"stream": stream})

    return export


# ---------------------------------------------------------------------- rollback


@dataclass(frozen=True)
class DrainReport:
    ok: bool
    reverse_stream: str | None
    waited_s: float
    detail: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rollback_participant(plan: Plan, store: StateStore, actor: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """After traffic is back on stable: wait (bounded) until the reverse stream has carried every write
    the candidate's database took to the stable database. Runs the drain itself when no controller is
    streaming (the slot is idle); waits for the live stream otherwise."""
    started = time.monotonic()
    cdc_steps = [s for s in plan.step_list() if isinstance(s, CdcSpec) and s.reverse]
    if not cdc_steps:
        return DrainReport(True, None, 0.0, "no reverse CDC in the plan: nothing to drain").to_json()
    spec = cdc_steps[0]
    try:
        tables = _tables(plan, spec.tables, "cdc.tables")
        reverse = reverse_stream(plan, tables)
    except UserError as exc:
        return DrainReport(False, None, 0.0, str(exc)).to_json()
    try:
        report = _drain(reverse, timeout)
    except Exception as exc:
        report = DrainReport(False, reverse.stream, time.monotonic() - started, redact(f"{type(exc).__name__}: {exc}"))
    store.append(store.latest_run() or "no-run", "reverse_cdc_drain", actor, report.to_json())
    return report.to_json()


def _drain(reverse: CdcStream, timeout: float) -> DrainReport:
    if reverse.src_url.engine != "postgresql":
        return _drain_marked(reverse, timeout)
    from switchover.data.cdc import postgres
    from switchover.data.cdc.pgoutput import lsn_int, lsn_text

    t0 = time.monotonic()
    side = Side(reverse.src_url, autocommit=True)
    try:
        target_lsn = str(side.execute("SELECT pg_current_wal_lsn()::text")[0][0])
        goal = lsn_int(target_lsn)

        def confirmed() -> tuple[int, bool]:
            info = postgres.slot_info(side, reverse.slot)
            if info is None:
                raise UserError(f"reverse slot {reverse.slot} is gone")
            return (lsn_int(info.confirmed_flush_lsn) if info.confirmed_flush_lsn else 0), info.active

        flushed, active = confirmed()
        stop = threading.Event()
        worker: threading.Thread | None = None
        if not active and flushed < goal:
            # No controller streams it: drain here, from the position stored in the stable database.
            worker = threading.Thread(target=lambda: reverse.run(stop), name="reverse-drain", daemon=True)
            worker.start()
        try:
            while flushed < goal and time.monotonic() - t0 < timeout:
                time.sleep(0.1)
                flushed, active = confirmed()
        finally:
            stop.set()
            if worker is not None:
                worker.join(timeout=15)
    finally:
        side.close()
    waited = time.monotonic() - t0
    if flushed >= goal:
        return DrainReport(True, reverse.stream, waited, f"reverse stream drained to {target_lsn} in {waited:.1f}s")
    return DrainReport(False, reverse.stream, waited, f"reverse stream not drained after {timeout:.0f}s "
                       f"(at {lsn_text(flushed)}, needs {target_lsn})")


def _drain_marked(reverse: CdcStream, timeout: float) -> DrainReport:
    """MySQL/MariaDB or SQLite candidate: note where its change log ends and write a drain marker after
    it; done once the position stored in stable has reached that point. Runs the stream here while no
    other process reads it (the controller is dead, or stopped its streams for the rollback)."""
    t0 = time.monotonic()
    goal = reverse.request_drain()
    stop = threading.Event()
    worker: threading.Thread | None = None
    failure: list[BaseException] = []

    def run() -> None:
        try:
            reverse.run(stop)
        except BaseException as exc:  # reported below; a live consumer may still finish the drain
            failure.append(exc)

    drained = reverse.drained(goal)
    started_at = float("-inf")
    try:
        while not drained and time.monotonic() - t0 < timeout:
            # (Re)start our own reader while nobody reads the stream; after a failure, not more than every 2 s.
            if (worker is None or not worker.is_alive()) and time.monotonic() - started_at >= 2.0 \
                    and not reverse.consumer_alive():
                started_at = time.monotonic()
                worker = threading.Thread(target=run, name="reverse-drain", daemon=True)
                worker.start()
            time.sleep(0.1)
            drained = reverse.drained(goal)
    finally:
        stop.set()
        if worker is not None:
            worker.join(timeout=15)
    waited = time.monotonic() - t0
    if drained:
        return DrainReport(True, reverse.stream, waited, f"reverse stream drained to {goal} in {waited:.1f}s")
    stored = reverse.stored_position() or {}
    why = f"; last error: {redact(str(failure[-1]))}" if failure else ""
    return DrainReport(False, reverse.stream, waited, f"reverse stream not drained after {timeout:.0f}s "
                       f"(at {stored.get('position')}, needs {goal}){why}")
