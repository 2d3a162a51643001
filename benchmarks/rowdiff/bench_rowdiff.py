"""Row diff benchmark: switchover vs reladiff on the same 1M-row table in PostgreSQL and MariaDB.

    .venv/bin/pip install -e '.[bench]'        # reladiff[mysql,postgresql]
    .venv/bin/python benchmarks/rowdiff/bench_rowdiff.py [--rows 1000000] [--keep] [--cli]

Each tool runs in its own process (peak memory = that process's max RSS), on the same columns,
alternating (``--repeat`` times, default 3); the output gives wall time, peak memory, whether each
found exactly the planted differences, and the ratio of the two wall times in each pair of runs
and their median (this machine is shared and noisy: ratios, not absolute times, are the result).
With ``--cli``, the command line (``switchover data diff ... --json``) is also timed, from outside its
process (interpreter start and imports included), against the same reladiff run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def run_cli(columns: tuple[str, ...]) -> dict[str, object]:
    """``switchover data diff`` in its own process; its wall time replaces the child's own."""
    args = [sys.executable, "-m", "switchover", "data", "diff", PG_URL, MY_URL, "--table", TABLE, "-k", "id",
            *[a for c in columns for a in ("-c", c)], "--json"]
    started = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if out.returncode not in (0, 1):
        raise RuntimeError(f"exit {out.returncode}: {out.stderr.strip()[-200:]}")
    table = json.loads(out.stdout)["tables"][0]
    return {"missing": [k[0] for k in table["missing"]], "extra": [k[0] for k in table["extra"]],
            "changed": {str(r["key"][0]): sorted(r["columns"]) for r in table["changed"]}, "cli_seconds": seconds}


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
    runners = {"switchover": run_switchover, "switchover-cli": run_cli, "reladiff": run_reladiff}
    try:
        found = runners[tool](columns)
    except Exception as exc:  # report, do not hide: a tool that stops is part of the result
        found = {"missing": [], "extra": [], "changed": {}}
        status = f"error: {type(exc).__name__}: {exc}"[:300]
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if tool == "switchover-cli":
        seconds = float(found.pop("cli_seconds", seconds))  # type: ignore[arg-type]
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
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


def measure(tool: str, columns: tuple[str, ...], rows: int, plant: Planted) -> tuple[dict[str, Any], bool, str]:
    out = subprocess.run([sys.executable, __file__, "--child", tool, "--rows", str(rows),
                          "--columns", ",".join(columns)], capture_output=True, text=True, check=False)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
    data: dict[str, Any] = json.loads(line) if line.startswith("{") else {"status": f"crashed: {out.stderr[-300:]}"}
    if "seconds" not in data:
        data.update(seconds=float("nan"), peak_mb=float("nan"), missing=[], extra=[], changed={})
    ok, why = exact(data, plant, columns)
    return data, ok, why


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each tool (median ratio)")
    parser.add_argument("--keep", action="store_true", help="keep the tables (and reuse them next time)")
    parser.add_argument("--reuse", action="store_true", help="do not reload the tables")
    parser.add_argument("--cli", action="store_true", help="also time the command line, switchover data diff")
    parser.add_argument("--child", choices=["switchover", "switchover-cli", "reladiff"], help=argparse.SUPPRESS)
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
        ratios = []
        cli_ratios = []
        tools = ("switchover", "switchover-cli", "reladiff") if args.cli else ("switchover", "reladiff")
        for attempt in range(args.repeat):
            results = {}
            for tool in tools:
                data, ok, why = measure(tool, columns, args.rows, plant)
                results[tool] = data
                print(f"  {tool:14s} wall {data['seconds']:7.2f}s  peak {data['peak_mb']:7.1f} MiB  "
                      f"exact={'yes' if ok else 'NO'} ({why})  status={data['status']}")
            sw, rd = results["switchover"], results["reladiff"]
            if rd["status"] != "ok":
                print("  ratio: none, reladiff did not finish")
                break
            ratios.append(rd["seconds"] / sw["seconds"])
            print(f"  ratio #{attempt + 1}: switchover {ratios[-1]:.1f}x faster than reladiff")
            if args.cli:
                cli_ratios.append(rd["seconds"] / results["switchover-cli"]["seconds"])
                print(f"  ratio #{attempt + 1}: switchover data diff (command line) {cli_ratios[-1]:.1f}x faster")
        if ratios:
            print(f"  median ratio over {len(ratios)} alternating runs: {statistics.median(ratios):.1f}x "
                  f"({args.rows:,} rows)")
        if cli_ratios:
            print(f"  median ratio of the command line: {statistics.median(cli_ratios):.1f}x")
    if not args.keep:
        drop(TABLE)


if __name__ == "__main__":
    main()
