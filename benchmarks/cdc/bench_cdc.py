"""CDC apply lag, PostgreSQL -> MariaDB, against the streaming floor in the same run.

    .venv/bin/python benchmarks/cdc/bench_cdc.py [--rate 1000] [--seconds 10] [--big 300000]

A paced writer commits --rate single-row transactions per second on `orders` for --seconds; halfway
through, another connection commits one --big-row transaction on another table (not captured). Two
slots see the same WAL: the reference only receives (commit -> message received, the floor of
streaming replication here); switchover's stream receives and applies to MariaDB (commit -> change
committed in the target, with its position). Prints p50/p99/max for both, overall and during the
big transaction.

Then a catch-up phase (``--backlog``): with both readers stopped, one transaction of --backlog rows
and --backlog/10 single-row transactions commit; both restart and the time each takes to get through
the backlog is printed (receive-only vs applied to MariaDB). After any stall (a big transaction's
decoding, a slow fsync) lag drains at this apply rate, which is what the p99 under load depends on.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from switchover.data.apply import ApplyResult
from switchover.data.cdc import postgres
from switchover.data.cdc.stream import CdcStream, TableRoute
from switchover.data.move_tables import Side
from switchover.data.urls import parse_db_url

PG = "postgresql://postgres@127.0.0.1:5432/sw_datamove_cdcbench"
MY = "mysql://root@127.0.0.1:3306/sw_datamove_cdcbench"


def sh(cmd: str) -> None:
    subprocess.run(["bash", "-c", cmd], check=True, capture_output=True)


def setup() -> None:
    for slot in ("sw_cdcbench_ref", "sw_cdcbench"):
        sh(f"psql -h 127.0.0.1 -U postgres -d postgres -qAtc \"SELECT pg_drop_replication_slot(slot_name) "
           f"FROM pg_replication_slots WHERE slot_name = '{slot}'\"")
    sh("psql -h 127.0.0.1 -U postgres -d postgres -qc 'DROP DATABASE IF EXISTS sw_datamove_cdcbench WITH (FORCE)' "
       "-c 'CREATE DATABASE sw_datamove_cdcbench'")
    sh("mariadb -h 127.0.0.1 -uroot -e 'DROP DATABASE IF EXISTS sw_datamove_cdcbench; CREATE DATABASE sw_datamove_cdcbench'")
    src = Side.open(PG, autocommit=True)
    src.execute("CREATE TABLE orders (id bigint PRIMARY KEY, status text, amount numeric(12,2), at timestamptz)")
    src.execute("CREATE TABLE other (id bigint PRIMARY KEY, payload text)")
    src.close()
    dst = Side.open(MY, autocommit=True)
    dst.execute("CREATE TABLE orders (id bigint PRIMARY KEY, status text, amount decimal(12,2), at datetime(6))")
    dst.close()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--big", type=int, default=300_000)
    ap.add_argument("--backlog", type=int, default=20_000)
    args = ap.parse_args()
    setup()
    stream = CdcStream(parse_db_url(PG), parse_db_url(MY), [TableRoute("orders")], "cdcbench")
    stream.prepare()
    ref_side = Side.open(PG, autocommit=True)
    postgres.ensure_slot(ref_side, "sw_cdcbench_ref", ["orders"])
    applied: list[tuple[float, float]] = []  # (commit time, lag ms)
    received: list[tuple[float, float]] = []
    stop = threading.Event()

    def on_apply(result: ApplyResult) -> None:
        done = time.time()
        applied.extend((done - lag / 1000.0, lag) for lag in result.lags_ms)

    def reference() -> None:
        reader = postgres.PgReader(parse_db_url(PG), "sw_cdcbench_ref", None)
        while not stop.is_set():
            txns = reader.poll(0.2)
            now = time.time()
            for t in txns:
                if t.commit_at is not None and t.changes:
                    received.append((t.commit_at, (now - t.commit_at) * 1000.0))
            if txns:
                reader.confirm(txns[-1].position)
        reader.close()

    threads = [threading.Thread(target=stream.run, args=(stop,), kwargs={"on_apply": on_apply}),
               threading.Thread(target=reference)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    writer = Side.open(PG, autocommit=True)
    big_window: list[float] = []

    def big_txn() -> None:
        side = Side.open(PG, autocommit=True)
        big_window.append(time.time())
        side.execute(f"INSERT INTO other SELECT g, repeat('x', 100) FROM generate_series(1, {args.big}) g")
        big_window.append(time.time())
        side.close()

    big = threading.Thread(target=big_txn)
    t0 = time.monotonic()
    n = int(args.rate * args.seconds)
    for i in range(n):
        if i == n // 2:
            big.start()
        due = t0 + i / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if i % 2 == 0 or i < 2:
            writer.execute("INSERT INTO orders VALUES (%s, 'new', 1.5, now())", (i,))
        else:
            writer.execute("UPDATE orders SET status = 'paid', amount = amount + 1 WHERE id = %s", (i - 1,))
    achieved = n / (time.monotonic() - t0)
    big.join()
    time.sleep(3.0)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    writer.close()
    lo, hi = big_window[0], big_window[1] + 2.0
    print(f"CDC PostgreSQL -> MariaDB: {n} writes at {achieved:,.0f}/s for {args.seconds:.0f}s; a {args.big:,}-row "
          f"transaction on another table committed after {big_window[1] - big_window[0]:.1f}s")
    for label, data in (("reference: received (stream floor)", received), ("switchover: applied to MariaDB", applied)):
        all_lags = [lag for _, lag in data]
        during = [lag for at, lag in data if lo <= at <= hi]
        steady = [lag for at, lag in data if not lo <= at <= hi]
        print(f"  {label}: n={len(all_lags)}\n"
              f"    steady:          p50 {pct(steady, 50):7.1f} ms  p99 {pct(steady, 99):7.1f} ms  "
              f"max {max(steady, default=float('nan')):7.1f} ms\n"
              f"    around big txn:  p50 {pct(during, 50):7.1f} ms  p99 {pct(during, 99):7.1f} ms  "
              f"max {max(during, default=float('nan')):7.1f} ms")
    if applied and received:
        steady_a = [x for at, x in applied if not lo <= at <= hi]
        steady_r = [x for at, x in received if not lo <= at <= hi]
        print(f"  steady p99 applied / received: {pct(steady_a, 99) / pct(steady_r, 99):.2f}x "
              f"(target: applied p99 < 50 ms; mean applied {statistics.mean(steady_a):.1f} ms)")
    if args.backlog:
        catch_up(stream, args.backlog)
    postgres.drop_slot(ref_side, "sw_cdcbench_ref")
    postgres.drop_slot(ref_side, stream.slot)
    ref_side.close()
    sh("psql -h 127.0.0.1 -U postgres -d postgres -qc 'DROP DATABASE IF EXISTS sw_datamove_cdcbench WITH (FORCE)'")
    sh("mariadb -h 127.0.0.1 -uroot -e 'DROP DATABASE IF EXISTS sw_datamove_cdcbench'")


def catch_up(stream: CdcStream, rows: int) -> None:
    """Both readers are stopped; a backlog commits; time for each to get through it."""
    singles = rows // 10
    side = Side.open(PG, autocommit=True)
    side.execute(f"INSERT INTO orders SELECT g + 10000000, 'bulk', 1.0, now() FROM generate_series(1, {rows}) g")
    for i in range(singles):
        side.execute("UPDATE orders SET amount = amount + 1 WHERE id = %s", (10000000 + 1 + i,))
    side.close()
    want = rows + singles
    times: dict[str, float] = {}

    def reference() -> None:
        reader = postgres.PgReader(parse_db_url(PG), "sw_cdcbench_ref", None)
        t0, seen = time.monotonic(), 0
        while seen < want and time.monotonic() - t0 < 120:
            txns = reader.poll(0.2, max_txns=5000)
            seen += sum(len(t.changes) for t in txns)
            if txns:
                reader.confirm(txns[-1].position)
        times["received"] = time.monotonic() - t0
        reader.close()

    stop = threading.Event()
    applied = [0]
    done = threading.Event()

    def on_apply(result: ApplyResult) -> None:
        applied[0] += result.changes
        if applied[0] >= want:
            done.set()

    ref = threading.Thread(target=reference)
    t0 = time.monotonic()
    run = threading.Thread(target=stream.run, args=(stop,), kwargs={"on_apply": on_apply})
    ref.start()
    run.start()
    done.wait(120)
    times["applied"] = time.monotonic() - t0
    stop.set()
    run.join(timeout=30)
    ref.join(timeout=130)
    print(f"  catch-up: a {rows:,}-row transaction and {singles:,} single-row ones, readers restarted:")
    for label, key in (("reference: received", "received"), ("switchover: applied to MariaDB", "applied")):
        print(f"    {label}: {times[key]:.2f}s ({want / times[key]:,.0f} changes/s)")
    print(f"    applied / received time: {times['applied'] / times['received']:.2f}x")


if __name__ == "__main__":
    main()
