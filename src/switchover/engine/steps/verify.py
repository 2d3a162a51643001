"""The ``verify`` step and the ``reconcile`` gate: the plan's data checks as a pass/fail step and a gate.

- ``verify: {checks: true, rowdiff: false, tables: [..], tolerance: 0}`` runs the aggregate checks of
  each table in ``data.tables`` (``checks: [count, "sum:total_cents", ...]``) and, with
  ``rowdiff: true``, an exact row diff; the step fails (and the run rolls back) with the reasons.
  Resumable: tables journaled as verified are not verified again after a controller restart.
- ``ReconcileGate(plan, every)`` re-runs the checks and the row diff every ``every`` seconds, in a
  thread so that the controller's interval is never blocked, and fails while the drift (rows
  missing, extra or changed over the source's rows, and each numeric aggregate's relative drift)
  is beyond ``data.drift_threshold`` (default 0.1%). Between runs it repeats its latest verdicts:
  drift found at 14:00 is still drift at 14:01 until a run shows otherwise. An unreachable
  database is an inconclusive verdict. The controller adds it for ``hold``/``canary`` steps with
  ``reconcile_every``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import ClassVar

from switchover import secrets
from switchover.analysis.verdict import Outcome, Verdict
from switchover.data.checks import ChecksReport, run_checks
from switchover.data.planned import databases, plan_data, select_tables, table_spec
from switchover.data.rowdiff import DiffOptions, DiffResult, diff_tables
from switchover.engine.steps.base import StepContext, StepResult, StepStatus
from switchover.errors import UserError
from switchover.plan import Plan
from switchover.plan.data import Data, Table
from switchover.plan.steps import Verify


@dataclass(frozen=True)
class TableVerdict:
    """One table's verification: pass/fail with the reason and the numbers behind it."""

    table: str
    ok: bool
    reason: str
    drift: float  # the largest relative drift seen (rows, or a numeric aggregate)
    differing_rows: int | None  # None when no row diff ran
    source_rows: int | None

    def to_json(self) -> dict[str, object]:
        return {"table": self.table, "ok": self.ok, "reason": self.reason, "drift": self.drift,
                "differing_rows": self.differing_rows, "source_rows": self.source_rows}


def judge_table(table: str, checks: ChecksReport | None, diff: DiffResult | None, tolerance: float,
                *, numeric_only: bool = False) -> TableVerdict:
    """Pure: a table's verdict from its check report and row diff, against a relative ``tolerance``.

    ``numeric_only``: non-numeric aggregates (``max:updated_at``) move with replication lag during
    live traffic; the reconcile gate reports them without failing on them (the row diff is exact).
    """
    problems: list[str] = []
    notes: list[str] = []
    drift = 0.0
    for r in checks.results if checks else ():
        if r.drift is not None:
            drift = max(drift, r.drift)
            if r.drift > tolerance:
                problems.append(f"{r.check} source={r.source} target={r.target} drift={r.drift:.4%}")
        elif not r.ok:
            (notes if numeric_only else problems).append(f"{r.check} source={r.source} target={r.target}")
    differing = None
    rows = None
    if diff is not None:
        differing = len(diff.missing) + len(diff.extra) + len(diff.changed)
        rows = diff.source_rows
        row_drift = differing / max(diff.source_rows, diff.target_rows, 1)
        drift = max(drift, row_drift)
        if differing and row_drift > tolerance:
            problems.append(f"rows: {len(diff.missing)} missing, {len(diff.extra)} extra, {len(diff.changed)} "
                            f"changed of {diff.source_rows} ({row_drift:.4%})")
    if problems:
        reason = f"{table}: " + "; ".join(problems)
    else:
        parts = [f"{len(checks.results)} checks" if checks else "", f"{rows} rows diffed" if diff else ""]
        reason = f"{table}: equal within {tolerance:.4%} (" + ", ".join(p for p in parts if p) + ")"
    if notes:
        reason += " [not judged: " + "; ".join(notes) + "]"
    return TableVerdict(table, not problems, secrets.redact(reason), drift, differing, rows)


