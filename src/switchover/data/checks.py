"""Aggregate checks: ``count``, ``count:COL``, ``sum:COL``, ``avg:COL``, ``min:COL``, ``max:COL`` on both sides.

``run_checks(src, dst, TableSpec, ["count", "sum:total_cents"], tolerance=0.0) -> ChecksReport``:
one query per side (all aggregates together, with the table's ``where``), both sides concurrently.

Numbers are compared by relative drift ``|source - target| / max(|source|, |target|)`` against the
tolerance (0 by default: counts and sums are exact unless told otherwise; float columns are first
rounded to ``float_precision`` decimals). Other values (``max:updated_at``) are compared in their
canonical form (``canonical.py``: UTC, truncated to the lower precision) and must be equal.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from switchover import secrets
from switchover.data.canonical import Canon, canon_for, python_canon
from switchover.data.dialects import dialect_for
from switchover.data.introspect import describe_table
from switchover.data.rowdiff import TableSpec, jsonable
from switchover.data.types import Column, Kind, TableInfo
from switchover.data.urls import DbUrl, connect
from switchover.errors import UserError

FUNCS = ("count", "sum", "avg", "min", "max")
_CHECK = re.compile(r"^(count|sum|avg|min|max)(?::(.+))?$")


@dataclass(frozen=True)
class CheckSpec:
    func: str
    column: str | None

    @property
    def label(self) -> str:
        return f"{self.func}:{self.column}" if self.column else self.func


def parse_check(text: str) -> CheckSpec:
    m = _CHECK.match(text.strip())
    if not m or (m.group(1) != "count" and not m.group(2)):
        raise UserError(f"unknown check {text!r}: use count, count:COL, sum:COL, avg:COL, min:COL or max:COL")
    return CheckSpec(m.group(1), m.group(2))


@dataclass(frozen=True)
class CheckResult:
    check: str
    source: Any
    target: Any
    drift: float | None  # relative drift for numbers; None for other values
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "source": jsonable(self.source), "target": jsonable(self.target),
                "drift": self.drift, "ok": self.ok}


@dataclass(frozen=True)
class ChecksReport:
    table: str
    target_table: str
    tolerance: float
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "target_table": self.target_table, "ok": self.ok,
                "tolerance": self.tolerance, "checks": [r.to_json() for r in self.results]}


def relative_drift(source: decimal.Decimal, target: decimal.Decimal) -> float:
    scale = max(abs(source), abs(target))
    return 0.0 if scale == 0 else float(abs(source - target) / scale)


def compare(check: CheckSpec, source: Any, target: Any, canon: Canon | None, tolerance: float) -> CheckResult:
    """Pure: the verdict on one aggregate from its two values."""
    numeric = check.func in ("count", "sum", "avg") or (canon is not None and canon.kind in
                                                       (Kind.INT, Kind.DECIMAL, Kind.FLOAT))
    if numeric and not isinstance(source, str | bytes) and not isinstance(target, str | bytes):
        if source is None or target is None:
            return CheckResult(check.label, source, target, None, source is None and target is None)
        a, b = decimal.Decimal(str(source)), decimal.Decimal(str(target))
        if (canon is not None and canon.kind is Kind.FLOAT) or check.func == "avg":
            digits = canon.digits if canon is not None and canon.kind is Kind.FLOAT else 6
            quantum = decimal.Decimal(1).scaleb(-digits)
            a, b = a.quantize(quantum), b.quantize(quantum)
        drift = relative_drift(a, b)
        return CheckResult(check.label, source, target, drift, drift <= tolerance)
    equal = source == target if canon is None else python_canon(source, canon) == python_canon(target, canon)
    return CheckResult(check.label, source, target, None, equal)


def run_checks(src: DbUrl, dst: DbUrl, table: TableSpec, checks: Sequence[str], *, tolerance: float = 0.0,
               float_precision: int = 6) -> ChecksReport:
    specs = [parse_check(c) for c in checks] or [CheckSpec("count", None)]

    def side(role: str, url: DbUrl, name: str) -> tuple[TableInfo, Any]:
        conn = connect(url, autocommit=True)
        try:
            dialect_for(url.engine).prepare(conn)
            return describe_table(conn, url.engine, name), conn
        except UserError as exc:
            conn.close()
            raise UserError(f"{role} {url.safe}: {exc}") from None

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="checks") as pool:
        futures = [pool.submit(side, "source", src, table.name), pool.submit(side, "target", dst, table.target)]
        opened = [f.result()[1] for f in futures if f.exception() is None]
        try:
            for f in futures:
                f.result()  # the first failure (UserError) propagates; opened connections are closed below
            (info_a, conn_a), (info_b, conn_b) = futures[0].result(), futures[1].result()
            cols_a = [_column(info_a, s, "source", src) for s in specs]
            cols_b = [_column(info_b, s, "target", dst) if c is not None else None
                      for s, c in zip(specs, cols_a, strict=True)]
            va = pool.submit(_aggregate, conn_a, src, table.name, specs, cols_a, table.where, "source")
            vb = pool.submit(_aggregate, conn_b, dst, table.target, specs, cols_b, table.where, "target")
            values_a, values_b = va.result(), vb.result()
        finally:
            for conn in opened:
                conn.close()
    results = []
    for spec, ca, cb, x, y in zip(specs, cols_a, cols_b, values_a, values_b, strict=True):
        canon = canon_for(ca.type, cb.type, float_precision) if ca is not None and cb is not None else None
        if spec.func in ("count", "sum", "avg"):
            canon = None if spec.func != "sum" or canon is None or canon.kind is not Kind.FLOAT else canon
        results.append(compare(spec, x, y, canon, tolerance))
    return ChecksReport(table.name, table.target, tolerance, tuple(results))


def _column(info: TableInfo, spec: CheckSpec, role: str, url: DbUrl) -> Column | None:
    if spec.column is None:
        return None
    col = info.column(spec.column)
    if col is None:
        raise UserError(f"check {spec.label}: column {spec.column!r} not found in table {info.name} "
                        f"of the {role} {url.safe}")
    return col


def _aggregate(conn: Any, url: DbUrl, name: str, specs: list[CheckSpec], cols: list[Column | None],
               where: str | None, role: str) -> list[Any]:
    d = dialect_for(url.engine)
    exprs = []
    for spec, col in zip(specs, cols, strict=True):
        if col is None:
            exprs.append("count(*)")
            continue
        q = d.quote(col.name)
        if col.type.kind is Kind.BOOL and url.engine == "postgresql" and spec.func in ("sum", "avg"):
            q = f"{q}::int"
        exprs.append(f"{spec.func}({q})")
    sql = f"SELECT {', '.join(exprs)} FROM {d.table(name)}" + (f" WHERE ({where})" if where else "")
    try:
        cur = conn.cursor()
        try:
            cur.execute(sql)
            row = cur.fetchone()
        finally:
            cur.close()
    except Exception as exc:
        text = secrets.redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{role} {url.safe}, table {name}: query failed: {text}") from None
    return list(row)
