"""Benchmark of the built-in proxy against nginx, with wrk, in one run (ratios are what to read).

    .venv/bin/python benchmarks/proxy/run.py [--duration 5] [--connections 32] [--slow-mirror]

Measures, against the same upstream (nginx, 1 worker, answering a static 200 on its own port):
the upstream directly, nginx as a keep-alive reverse proxy (1 worker), switchover proxy (1 worker)
at weight 50 with metrics, the same with mirror 20%, and switchover with 2 workers. Prints req/s, p50, p99 and the ratios
switchover / nginx. With --slow-mirror, also nginx's `mirror` and switchover's mirror (100%) to a
candidate that answers in 1 s: what users wait for.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SWITCHOVER = str(ROOT / ".venv" / "bin" / "switchover")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def nginx(tmp: Path, name: str, server_block: str, extra_http: str = "") -> subprocess.Popen[bytes]:
    conf = tmp / f"{name}.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/{name}-body;
  proxy_temp_path {tmp}/{name}-proxy;
  fastcgi_temp_path {tmp}/{name}-fcgi;
  uwsgi_temp_path {tmp}/{name}-uwsgi;
  scgi_temp_path {tmp}/{name}-scgi;
  keepalive_requests 1000000;
  {extra_http}
  server {{ {server_block} }}
}}
""")
    return subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp), "-e", f"{tmp}/{name}.stderr.log"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_s: float = 0.0  # CPU seconds the proxy process(es) used during the run

    @property
    def per_cpu_s(self) -> float:
        """Requests per CPU-second of the process measured: robust to other load on the machine."""
        return self.requests / self.cpu_s if self.cpu_s else float("nan")


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its children processes (nginx's workers)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m[1]), m[2]
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(name: str, port: int, duration: int, connections: int, pid: int | None = None) -> Result:
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1])  # type: ignore[index]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m[1])
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
    return Result(name, rps, p50, p99, errors, requests, cpu)