def verify_table(data: Data, table: Table, *, checks: bool, rowdiff: bool, tolerance: float,
                 numeric_only: bool = False) -> TableVerdict:
    """Run the plan's checks (and row diff) for one table. UserError when a database is unreachable."""
    src, dst = databases(data)
    spec = table_spec(table)
    report = run_checks(src, dst, spec, table.checks, tolerance=tolerance,
                        float_precision=data.float_precision) if checks else None
    diff = None
    if rowdiff:
        diff = diff_tables(src, dst, spec, options=DiffOptions(float_precision=data.float_precision))
    return judge_table(table.name, report, diff, tolerance, numeric_only=numeric_only)


class VerifyStep:
    kind: ClassVar[str] = "verify"

    def __init__(self, spec: Verify) -> None:
        self.spec = spec

    def run(self, ctx: StepContext) -> StepResult:
        try:
            data = plan_data(ctx.plan)
            tables = select_tables(data, self.spec.tables, where="verify.tables")
        except UserError as exc:
            return StepResult(StepStatus.FAILED, str(exc))
        done = {str(e.payload.get("table")) for e in ctx.step_events()
                if e.kind == "verify_table" and e.payload.get("ok")}
        failed: list[str] = []
        for table in tables:
            if table.name in done:
                ctx.say(f"verify {table.name}: verified before the restart")
                continue
            ctx.say(f"verify {table.name}: " + " + ".join(
                p for p, on in (("checks", self.spec.checks), ("row diff", self.spec.rowdiff)) if on))
            try:
                verdict = verify_table(data, table, checks=self.spec.checks, rowdiff=self.spec.rowdiff,
                                       tolerance=self.spec.tolerance)
            except UserError as exc:
                verdict = TableVerdict(table.name, False, secrets.redact(f"{table.name}: {exc}"), 1.0, None, None)
            ctx.journal("verify_table", verdict.to_json())
            ctx.say(("ok " if verdict.ok else "FAILED ") + verdict.reason)
            if not verdict.ok:
                failed.append(verdict.reason)
        if failed:
            return StepResult(StepStatus.FAILED, "data verification failed: " + " | ".join(failed))
        return StepResult(StepStatus.DONE, f"{len(tables)} table(s) verified")

    def on_rollback(self, ctx: StepContext) -> None:
        """Verification changes nothing: nothing to undo."""


class ReconcileGate:
    """``ReconcileGate(plan, every=3600.0)``: see the module docstring. ``evaluate(now)`` never blocks."""

    name = "reconcile"

    def __init__(self, plan: Plan, every: float, *, rowdiff: bool = True) -> None:
        self.plan = plan
        self.every = max(0.0, float(every))
        self.rowdiff = rowdiff
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        self._verdicts: list[Verdict] = []
        self._checked_at: float | None = None

    def evaluate(self, now: float) -> list[Verdict]:
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            due = self._started_at is None or now - self._started_at >= self.every
            if due and not running:
                self._started_at = now
                self._thread = threading.Thread(target=self._reconcile, args=(now,), name="reconcile", daemon=True)
                self._thread.start()
            return list(self._verdicts)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a reconcile run in flight (tests, shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def run_now(self, now: float) -> list[Verdict]:
        """Reconcile synchronously and return the verdicts."""
        self._reconcile(now)
        with self._lock:
            self._started_at = now
            return list(self._verdicts)

    def _reconcile(self, now: float) -> None:
        verdicts = self.check(self.plan, rowdiff=self.rowdiff)
        with self._lock:
            self._verdicts = verdicts
            self._checked_at = now

    @staticmethod
    def check(plan: Plan, *, rowdiff: bool = True) -> list[Verdict]:
        if plan.data is None:
            return [Verdict("reconcile", Outcome.INCONCLUSIVE, "the plan has no data: section")]
        data = plan.data
        out = []
        for table in data.tables:
            try:
                v = verify_table(data, table, checks=True, rowdiff=rowdiff, tolerance=data.drift_threshold,
                                 numeric_only=True)
            except UserError as exc:
                out.append(Verdict("reconcile", Outcome.INCONCLUSIVE, secrets.redact(f"{table.name}: {exc}")))
                continue
            numbers = {"drift": v.drift, "threshold": data.drift_threshold}
            if v.differing_rows is not None:
                numbers["differing_rows"] = float(v.differing_rows)
                numbers["source_rows"] = float(v.source_rows or 0)
            out.append(Verdict("reconcile", Outcome.PASS if v.ok else Outcome.FAIL, v.reason, numbers))
        return out
