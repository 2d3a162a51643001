"""Proxy throughput with mirror 20% + diff against mirror off, as a ratio in one run.

    .venv/bin/python benchmarks/parity/proxy_mirror.py [--seconds 4] [--rounds 3] [--kb 2] [--pin] [--diff-on auto|proxy|worker] [--copies-from worker]

Stable and candidate are our own nginx (static JSON answers of ``--kb`` KB that differ in a
timestamp, ignored, and one field), the built-in proxy runs with ``--plan`` so that its parity sink
diffs every mirrored pair, and wrk drives users. Rounds alternate mirror 0% and 20% (set through
the admin API) and the medians are compared. A second proxy without a plan (mirror 20%, no diff)
separates what the copies cost from what the diff costs. Target: mirror 20% + diff keeps at least
85% of the throughput with mirror off. Answers up to 16 KiB are diffed on the proxy's loop
(quick.py, rawjson.py); larger ones (``--kb 50``) go to the parity worker while it keeps up, else the
loop diffs them too (worker.LOOP_MAX_BYTES). The last line says how busy the proxy's core was: below
~97% something else set the pace, and its CPU per request tells its own throughput better.

Without ``--pin`` every process shares every core, so the ratio is the machine's: on a 2-core box the
candidate's nginx answering the copies and the kernel's loopback work count against the proxy. With
``--pin`` the proxies have a core of their own and wrk, nginx and the parity worker the others: the
ratio is then the proxy's own throughput, as on a host where the proxy is not sharing its core.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from switchover.demo.runner import Processes, free_port, wait_http

NGINX = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{ listen 127.0.0.1:{stable}; root {tmp}/stable; default_type application/json;
           location / {{ try_files /order.json =404; }} }}
  server {{ listen 127.0.0.1:{candidate}; root {tmp}/candidate; default_type application/json;
           location / {{ try_files /order.json =404; }} }}
}}
"""


def order(kb: int, generated_at: str, total: int) -> bytes:
    items: list[dict[str, object]] = []
    doc = {"id": 1, "status": "paid", "total_cents": total, "generated_at": generated_at, "items": items}
    while len(json.dumps(doc)) < kb * 1024:
        i = len(items)
        items.append({"sku": f"SKU-{i:05d}", "name": f"Item number {i}", "qty": 1 + i % 3, "price_cents": 199 + i})
    return json.dumps(doc).encode()


def serve_orders(procs: Processes, tmp: Path, kb: int, ports: dict[str, int]) -> tuple[str, str]:
    """Start our nginx serving stable's and the candidate's order (``kb`` KB, one ignored and one
    real difference) from ``tmp``; their base URLs."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "stable", "candidate"):
        (tmp / sub).mkdir()
    (tmp / "stable" / "order.json").write_bytes(order(kb, "2026-01-01T00:00:00Z", 1000))
    (tmp / "candidate" / "order.json").write_bytes(order(kb, "2026-01-01T00:00:01Z", 1001))
    (tmp / "nginx.conf").write_text(NGINX.format(tmp=tmp, **ports))
    nginx = procs.start(["/usr/sbin/nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")])
    stable, candidate = f"http://127.0.0.1:{ports['stable']}", f"http://127.0.0.1:{ports['candidate']}"
    wait_http(stable + "/", 10, nginx)
    return stable, candidate


# --pin: CPU lists for taskset; wrk and nginx on one core, the proxies on the other.
PIN: dict[str, list[str]] = {"load": [], "proxy": []}


def _drain(admin: str, limit: float = 30.0) -> float:
    """Seconds until every pair submitted is compared or dropped (the counts reach the store every
    250 ms): diff work left when wrk stopped, outside the measured window."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        report = httpx.get(admin + "/api/v1/parity").json()
        sink = report.get("sink", {})
        if report.get("compared", 0) + sink.get("dropped", 0) >= sink.get("submitted", 0):
            break
        time.sleep(0.05)
    return time.monotonic() - start


def pin(pid: int, cpus: list[str]) -> None:
    """Move a running process (all its threads) to ``cpus`` (taskset's arguments)."""
    if cpus:
        subprocess.run(["taskset", "-a", "-c", "-p", cpus[-1], str(pid)], check=True, capture_output=True)


P99: dict[str, list[float]] = {"off": [], "on": [], "copies": []}  # users' 99th percentile latency, ms


def wrk(url: str, seconds: float, connections: int, mode: str | None = None) -> float:
    out = subprocess.run([*PIN["load"], "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise SystemExit(f"wrk gave no rate:\n{out}")
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if mode is not None and p99 is not None:
        P99[mode].append(float(p99.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)])
    return float(match.group(1))


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in children.read_text().split()] if children.exists() else []


