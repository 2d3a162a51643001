"""Pure verdicts: aggregate drift, check parsing, a table's verdict, range bookkeeping."""

from __future__ import annotations

import decimal
import hashlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from switchover.data.canonical import Canon
from switchover.data.checks import CheckResult, CheckSpec, ChecksReport, compare, parse_check, relative_drift
from switchover.data.dialects import SQLite
from switchover.data.rowdiff import (
    DiffOptions,
    DiffResult,
    RowDiff,
    _Bucket,
    _bucket_rows,
    _differing,
    _merge,
)
from switchover.data.types import Kind
from switchover.engine.steps.verify import judge_table
from switchover.errors import UserError


def test_parse_check() -> None:
    assert parse_check("count") == CheckSpec("count", None)
    assert parse_check("sum:total_cents") == CheckSpec("sum", "total_cents")
    assert parse_check("max:updated_at").label == "max:updated_at"
    for bad in ("sum", "median:x", "", "count;drop"):
        with pytest.raises(UserError, match="unknown check"):
            parse_check(bad)


def test_relative_drift() -> None:
    assert relative_drift(decimal.Decimal(1000), decimal.Decimal(999)) == pytest.approx(0.001)
    assert relative_drift(decimal.Decimal(0), decimal.Decimal(0)) == 0.0


def test_compare_counts_exact_unless_told_otherwise() -> None:
    assert compare(CheckSpec("count", None), 1000, 1000, None, 0.0).ok
    assert not compare(CheckSpec("count", None), 1000, 999, None, 0.0).ok
    assert compare(CheckSpec("count", None), 1000, 999, None, 0.001).ok
    assert not compare(CheckSpec("count", None), 1000, 998, None, 0.001).ok


def test_compare_sums_of_floats_at_the_float_precision_and_nulls() -> None:
    assert compare(CheckSpec("sum", "x"), 0.30000000000000004, 0.3, Canon(Kind.FLOAT, 6), 0.0).ok
    assert compare(CheckSpec("sum", "x"), None, None, None, 0.0).ok  # empty tables on both sides
    assert not compare(CheckSpec("sum", "x"), None, 5, None, 0.0).ok


def test_compare_timestamps_in_canonical_form() -> None:
    import datetime as dt

    ts = Canon(Kind.TIMESTAMP, 0)
    utc = dt.datetime(2024, 1, 1, 12, 0, 0, 400000, tzinfo=dt.UTC)
    assert compare(CheckSpec("max", "at"), utc, dt.datetime(2024, 1, 1, 12, 0, 0), ts, 0.0).ok
    result = compare(CheckSpec("max", "at"), utc, dt.datetime(2024, 1, 1, 12, 0, 1), ts, 0.0)
    assert not result.ok and result.drift is None


def _diff(missing: int = 0, extra: int = 0, changed: int = 0, rows: int = 1000) -> DiffResult:
    return DiffResult("t", "t", ("id",), ("id", "v"), tuple((i,) for i in range(missing)),
                      tuple((i,) for i in range(extra)), tuple(RowDiff((i,), ()) for i in range(changed)),
                      rows, rows - missing + extra, "range", 0.1)


def test_judge_table_row_drift_against_tolerance() -> None:
    assert judge_table("t", None, _diff(), 0.0).ok
    exact = judge_table("t", None, _diff(missing=1), 0.0)
    assert not exact.ok and "1 missing" in exact.reason and exact.differing_rows == 1
    assert judge_table("t", None, _diff(missing=1), 0.001).ok  # 1 of 1000 is within 0.1%
    assert not judge_table("t", None, _diff(missing=1, changed=1), 0.001).ok


def test_judge_table_non_numeric_checks_are_reported_not_judged_in_reconcile() -> None:
    report = ChecksReport("t", "t", 0.001, (CheckResult("count", 10, 10, 0.0, True),
                                            CheckResult("max:at", "a", "b", None, False)))
    assert not judge_table("t", report, None, 0.001).ok
    lenient = judge_table("t", report, None, 0.001, numeric_only=True)
    assert lenient.ok and "not judged: max:at" in lenient.reason


def test_differing_buckets_and_range_merge() -> None:
    left = {1: _Bucket(2, 10), 2: _Bucket(2, 11), 3: _Bucket(1, 5)}
    right = {1: _Bucket(2, 10), 2: _Bucket(2, 12), 4: _Bucket(1, 5)}
    assert _differing(left, right) == [2, 3, 4]
    assert _merge([(1, 5), (6, 9), (20, 30), (25, 26)]) == [(1, 9), (20, 30)]
    # a checksum that could not be computed (a cut text) never matches, even itself
    assert _differing({1: _Bucket(2, None)}, {1: _Bucket(2, None)}) == [1]


def test_sqlite_bucket_md5_is_in_key_order_whatever_the_scan_order() -> None:
    # SQLite before 3.44 has no ORDER BY inside an aggregate: its bucket checksum sorts by key itself,
    # giving what PostgreSQL's md5(string_agg(text, '' ORDER BY key)) gives
    conn = sqlite3.connect(":memory:")
    dialect = SQLite()
    dialect.prepare(conn)
    conn.execute("CREATE TABLE t (k INTEGER, v TEXT)")
    rows = [(k, f"{k},") for k in (5, -3, 100, 7, 0)]
    conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
    got = conn.execute(f"SELECT {dialect.agg_md5('v', 'k')} FROM t").fetchone()[0]
    assert got == hashlib.md5("".join(v for _, v in sorted(rows)).encode()).hexdigest()


class _SizedSide:
    def __init__(self, size: int | None) -> None:
        self.conn = None
        self.table_name = "t"
        self.dialect = self
        self.size = size

    def table_bytes(self, conn: object, name: str) -> int | None:
        if self.size is None:
            raise RuntimeError("no statistics")
        return self.size


def test_wide_rows_get_fewer_rows_per_bucket() -> None:
    # a bucket's text is built in the server's memory: about 8 MiB of table per bucket at most
    opts = DiffOptions(bucket_rows=256)
    with ThreadPoolExecutor(2) as pool:
        narrow = _bucket_rows(pool, _SizedSide(100 << 20), _SizedSide(80 << 20), 1_000_000, opts)  # type: ignore[arg-type]
        wide = _bucket_rows(pool, _SizedSide(10 << 30), _SizedSide(None), 10_000, opts)  # type: ignore[arg-type]
        huge = _bucket_rows(pool, _SizedSide(100 << 30), _SizedSide(0), 10, opts)  # type: ignore[arg-type]
    assert (narrow, wide, huge) == (256, 7, 1)
