"""Canonical values and the hashed row text: pure rules, checked without a database."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchover.data.canonical import Canon, canon_for, encode_value, python_canon
from switchover.data.dialects import MySQL, Postgres, SQLite
from switchover.data.types import ColumnType, Kind


def t(kind: Kind, **kw: object) -> ColumnType:
    return ColumnType(kind, str(kind), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("a", "b", "want"), [
    (t(Kind.INT), t(Kind.INT), Canon(Kind.INT)),
    (t(Kind.BOOL), t(Kind.INT), Canon(Kind.INT)),  # boolean true == tinyint(1) 1
    (t(Kind.DECIMAL, scale=2), t(Kind.DECIMAL, scale=4), Canon(Kind.DECIMAL, 4)),
    (t(Kind.DECIMAL, scale=2), t(Kind.INT), Canon(Kind.DECIMAL, 2)),
    (t(Kind.FLOAT), t(Kind.DECIMAL, scale=2), Canon(Kind.FLOAT, 6)),
    (t(Kind.TIMESTAMP, precision=6), t(Kind.TIMESTAMP, precision=0), Canon(Kind.TIMESTAMP, 0)),
    (t(Kind.TIMESTAMP, precision=6, tz=True), t(Kind.TIMESTAMP, precision=3), Canon(Kind.TIMESTAMP, 3)),
    (t(Kind.UUID), t(Kind.TEXT), Canon(Kind.UUID)),
    (t(Kind.TEXT), t(Kind.TEXT), Canon(Kind.TEXT)),
    (t(Kind.BYTES), t(Kind.BYTES), Canon(Kind.BYTES)),
    (t(Kind.TEXT), t(Kind.INT), Canon(Kind.OTHER)),
])
def test_canon_for_pairs(a: ColumnType, b: ColumnType, want: Canon) -> None:
    assert canon_for(a, b) == want
    assert canon_for(b, a) == want


def test_canon_for_float_precision_is_configurable() -> None:
    assert canon_for(t(Kind.FLOAT), t(Kind.FLOAT), float_precision=2) == Canon(Kind.FLOAT, 2)


def test_python_canon_normalises_like_the_databases() -> None:
    ts = Canon(Kind.TIMESTAMP, 3)
    aware = dt.datetime(2024, 1, 1, 13, 0, 0, 123999, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert python_canon(aware, ts) == "2024-01-01 12:00:00.123"  # UTC, truncated (not rounded)
    assert python_canon(dt.datetime(2024, 1, 1, 12, 0, 0, 999999), Canon(Kind.TIMESTAMP, 0)) == "2024-01-01 12:00:00"
    assert python_canon(decimal.Decimal("1.5"), Canon(Kind.DECIMAL, 2)) == "1.50"
    assert python_canon(0.1 + 0.2, Canon(Kind.FLOAT, 6)) == "0.300000"
    assert python_canon(True, Canon(Kind.INT)) == "1"
    u = uuid.UUID(int=255)
    assert python_canon(str(u).upper(), Canon(Kind.UUID)) == str(u)
    assert python_canon(u.bytes, Canon(Kind.UUID)) == str(u)
    assert python_canon(b"\x00\xff", Canon(Kind.BYTES)) == "00ff"
    assert python_canon(None, Canon(Kind.TEXT)) is None


def test_null_and_empty_string_encode_differently() -> None:
    assert encode_value(None, Kind.TEXT) != encode_value("", Kind.TEXT)
    assert encode_value(None, Kind.INT) != encode_value("", Kind.INT)


KINDS = st.sampled_from([Kind.TEXT, Kind.INT, Kind.TIMESTAMP])


@given(st.lists(st.tuples(st.one_of(st.none(), st.text()), st.one_of(st.none(), st.text())), min_size=1, max_size=4),
       st.lists(KINDS, min_size=4, max_size=4))
def test_row_text_is_injective(pairs: list[tuple[str | None, str | None]], kinds: list[Kind]) -> None:
    # Delimited kinds never hold a comma in practice; text-like ones may hold anything.
    def ok(v: str | None, k: Kind) -> bool:
        return v is None or k is Kind.TEXT or ("," not in v and v != "N")

    left = [p[0] for p in pairs]
    right = [p[1] for p in pairs]
    ks = kinds[: len(pairs)]
    if not all(ok(v, k) for v, k in zip(left + right, ks + ks, strict=True)):
        return
    text_l = "".join(encode_value(v, k) for v, k in zip(left, ks, strict=True))
    text_r = "".join(encode_value(v, k) for v, k in zip(right, ks, strict=True))
    assert (text_l == text_r) == (left == right)


def test_identifiers_are_quoted_per_engine() -> None:
    assert MySQL().table("db.my`table") == "`db`.`my``table`"
    assert Postgres().table('public.my"t') == '"public"."my""t"'
    assert SQLite().quote("x") == '"x"'


def test_sqlite_md5_functions_match_the_servers_formula() -> None:
    import sqlite3

    conn = sqlite3.connect(":memory:")
    SQLite().prepare(conn)
    # PostgreSQL: ('x' || md5('abc'))::bit(60)::bigint (the first 15 hex digits); md5('abc') = 900150983cd24fb0...
    assert conn.execute("SELECT sw_md5_60('abc')").fetchone()[0] == int("900150983cd24fb", 16)
    assert conn.execute("SELECT sw_xor60(v) FROM (SELECT 5 AS v UNION ALL SELECT 3)").fetchone()[0] == 6