def _cpu_seconds(pid: int) -> dict[str, float]:
    """User+system CPU seconds of the proxy and of its children (the parity worker), from /proc."""
    tick = float(os.sysconf("SC_CLK_TCK"))

    def one(p: int) -> float:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    out = {"proxy": one(pid)}
    for i, child in enumerate(_children(pid)):
        out[f"child{i}"] = one(child)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kb", type=int, default=2, help="size of the JSON answers")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--diff-on", choices=("auto", "proxy", "worker"), default="auto",
                        help="the plan's parity.diff_on: pairs diffed on the proxy's loop, or all in the worker, or "
                             "auto (the default: the worker from 3 usable CPUs, else the loop)")
    parser.add_argument("--copies-from", choices=("proxy", "worker"), default="proxy",
                        help="the plan's parity.copies_from: the proxy sends the copies, or its parity worker does "
                             "(and diffs every pair)")
    parser.add_argument("--pin", action="store_true",
                        help="the proxies on the last CPU, wrk and nginx on the others (the parity worker with them): "
                             "the proxy's own throughput, not the machine's (needs 2 CPUs or more)")
    args = parser.parse_args()
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            parser.error("--pin needs at least 2 CPUs")
        PIN["proxy"] = ["-c", str(cpus[-1])]
        PIN["load"] = ["taskset", "-c", ",".join(map(str, cpus[:-1]))]
    with tempfile.TemporaryDirectory(prefix="sw-parity-bench-") as tmp_name, \
            open(Path(tmp_name) / "processes.log", "ab") as log:
        tmp = Path(tmp_name)
        procs = Processes(log)  # type: ignore[arg-type]
        try:
            ports = {k: free_port() for k in ("stable", "candidate", "listen", "admin", "listen2", "admin2")}
            stable, candidate = serve_orders(procs, tmp, args.kb, ports)
            plan = tmp / "plan.yaml"
            plan.write_text(f"""name: sw_parity_bench
stable: {{url: "{stable}"}}
candidate: {{url: "{candidate}"}}
traffic: {{driver: proxy, listen: "127.0.0.1:{ports['listen']}", admin: "127.0.0.1:{ports['admin']}",
          state_file: "{tmp}/split.json"}}
parity: {{ignore: ["$.generated_at"], diff_on: {args.diff_on}, copies_from: {args.copies_from}}}
""")
            py = sys.executable
            with_diff = procs.start([py, "-m", "switchover", "proxy", "--plan", str(plan)])
            no_diff = procs.start([py, "-m", "switchover", "proxy", "--stable", stable, "--candidate", candidate,
                                   "--listen", f"127.0.0.1:{ports['listen2']}", "--admin",
                                   f"127.0.0.1:{ports['admin2']}", "--mirror", "20",
                                   "--state-file", str(tmp / "split2.json")])
            admin = f"http://127.0.0.1:{ports['admin']}"
            wait_http(admin + "/healthz", 20, with_diff)
            wait_http(f"http://127.0.0.1:{ports['admin2']}/healthz", 20, no_diff)
            url, url2 = f"http://127.0.0.1:{ports['listen']}/orders/1", f"http://127.0.0.1:{ports['listen2']}/orders/1"
            for proc in (with_diff, no_diff):
                pin(proc.pid, PIN["proxy"])
            for child in _children(with_diff.pid):  # the parity worker: away from the proxy
                pin(child, PIN["load"][-1:])
            for proc in procs.children[:1]:  # nginx
                pin(proc.pid, PIN["load"][-1:])
            wrk(url, 1, args.connections)  # warm up
            off, on, copies = [], [], []
            cpu_off = cpu_on = cpu_copies = 0.0
            worker_cpu = 0.0
            drain: list[float] = []
            for _ in range(args.rounds):
                httpx.put(admin + "/api/v1/split", json={"mirror_percent": 0}).raise_for_status()
                before = _cpu_seconds(with_diff.pid)
                off.append(wrk(url, args.seconds, args.connections, "off"))
                cpu_off += _cpu_seconds(with_diff.pid)["proxy"] - before["proxy"]
                httpx.put(admin + "/api/v1/split", json={"mirror_percent": 20}).raise_for_status()
                before = _cpu_seconds(with_diff.pid)
                on.append(wrk(url, args.seconds, args.connections, "on"))
                drain.append(_drain(admin))  # the worker finishes the round's pairs
                after = _cpu_seconds(with_diff.pid)
                cpu_on += after["proxy"] - before["proxy"]
                worker_cpu += sum(v - before.get(k, 0.0) for k, v in after.items() if k != "proxy")
                before2 = _cpu_seconds(no_diff.pid)["proxy"]
                copies.append(wrk(url2, args.seconds, args.connections, "copies"))
                cpu_copies += _cpu_seconds(no_diff.pid)["proxy"] - before2
            httpx.put(admin + "/api/v1/split", json={"mirror_percent": 0}).raise_for_status()
            time.sleep(1.0)  # let the sink flush what it queued
            parity = httpx.get(admin + "/api/v1/parity").json()
        finally:
            procs.stop()
    m_off, m_on, m_copies = statistics.median(off), statistics.median(on), statistics.median(copies)
    # Each round's 20% run against the same round's 0% run: the machine's load drifts between rounds.
    r_on = statistics.median(b / a for a, b in zip(off, on, strict=True))
    r_copies = statistics.median(b / a for a, b in zip(off, copies, strict=True))
    print(f"answers: {args.kb} KB JSON; wrk -c{args.connections}, {args.rounds} rounds of {args.seconds:g}s, "
          "medians (ratios: median of per-round ratios)"
          + f"; parity.diff_on: {args.diff_on}, copies_from: {args.copies_from}"
          + (f"; proxies pinned to CPU {PIN['proxy'][-1]}, wrk, nginx and the parity worker to CPU "
             f"{PIN['load'][-1]}" if args.pin else ""))
    print(f"mirror off              {m_off:9.0f} req/s   1.00")
    print(f"mirror 20% + diff       {m_on:9.0f} req/s   {r_on:.2f}   (target >= 0.85)")
    print(f"mirror 20%, no diff     {m_copies:9.0f} req/s   {r_copies:.2f}   (second proxy, no plan)")
    if all(P99.values()):
        p99 = {k: statistics.median(v) for k, v in P99.items()}
        print(f"users' p99 latency: {p99['off']:.2f} ms (mirror off), {p99['on']:.2f} ms (mirror 20% + diff), "
              f"{p99['copies']:.2f} ms (mirror 20%, no diff)")
    sink = parity.get("sink", {})
    pairs = int(sink.get("submitted") or 0)
    print(f"sink: {pairs} pairs submitted, {parity.get('compared')} compared, "
          f"{sink.get('dropped')} dropped; fields: {[f['field'] for f in parity.get('top_fields', [])]}")
    # Pairs still waiting for the worker when wrk stopped are diffed after the measured window (a
    # worker may queue up to 16 MiB of them): a drain well above the counts' 0.25 s flush flatters the ratio.
    print(f"after each mirror 20% run, every pair was counted {statistics.median(drain):.2f} s later (median; "
          f"max {max(drain):.2f} s; ~0.25-0.5 s is the counts' way to the store)")
    served_off = sum(off) * args.seconds
    served_on = sum(on) * args.seconds
    proxy_us = 1e6 * cpu_off / served_off
    proxy_on_us = 1e6 * cpu_on / served_on
    copies_us = 1e6 * cpu_copies / (sum(copies) * args.seconds)
    diff_us = 1e6 * worker_cpu / pairs if pairs else float("nan")
    print(f"CPU per user request: proxy {proxy_us:.0f} us (mirror off), {copies_us:.0f} us (mirror 20%, no sink), "
          f"{proxy_on_us:.0f} us (mirror 20% + hand-over to the sink); diff worker {diff_us:.0f} us per pair "
          f"= {0.2 * diff_us:.0f} us per user request")
    if "diffed_in_proxy" in sink and pairs:
        print(f"diffed on the proxy's loop: {sink['diffed_in_proxy']} pairs; sent to the worker: {sink.get('to_worker')}; "
              f"loop time in the sink's diff: {1e6 * sink['diff_seconds_in_proxy'] / pairs:.0f} us per pair submitted "
              "(wall time)")
    print(f"CPU-bound estimate of the throughput kept at mirror 20% + diff: "
          f"{proxy_us / (proxy_on_us + 0.2 * diff_us):.2f}")
    # Where the proxy's core was not always busy, something else (wrk, nginx, the parity worker on the
    # other core) set the pace, and the req/s ratio above is the machine's, not the proxy's.
    wall = args.rounds * max(1, round(args.seconds))
    print(f"proxy's core busy (its CPU seconds per second of load): {cpu_off / wall:.0%} (mirror off), "
          f"{cpu_on / wall:.0%} (mirror 20% + diff); the proxy's own throughput kept (requests per second of its "
          f"CPU): {proxy_us / proxy_on_us:.2f}")

if __name__ == "__main__":
    main()
