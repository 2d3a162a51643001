"""The benchmark's (and the 1M-row test's) data: the same table in PostgreSQL and MariaDB, generated
inside each server (generate_series, MariaDB's sequence engine) in seconds, then a few hundred
planted differences of every kind in the target. ``PLANTED`` says exactly what a diff must find.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
import pymysql

DB = "sw_dataverify"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
MY_URL = f"mysql://root@127.0.0.1:3306/{DB}"
COLUMNS = ("name", "amount", "score", "created", "note")

_PG_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount numeric(12,2), score double precision,
 created timestamp(6), note text)"""
_PG_FILL = """INSERT INTO {t} SELECT g*3, 'name-' || g, ((g*37) % 100000) / 100.0, g * 0.25,
 timestamp '2024-01-01' + g * interval '1 second' + (g % 1000) * interval '1 microsecond',
 CASE WHEN g % 5 = 0 THEN NULL WHEN g % 7 = 0 THEN '' ELSE 'note ' || g END
 FROM generate_series(1, {n}) g"""
_MY_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, name varchar(100), amount decimal(12,2), score double,
 created datetime(6), note text) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
_MY_FILL = """INSERT INTO {t} SELECT seq*3, CONCAT('name-', seq), ((seq*37) % 100000) / 100.0, seq * 0.25,
 TIMESTAMP('2024-01-01') + INTERVAL seq SECOND + INTERVAL (seq % 1000) MICROSECOND,
 CASE WHEN seq % 5 = 0 THEN NULL WHEN seq % 7 = 0 THEN '' ELSE CONCAT('note ', seq) END
 FROM seq_1_to_{n}"""


@dataclass(frozen=True)
class Planted:
    missing: frozenset[int]  # deleted from the target
    extra: frozenset[int]  # inserted into the target only
    changed: dict[int, str]  # key -> the column changed in the target


def planted(n: int, per_kind: int = 100) -> Planted:
    """Deterministic, scattered keys (a multiplicative walk over 1..n)."""
    picks = sorted({(i * 7_654_321) % n + 1 for i in range(1, 5 * per_kind + 50)})
    step = len(picks) // 5
    gen = [picks[i * step:(i + 1) * step][:per_kind] for i in range(5)]
    missing = frozenset(g * 3 for g in gen[0])
    extra = frozenset(g * 3 + 1 for g in gen[1])
    changed = {g * 3: "name" for g in gen[2]}
    changed.update({g * 3: "amount" for g in gen[3][: per_kind // 2]})
    # NULL vs '' (and back): rows whose note is NULL get '' in the target
    taken = set(picks)
    nulls = [g for g in range(5, n, 5 * 7919) if g not in taken][: per_kind // 2]
    changed.update({g * 3: "note" for g in nulls})
    changed.update({g * 3: "created" for g in gen[4][: per_kind // 2]})
    return Planted(missing, extra, changed)


def _pg(sql: list[str]) -> None:
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=DB, autocommit=True) as conn:
        for stmt in sql:
            conn.execute(stmt)


def _my(sql: list[str]) -> None:
    conn = pymysql.connect(host="127.0.0.1", user="root", database=DB, autocommit=True)
    try:
        cur = conn.cursor()
        for stmt in sql:
            cur.execute(stmt)
    finally:
        conn.close()


def ensure_databases() -> None:
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
            conn.execute(f"CREATE DATABASE {DB}")
    conn2 = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    try:
        conn2.cursor().execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
    finally:
        conn2.close()


def load(table: str, n: int, plant: Planted) -> None:
    """(Re)create ``table`` with ``n`` rows in PostgreSQL (source) and MariaDB (target, with ``plant``)."""
    ensure_databases()
    ids = lambda keys: ", ".join(str(k) for k in sorted(keys))  # noqa: E731
    by_col: dict[str, list[int]] = {}
    for key, col in plant.changed.items():
        by_col.setdefault(col, []).append(key)
    my_plant = [f"DELETE FROM {table} WHERE id IN ({ids(plant.missing)})",
                f"INSERT INTO {table} (id, name, amount, score, created, note) SELECT id + 1, 'extra', 1.00, 0.5,"
                f" created, 'x' FROM {table} WHERE id IN ({ids(k - 1 for k in plant.extra)})"]
    updates = {"name": "name = CONCAT(name, '!')", "amount": "amount = amount + 0.01", "note": "note = ''",
               "created": "created = created + INTERVAL 1 MICROSECOND"}
    for col, keys in by_col.items():
        my_plant.append(f"UPDATE {table} SET {updates[col]} WHERE id IN ({ids(keys)})")
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(_pg, [f"DROP TABLE IF EXISTS {table}", _PG_DDL.format(t=table),
                                  _PG_FILL.format(t=table, n=n), f"ANALYZE {table}"]),
                pool.submit(_my, [f"DROP TABLE IF EXISTS {table}", _MY_DDL.format(t=table),
                                  _MY_FILL.format(t=table, n=n), *my_plant, f"ANALYZE TABLE {table}"])]
        for job in jobs:
            job.result()


def drop(table: str) -> None:
    _pg([f"DROP TABLE IF EXISTS {table}"])
    _my([f"DROP TABLE IF EXISTS {table}"])