def switchover(tmp: Path, stable: int, candidate: int, weight: int, mirror: int,
               workers: int = 1) -> tuple[subprocess.Popen[bytes], int, int]:
    port, admin = free_port(), free_port()
    state = tmp / f"sw-{port}.json"
    proc = subprocess.Popen([SWITCHOVER, "proxy", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                             "--stable", f"http://127.0.0.1:{stable}", "--candidate", f"http://127.0.0.1:{candidate}",
                             "--app", "bench", "--weight", str(weight), "--mirror", str(mirror),
                             "--state-file", str(state), "--workers", str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    wait_port(admin)
    return proc, port, admin


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def slow_upstream(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A candidate that answers every request after 1 s (asyncio: many at once)."""
    port = free_port()
    script = tmp / "slow.py"
    script.write_text(
        "import asyncio, sys\n"
        "async def handle(r, w):\n"
        "    try:\n"
        "        while True:\n"
        "            head = await r.readuntil(b'\\r\\n\\r\\n')\n"
        "            await asyncio.sleep(1.0)\n"
        "            w.write(b'HTTP/1.1 200 OK\\r\\ncontent-length: 3\\r\\n\\r\\nok\\n'); await w.drain()\n"
        "    except Exception:\n"
        "        w.close()\n"
        "async def main():\n"
        "    s = await asyncio.start_server(handle, '127.0.0.1', int(sys.argv[1]), backlog=1024)\n"
        "    await s.serve_forever()\n"
        "asyncio.run(main())\n")
    proc = subprocess.Popen([sys.executable, str(script), str(port)])
    wait_port(port)
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best-of and median are shown")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--slow-mirror", action="store_true", help="also the mirror-to-a-slow-candidate comparison")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/setup-services.sh installs it)")
    procs: list[subprocess.Popen[bytes]] = []
    runs: dict[str, list[Result]] = {}
    slow_results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="sw_proxy_bench_") as name:
        tmp = Path(name)
        try:
            up = free_port()
            procs.append(nginx(tmp, "upstream", f'listen 127.0.0.1:{up}; location / {{ return 200 "ok\\n"; }}'))
            wait_port(up)
            px = free_port()
            procs.append(nginx(tmp, "proxy", f"""listen 127.0.0.1:{px};
  location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }}""",
                               f"upstream up {{ server 127.0.0.1:{up}; keepalive 64; }}"))
            wait_port(px)
            sw, sw_port, _ = switchover(tmp, up, up, 50, 0)
            procs.append(sw)
            swm, swm_port, swm_admin = switchover(tmp, up, up, 50, 20)
            procs.append(swm)
            sw2, sw2_port, _ = switchover(tmp, up, up, 50, 0, workers=2)
            procs.append(sw2)
            targets = {UPSTREAM: (up, procs[0].pid), NGINX: (px, procs[1].pid), SW: (sw_port, sw.pid),
                       SW_MIRROR: (swm_port, swm.pid), SW2: (sw2_port, sw2.pid)}
            for port, _pid in targets.values():
                wrk("warm-up", port, 1, args.connections)
            # Interleaved rounds: every target sees the same background load (the machine is shared).
            for _ in range(args.rounds):
                for label, (port, pid) in targets.items():
                    runs.setdefault(label, []).append(wrk(label, port, args.duration, args.connections, pid))
            with urllib.request.urlopen(f"http://127.0.0.1:{swm_admin}/api/v1/stats") as resp:
                mirror_stats = json.load(resp)["mirror"]
            if args.slow_mirror:
                slow_results = slow_mirror(tmp, up, args.duration, procs)
        finally:
            for proc in procs:
                stop(proc)
    best = {label: max(results, key=lambda r: r.rps) for label, results in runs.items()}
    median = {label: statistics.median(r.rps for r in results) for label, results in runs.items()}
    per_cpu = {label: statistics.median(r.per_cpu_s for r in results) for label, results in runs.items()}
    ratios = {
        "switchover / nginx req/s (best-of)": best[SW].rps / best[NGINX].rps,
        "switchover / nginx req/s (median)": median[SW] / median[NGINX],
        "switchover+mirror20 / nginx (best-of)": best[SW_MIRROR].rps / best[NGINX].rps,
        "mirror 20% cost, best-of": 1 - best[SW_MIRROR].rps / best[SW].rps,
        "mirror 20% cost, median": 1 - median[SW_MIRROR] / median[SW],
        "switchover / nginx req per CPU-second": per_cpu[SW] / per_cpu[NGINX],
        "switchover 2 workers / 1 worker req/s (median)": median[SW2] / median[SW],
        "mirror 20% cost in CPU per request": 1 - per_cpu[SW_MIRROR] / per_cpu[SW],
    }
    if args.json:
        print(json.dumps({"runs": {k: [r.__dict__ for r in v] for k, v in runs.items()},
                          "slow_mirror": [r.__dict__ for r in slow_results], "ratios": ratios,
                          "mirror": mirror_stats, "connections": args.connections, "duration": args.duration,
                          "rounds": args.rounds, "cpus": os.cpu_count()}))
        return
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} interleaved rounds, {os.cpu_count()} CPUs")
    print(f"{'target':40} {'best req/s':>10} {'median':>8} {'spread':>13} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'req/CPU-s':>9}")
    for label, results in runs.items():
        b = best[label]
        low, high = min(r.rps for r in results), max(r.rps for r in results)
        print(f"{label:40} {b.rps:10.0f} {median[label]:8.0f} {low:6.0f}-{high:<6.0f} {b.p50_ms:7.2f} "
              f"{b.p99_ms:7.2f} {sum(r.errors for r in results):6d} {per_cpu[label]:9.0f}")
    for r in slow_results:
        print(f"{r.name:40} {r.rps:10.0f} {'':8} {'':13} {r.p50_ms:7.2f} {r.p99_ms:7.2f} {r.errors:6d}")
    for label, value in ratios.items():
        print(f"{label:40} {value:10.2f}")
    total = sum(r.requests for r in runs[SW_MIRROR])
    print(f"mirror counters (switchover, mirror 20%): {mirror_stats}; copies = "
          f"{mirror_stats['sent'] / max(total, 1):.0%} of its measured requests (only stable's half is mirrored)")


UPSTREAM = "upstream (nginx static 200)"
NGINX = "nginx proxy, 1 worker"
SW = "switchover, weight 50"
SW_MIRROR = "switchover, weight 50, mirror 20%"
SW2 = "switchover, 2 workers, weight 50"


def slow_mirror(tmp: Path, up: int, duration: int, procs: list[subprocess.Popen[bytes]]) -> list[Result]:
    """nginx `mirror` vs switchover's mirror, both copying every request to a candidate that takes 1 s."""
    slow, slow_port = slow_upstream(tmp)
    procs.append(slow)
    nm = free_port()
    procs.append(nginx(tmp, "mirror", f"""listen 127.0.0.1:{nm};
  location / {{ mirror /_m; proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  location = /_m {{ internal; proxy_pass http://slow$request_uri; proxy_http_version 1.1;
                   proxy_set_header Connection ""; }}""",
                       f"upstream up {{ server 127.0.0.1:{up}; keepalive 64; }}\n"
                       f"  upstream slow {{ server 127.0.0.1:{slow_port}; keepalive 64; }}"))
    wait_port(nm)
    out = [wrk("nginx mirror 100% -> 1 s candidate, c8", nm, duration, 8)]
    sw, sw_port, _ = switchover(tmp, up, slow_port, 0, 100)
    procs.append(sw)
    out.append(wrk("switchover mirror 100% -> 1 s cand., c8", sw_port, duration, 8))
    return out


if __name__ == "__main__":
    main()
