"""Row diff benchmark: switchover vs reladiff on the same 1M-row table in PostgreSQL and MariaDB.

    .venv/bin/pip install -e '.[bench]'        # reladiff[mysql,postgresql]
    .venv/bin/python benchmarks/rowdiff/bench_rowdiff.py [--rows 1000000] [--keep]

Each tool runs in its own process (peak memory = that process's max RSS), on the same columns, one
after the other; the output gives wall time, peak memory, whether each found exactly the planted
differences, and the ratio of the two wall times measured in this same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dataset import COLUMNS, MY_URL, PG_URL, Planted, drop, load, planted  # noqa: E402

TABLE = "sw_dataverify_bench"


def run_switchover(columns: tuple[str, ...]) -> dict[str, object]:
    from switchover.data.rowdiff import TableSpec, diff_tables
    from switchover.data.urls import parse_db_url

    result = diff_tables(parse_db_url(PG_URL), parse_db_url(MY_URL), TableSpec(TABLE, ("id",), columns))
    return {"missing": [k[0] for k in result.missing], "extra": [k[0] for k in result.extra],
            "changed": {str(r.key[0]): sorted(c.column for c in r.columns) for r in result.changed}}


def run_reladiff(columns: tuple[str, ...]) -> dict[str, object]:
    import reladiff

    # reladiff's own CLI defaults: one thread per database, a pool of two
    t1 = reladiff.connect_to_table(PG_URL, TABLE, "id", thread_count=1)
    t2 = reladiff.connect_to_table(MY_URL, TABLE, "id", thread_count=1)
    minus: dict[int, tuple[object, ...]] = {}
    plus: dict[int, tuple[object, ...]] = {}
    with reladiff.diff_tables(t1, t2, extra_columns=columns, max_threadpool_size=2) as diff:
        for sign, row in diff:
            (minus if sign == "-" else plus)[int(row[0])] = tuple(row[1:])
    changed = {}
    for key in minus.keys() & plus.keys():
        cols = [c for c, a, b in zip(columns, minus[key], plus[key], strict=True) if a != b]
        changed[str(key)] = sorted(cols)
    return {"missing": sorted(minus.keys() - plus.keys()), "extra": sorted(plus.keys() - minus.keys()),
            "changed": changed}


def child(tool: str, columns: tuple[str, ...]) -> None:
    started = time.perf_counter()
    status = "ok"
    try:
        found = run_switchover(columns) if tool == "switchover" else run_reladiff(columns)
    except Exception as exc:  # report, do not hide: a tool that stops is part of the result
        found = {"missing": [], "extra": [], "changed": {}}
        status = f"error: {type(exc).__name__}: {exc}"[:300]
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tool": tool, "seconds": seconds, "peak_mb": peak_mb, "status": status, **found}))


def exact(found: dict[str, object], plant: Planted, columns: tuple[str, ...]) -> tuple[bool, str]:
    missing = set(found["missing"])  # type: ignore[call-overload]
    extra = set(found["extra"])  # type: ignore[call-overload]
    changed = {int(k): v for k, v in found["changed"].items()}  # type: ignore[attr-defined]
    want_changed = {k: [c] for k, c in plant.changed.items() if c in columns}
    problems = []
    if missing != plant.missing:
        problems.append(f"missing {len(missing)}/{len(plant.missing)}")
    if extra != plant.extra:
        problems.append(f"extra {len(extra)}/{len(plant.extra)}")
    if changed != want_changed:
        lost = len(set(want_changed) - set(changed))
        wrong = len(set(changed) - set(want_changed))
        problems.append(f"changed: {len(changed)} found, {lost} planted not found, {wrong} not planted")
    return not problems, "; ".join(problems) or "exact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the tables (and reuse them next time)")
    parser.add_argument("--reuse", action="store_true", help="do not reload the tables")
    parser.add_argument("--child", choices=["switchover", "reladiff"], help=argparse.SUPPRESS)
    parser.add_argument("--columns", default=",".join(COLUMNS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, tuple(args.columns.split(",")))
        return
    plant = planted(args.rows)
    if not args.reuse:
        t = time.perf_counter()
        load(TABLE, args.rows, plant)
        print(f"loaded {args.rows:,} rows into PostgreSQL and MariaDB in {time.perf_counter() - t:.1f}s; "
              f"planted {len(plant.missing)} missing, {len(plant.extra)} extra, {len(plant.changed)} changed")
    scenarios = [("all columns, NULL-vs-'' differences included", COLUMNS),
                 ("without the note column (no NULL-vs-'' rows)", tuple(c for c in COLUMNS if c != "note"))]
    for title, columns in scenarios:
        print(f"\n{title}: {', '.join(columns)}")
        results = {}
        for tool in ("switchover", "reladiff"):
            out = subprocess.run([sys.executable, __file__, "--child", tool, "--rows", str(args.rows),
                                  "--columns", ",".join(columns)], capture_output=True, text=True, check=False)
            line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
            data = json.loads(line) if line.startswith("{") else {"status": f"crashed: {out.stderr[-300:]}"}
            if "seconds" not in data:
                data.update(seconds=float("nan"), peak_mb=float("nan"), missing=[], extra=[], changed={})
            ok, why = exact(data, plant, columns)
            results[tool] = (data, ok)
            print(f"  {tool:10s} wall {data['seconds']:7.2f}s  peak {data['peak_mb']:7.1f} MiB  "
                  f"exact={'yes' if ok else 'NO'} ({why})  status={data['status']}")
        sw, rd = results["switchover"][0], results["reladiff"][0]
        if rd["status"] == "ok":
            print(f"  ratio: switchover {rd['seconds'] / sw['seconds']:.1f}x faster than reladiff "
                  f"(same run, {args.rows:,} rows)")
        else:
            print("  ratio: none, reladiff did not finish")
    if not args.keep:
        drop(TABLE)


if __name__ == "__main__":
    main()
