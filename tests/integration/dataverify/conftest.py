"""Real databases for the data-verification tests: PostgreSQL and MariaDB on 127.0.0.1 (database
``sw_dataverify``, created when missing) and SQLite files in a temporary directory.

``make_table(engine, name, rows, ...)`` creates a table with the same logical columns on any engine
and loads the rows; it returns the table's URL so that tests can pair any two engines.
"""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

DB = "sw_dataverify"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
MY_URL = f"mysql://root@127.0.0.1:3306/{DB}"

# logical column -> DDL per engine
STANDARD = {
    "id": {"postgresql": "bigint", "mysql": "bigint", "sqlite": "integer"},
    "name": {"postgresql": "text", "mysql": "varchar(200)", "sqlite": "text"},
    "amount": {"postgresql": "numeric(12,2)", "mysql": "decimal(12,2)", "sqlite": "decimal(12,2)"},
    "score": {"postgresql": "double precision", "mysql": "double", "sqlite": "real"},
    "created": {"postgresql": "timestamp(6)", "mysql": "datetime(6)", "sqlite": "timestamp"},
    "flag": {"postgresql": "boolean", "mysql": "tinyint(1)", "sqlite": "boolean"},
    "note": {"postgresql": "text", "mysql": "text", "sqlite": "text"},
    "uid": {"postgresql": "uuid", "mysql": "char(36)", "sqlite": "uuid"},
}
COLUMNS = list(STANDARD)


def _ensure_databases() -> None:
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
            conn.execute(f"CREATE DATABASE {DB}")
    conn2 = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    try:
        conn2.cursor().execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
    finally:
        conn2.close()


@pytest.fixture(scope="session")
def databases() -> None:
    _ensure_databases()


def _adapt(engine: str, value: Any) -> Any:
    if engine == "sqlite":
        if isinstance(value, decimal.Decimal):
            return str(value)
        if isinstance(value, dt.datetime):
            return value.isoformat(sep=" ")
        if isinstance(value, uuid.UUID):
            return str(value)
    if engine == "mysql" and isinstance(value, uuid.UUID):
        return str(value)
    return value


class Tables:
    """Creates tables on any engine; drops the PostgreSQL/MariaDB ones at the end of the test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.created: list[tuple[str, str]] = []

    def url(self, engine: str) -> str:
        if engine == "postgresql":
            return PG_URL
        if engine == "mysql":
            return MY_URL
        return f"sqlite:///{self.tmp / 'sw_dataverify.db'}"

    def execute(self, engine: str, sql: str, params: Sequence[Any] = ()) -> None:
        self.executemany(engine, sql, [params] if params else [])

    def executemany(self, engine: str, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if engine == "postgresql":
            with psycopg.connect(host="127.0.0.1", user="postgres", dbname=DB, autocommit=True) as conn, \
                    conn.cursor() as cur:
                if rows:
                    cur.executemany(sql, [tuple(_adapt(engine, v) for v in r) for r in rows])
                else:
                    cur.execute(sql)
        elif engine == "mysql":
            conn = pymysql.connect(host="127.0.0.1", user="root", database=DB, autocommit=True, charset="utf8mb4")
            try:
                cur = conn.cursor()
                cur.execute("SET time_zone = '+00:00'")
                if rows:
                    cur.executemany(sql, [tuple(_adapt(engine, v) for v in r) for r in rows])
                else:
                    cur.execute(sql)
            finally:
                conn.close()
        else:
            conn3 = sqlite3.connect(self.tmp / "sw_dataverify.db")
            try:
                sql = sql.replace("%s", "?")
                if rows:
                    conn3.executemany(sql, [tuple(_adapt(engine, v) for v in r) for r in rows])
                else:
                    conn3.execute(sql)
                conn3.commit()
            finally:
                conn3.close()

    def make(self, engine: str, name: str, rows: Sequence[Sequence[Any]], *, columns: dict[str, dict[str, str]] | None = None,
             key: Sequence[str] | None = ("id",)) -> str:
        cols = columns or STANDARD
        q = '`' if engine == "mysql" else '"'
        self.execute(engine, f"DROP TABLE IF EXISTS {q}{name}{q}")
        ddl = ", ".join(f"{q}{c}{q} {types[engine]}" for c, types in cols.items())
        if key:
            ddl += ", PRIMARY KEY (" + ", ".join(f"{q}{k}{q}" for k in key) + ")"
        self.execute(engine, f"CREATE TABLE {q}{name}{q} ({ddl})")
        if engine != "sqlite":
            self.created.append((engine, name))
        if rows:
            marks = ", ".join(["%s"] * len(cols))
            names = ", ".join(f"{q}{c}{q}" for c in cols)
            self.executemany(engine, f"INSERT INTO {q}{name}{q} ({names}) VALUES ({marks})", rows)
        return self.url(engine)

    def drop_all(self) -> None:
        for engine, name in self.created:
            q = '`' if engine == "mysql" else '"'
            self.execute(engine, f"DROP TABLE IF EXISTS {q}{name}{q}")


@pytest.fixture
def tables(databases: None, tmp_path: Path) -> Any:
    made = Tables(tmp_path)
    yield made
    made.drop_all()


def base_rows(n: int = 200) -> list[list[Any]]:
    """Rows exercising the edge cases that must compare equal across engines."""
    texts = ["plain", "", "é accentué", "emoji 🚀", "quote ' and \" and \\", "tab\tnew\nline", "a|b:c,d", "N"]
    out = []
    for i in range(1, n + 1):
        out.append([
            i,
            texts[i % len(texts)] + f"-{i}" if i % 11 else texts[i % len(texts)],
            None if i % 13 == 0 else decimal.Decimal(i * 37 % 100000 - 50000) / 100,
            None if i % 19 == 0 else [0.1, -2.5, 1e10, 123.456789, 0.0, -0.000123][i % 6] * i,
            None if i % 17 == 0 else
            dt.datetime(2024, 1, 1, 12, 0, 0) + dt.timedelta(seconds=i * 3671, microseconds=(i * 7919) % 1_000_000),
            None if i % 29 == 0 else i % 3 == 0,
            None if i % 5 == 0 else ("" if i % 7 == 0 else f"note {i}"),
            None if i % 23 == 0 else uuid.UUID(int=i * 2654435761 % (1 << 128)),
        ])
    return out


Factory = Callable[..., str]
