"""Backfill throughput against the bulk pipe, same servers, same run.

    .venv/bin/python benchmarks/backfill/bench_backfill.py [--rows 1000000]

PostgreSQL -> MariaDB: reference `psql COPY (...) TO STDOUT | mariadb LOAD DATA LOCAL INFILE`;
PostgreSQL -> PostgreSQL: reference `psql COPY TO STDOUT | psql COPY FROM STDIN`. Ours: the
idempotent, resumable, throttle-checked backfill (`switchover data backfill`), into an empty table
each time. Prints rows/s and the ratio to the reference (target >= 0.4x).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from switchover.data.backfill import Backfill, BackfillOptions
from switchover.data.backfill_state import StoreControl
from switchover.data.move_tables import Side, ensure_coordination_tables
from switchover.engine.store import StateStore

PG = "postgresql://postgres@127.0.0.1:5432/"
MY = "mysql://root@127.0.0.1:3306/"
SRC_DB, DST_DB = "sw_datamove_bench_src", "sw_datamove_bench_dst"
PG_TABLE = ("CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, amount numeric(12,2), status text, "
            "created_at timestamptz, paid boolean, note text)")
MY_TABLE = ("CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, amount decimal(12,2), status text, "
            "created_at datetime(6), paid tinyint(1), note text)")
PG_SELECT = ("SELECT id, customer, amount, status, (created_at AT TIME ZONE 'UTC'), paid::int, note FROM orders")


def sh(cmd: str) -> None:
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, capture_output=True)


def setup(rows: int) -> None:
    sh(f"psql -h 127.0.0.1 -U postgres -d postgres -qc 'DROP DATABASE IF EXISTS {SRC_DB} WITH (FORCE)' "
       f"-c 'DROP DATABASE IF EXISTS {DST_DB} WITH (FORCE)' -c 'CREATE DATABASE {SRC_DB}' -c 'CREATE DATABASE {DST_DB}'")
    src = Side.open(PG + SRC_DB, autocommit=True)
    src.execute(PG_TABLE)
    src.execute("INSERT INTO orders SELECT g, g % 1000, (g % 10000) / 100.0, 'new', "
                "timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second', g % 2 = 0, "
                f"'note ' || g FROM generate_series(1, {rows}) g")
    src.execute("VACUUM ANALYZE orders")
    src.close()
    sh(f"mariadb -h 127.0.0.1 -uroot -e 'DROP DATABASE IF EXISTS {SRC_DB}; CREATE DATABASE {SRC_DB}'")


def fresh_target(engine: str) -> None:
    if engine == "mysql":
        side = Side.open(MY + SRC_DB, autocommit=True)
        side.execute("DROP TABLE IF EXISTS orders")
        side.execute(MY_TABLE)
    else:
        side = Side.open(PG + DST_DB, autocommit=True)
        side.execute("DROP TABLE IF EXISTS orders")
        side.execute(PG_TABLE)
    side.close()


def reference(engine: str) -> float:
    fresh_target(engine)
    t0 = time.perf_counter()
    if engine == "mysql":
        sh(f"psql -h 127.0.0.1 -U postgres -d {SRC_DB} -c \"COPY ({PG_SELECT}) TO STDOUT\" | "
           f"mariadb -h 127.0.0.1 -uroot --local-infile=1 {SRC_DB} -e \"LOAD DATA LOCAL INFILE '/dev/stdin' "
           "INTO TABLE orders CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\\\\\' "
           "LINES TERMINATED BY '\\n'\"")
    else:
        sh(f"psql -h 127.0.0.1 -U postgres -d {SRC_DB} -c 'COPY orders TO STDOUT' | "
           f"psql -h 127.0.0.1 -U postgres -d {DST_DB} -c 'COPY orders FROM STDIN'")
    return time.perf_counter() - t0


def ours(engine: str, cdc_guard: bool = False) -> tuple[float, int]:
    fresh_target(engine)
    if cdc_guard:  # as when `data cdc` runs: every chunk goes through staging and skips CDC-applied keys
        side = Side.open(MY + SRC_DB if engine == "mysql" else PG + DST_DB)
        ensure_coordination_tables(side)
        side.close()
    with tempfile.TemporaryDirectory() as tmp:
        control = StoreControl(StateStore(f"sqlite:///{tmp}/s.db"), "bench", "bench", "bench")
        src = Side.open(PG + SRC_DB, autocommit=True)
        dst = Side.open(MY + SRC_DB if engine == "mysql" else PG + DST_DB)
        t0 = time.perf_counter()
        status = Backfill(src, dst, BackfillOptions("orders"), control).run()
        took = time.perf_counter() - t0
        src.close()
        dst.close()
    return took, status.rows


def count(engine: str) -> int:
    side = Side.open(MY + SRC_DB if engine == "mysql" else PG + DST_DB, autocommit=True)
    n = int(side.execute("SELECT count(*) FROM orders")[0][0])
    side.close()
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    setup(args.rows)
    print(f"backfill benchmark, {args.rows:,} rows (each figure: best of {args.repeat})")
    for engine, label, ref_label in (("mysql", "PostgreSQL -> MariaDB", "COPY | LOAD DATA LOCAL INFILE"),
                                     ("postgresql", "PostgreSQL -> PostgreSQL", "COPY | COPY")):
        ref = min(reference(engine) for _ in range(args.repeat))
        assert count(engine) == args.rows
        runs = [ours(engine) for _ in range(args.repeat)]
        took = min(t for t, _ in runs)
        assert count(engine) == args.rows
        guarded = min(ours(engine, cdc_guard=True)[0] for _ in range(args.repeat))
        assert count(engine) == args.rows
        ref_rate, our_rate, guard_rate = args.rows / ref, args.rows / took, args.rows / guarded
        print(f"{label}: reference ({ref_label}) {ref_rate:,.0f} rows/s\n"
              f"  switchover backfill             {our_rate:>9,.0f} rows/s  ratio {our_rate / ref_rate:.2f}x (target >= 0.40x)\n"
              f"  same, CDC running (stage+merge) {guard_rate:>9,.0f} rows/s  ratio {guard_rate / ref_rate:.2f}x")
    sh(f"psql -h 127.0.0.1 -U postgres -d postgres -qc 'DROP DATABASE IF EXISTS {SRC_DB} WITH (FORCE)' "
       f"-c 'DROP DATABASE IF EXISTS {DST_DB} WITH (FORCE)'")
    sh(f"mariadb -h 127.0.0.1 -uroot -e 'DROP DATABASE IF EXISTS {SRC_DB}'")


if __name__ == "__main__":
    main()
