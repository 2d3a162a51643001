"""Type edge cases across engines: time zones, timestamp precision, float precision, decimal scale,
exact text (case, Unicode normalisation) under a case-insensitive MySQL collation, --where."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from switchover.data.rowdiff import DiffOptions, TableSpec, diff_tables
from switchover.data.urls import parse_db_url
from tests.integration.dataverify.conftest import Tables

pytestmark = [pytest.mark.postgres, pytest.mark.mariadb]


def _pair(tables: Tables, name: str, pg_cols: dict[str, str], my_cols: dict[str, str], pg_rows: list[list[Any]],
          my_rows: list[list[Any]]) -> tuple[Any, Any]:
    cols_pg = {c: {"postgresql": t, "mysql": my_cols[c], "sqlite": "text"} for c, t in pg_cols.items()}
    tables.make("postgresql", name, pg_rows, columns=cols_pg)
    tables.make("mysql", name, my_rows, columns=cols_pg)
    return parse_db_url(tables.url("postgresql")), parse_db_url(tables.url("mysql"))


def test_time_zones_and_timestamp_precision(tables: Tables) -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    instants = [dt.datetime(2024, 1, 1, 13, 0, 0, 123456, tzinfo=paris), dt.datetime(2037, 6, 1, 0, 0, 0, tzinfo=dt.UTC)]
    pg_rows = [[i, t, t.astimezone(dt.UTC).replace(tzinfo=None, microsecond=700000)] for i, t in enumerate(instants)]
    # MySQL: TIMESTAMP(6) written in UTC (the session is UTC); a DATETIME without fractions keeps seconds
    my_rows = [[i, t.astimezone(dt.UTC).replace(tzinfo=None), t.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0)]
               for i, t in enumerate(instants)]
    a, b = _pair(tables, "sw_dataverify_tz", {"id": "bigint", "at": "timestamptz(6)", "seen": "timestamp(6)"},
                 {"id": "bigint", "at": "timestamp(6)", "seen": "datetime"}, pg_rows, my_rows)
    result = diff_tables(a, b, TableSpec("sw_dataverify_tz", key=("id",)))
    assert result.equal, result.to_json()  # same instants; `seen` compared at whole seconds

    my_rows[1][2] = my_rows[1][2] + dt.timedelta(seconds=1)
    a, b = _pair(tables, "sw_dataverify_tz", {"id": "bigint", "at": "timestamptz(6)", "seen": "timestamp(6)"},
                 {"id": "bigint", "at": "timestamp(6)", "seen": "datetime"}, pg_rows, my_rows)
    result = diff_tables(a, b, TableSpec("sw_dataverify_tz", key=("id",)))
    assert [(r.key, [c.column for c in r.columns]) for r in result.changed] == [((1,), ["seen"])]


def test_float_precision_and_decimal_scale(tables: Tables) -> None:
    pg_rows = [[1, 0.1234567, decimal.Decimal("1.50")], [2, 1e6 / 3, decimal.Decimal("-0.01")]]
    my_rows = [[1, 0.1234568, decimal.Decimal("1.5000")], [2, 1e6 / 3, decimal.Decimal("-0.0100")]]
    cols = ({"id": "bigint", "f": "double precision", "d": "numeric(12,2)"},
            {"id": "bigint", "f": "double", "d": "decimal(14,4)"})
    a, b = _pair(tables, "sw_dataverify_num", *cols, pg_rows, my_rows)
    assert diff_tables(a, b, TableSpec("sw_dataverify_num", key=("id",))).equal  # equal at 6 decimals
    strict = diff_tables(a, b, TableSpec("sw_dataverify_num", key=("id",)), options=DiffOptions(float_precision=9))
    assert [(r.key, [c.column for c in r.columns]) for r in strict.changed] == [((1,), ["f"])]


@pytest.mark.parametrize(("src", "dst"), [("postgresql", "mysql"), ("mysql", "sqlite"), ("sqlite", "postgresql")])
def test_doubles_with_more_than_15_significant_digits_compare_equal(tables: Tables, src: str, dst: str) -> None:
    # the same doubles on both sides, whose 6-decimal rounding depends on digits 16 and 17
    # (PostgreSQL's float8::numeric keeps 15, SQLite's printf 16; MySQL and Python read all)
    values = [1234567890.1234565, 123456789012.3456785, 0.30000000000000004, -5e-7, 1e20, 9007199254740993.0,
              -0.0, 2.5e-7]
    rows = [[i, v, float(i) / 3] for i, v in enumerate(values)]
    cols = {"id": {"postgresql": "bigint", "mysql": "bigint", "sqlite": "integer"},
            "f": {"postgresql": "double precision", "mysql": "double", "sqlite": "real"},
            "g": {"postgresql": "real", "mysql": "double", "sqlite": "real"}}
    tables.make(src, "sw_dataverify_f17", rows, columns=cols)
    tables.make(dst, "sw_dataverify_f17", rows, columns=cols)
    a, b = parse_db_url(tables.url(src)), parse_db_url(tables.url(dst))
    result = diff_tables(a, b, TableSpec("sw_dataverify_f17"))
    assert result.equal, result.to_json()

    changed = [list(r) for r in rows]
    changed[0][1] = 1234567890.1234555  # one unit at the 7th decimal, rounded to the 6th: different
    tables.make(dst, "sw_dataverify_f17", changed, columns=cols)
    result = diff_tables(a, b, TableSpec("sw_dataverify_f17"))
    assert [(r.key, [c.column for c in r.columns]) for r in result.changed] == [((0,), ["f"])]


def test_text_is_exact_even_under_a_case_insensitive_collation(tables: Tables) -> None:
    pg_rows = [[1, "Straße"], [2, "caf\u00e9"], [3, "Tab\tEnd "], [4, "same"]]
    my_rows = [[1, "STRASSE"], [2, "cafe\u0301"], [3, "Tab\tEnd"], [4, "same"]]
    a, b = _pair(tables, "sw_dataverify_text", {"id": "bigint", "v": "text"},
                 {"id": "bigint", "v": "varchar(50) collate utf8mb4_general_ci"}, pg_rows, my_rows)
    result = diff_tables(a, b, TableSpec("sw_dataverify_text", key=("id",)))
    assert [r.key for r in result.changed] == [(1,), (2,), (3,)]
    assert result.changed[1].columns[0].target == "cafe\u0301"


def test_where_restricts_both_sides(tables: Tables) -> None:
    rows = [[i, f"v{i}"] for i in range(1, 101)]
    target = [list(r) for r in rows]
    target[9][1] = "changed"  # id 10
    target[89][1] = "changed"  # id 90
    a, b = _pair(tables, "sw_dataverify_where", {"id": "bigint", "v": "text"},
                 {"id": "bigint", "v": "text"}, rows, target)
    result = diff_tables(a, b, TableSpec("sw_dataverify_where", key=("id",), where="id < 50"))
    assert [r.key for r in result.changed] == [(10,)]
    assert result.source_rows == result.target_rows == 49


@pytest.mark.parametrize("target", ["mysql", "sqlite"])
def test_dates_times_and_bytes(tables: Tables, target: str) -> None:
    cols = {"id": {"postgresql": "bigint", "mysql": "bigint", "sqlite": "integer"},
            "d": {"postgresql": "date", "mysql": "date", "sqlite": "date"},
            "t": {"postgresql": "time(6)", "mysql": "time(6)", "sqlite": "time"},
            "b": {"postgresql": "bytea", "mysql": "blob", "sqlite": "blob"}}
    rows = [[1, dt.date(2024, 2, 29), dt.time(23, 59, 59, 5), b"\x00\xffA"],
            [2, None, None, None],
            [3, dt.date(1970, 1, 1), dt.time(0, 0), b""]]
    other = [list(r) for r in rows]
    if target == "sqlite":  # SQLite keeps dates and times as ISO text
        other = [[r[0], r[1].isoformat() if r[1] else None, r[2].isoformat() if r[2] else None, r[3]] for r in rows]
    tables.make("postgresql", "sw_dataverify_dtb", rows, columns=cols)
    tables.make(target, "sw_dataverify_dtb", other, columns=cols)
    a, b = parse_db_url(tables.url("postgresql")), parse_db_url(tables.url(target))
    assert diff_tables(a, b, TableSpec("sw_dataverify_dtb")).equal

    other[0][3] = b"\x00\xffB"
    other[2][1] = dt.date(1970, 1, 2).isoformat() if target == "sqlite" else dt.date(1970, 1, 2)
    tables.make(target, "sw_dataverify_dtb", other, columns=cols)
    result = diff_tables(a, b, TableSpec("sw_dataverify_dtb"))
    assert [(r.key, [c.column for c in r.columns]) for r in result.changed] == [((1,), ["b"]), ((3,), ["d"])]
