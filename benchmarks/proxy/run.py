"""Benchmark of the built-in proxy against nginx, with wrk, in one run (ratios are what to read).

    .venv/bin/python benchmarks/proxy/run.py [--duration 5] [--connections 32] [--slow-mirror]

Measures, against the same upstream (nginx, 1 worker, answering a static 200 on its own port):
the upstream directly, nginx as a keep-alive reverse proxy (1 worker), switchover proxy (1 worker)
at weight 50 with metrics, and the same with mirror 20%. Prints req/s, p50, p99 and the ratios
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


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m[1]), m[2]
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(name: str, port: int, duration: int, connections: int) -> Result:
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
    return Result(name, rps, p50, p99, errors)


def switchover(tmp: Path, stable: int, candidate: int, weight: int, mirror: int) -> tuple[subprocess.Popen[bytes], int, int]:
    port, admin = free_port(), free_port()
    state = tmp / f"sw-{port}.json"
    proc = subprocess.Popen([SWITCHOVER, "proxy", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                             "--stable", f"http://127.0.0.1:{stable}", "--candidate", f"http://127.0.0.1:{candidate}",
                             "--app", "bench", "--weight", str(weight), "--mirror", str(mirror),
                             "--state-file", str(state)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--slow-mirror", action="store_true", help="also the mirror-to-a-slow-candidate comparison")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/setup-services.sh installs it)")
    procs: list[subprocess.Popen[bytes]] = []
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="sw_proxy_bench_") as name:
        tmp = Path(name)
        try:
            up = free_port()
            procs.append(nginx(tmp, "upstream", f'listen 127.0.0.1:{up} reuseport; location / {{ return 200 "ok\\n"; }}'))
            wait_port(up)
            px = free_port()
            procs.append(nginx(tmp, "proxy", f"""listen 127.0.0.1:{px};
  location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }}""",
                               f"upstream up {{ server 127.0.0.1:{up}; keepalive 64; }}"))
            wait_port(px)
            d, c = args.duration, args.connections
            wrk("warm-up", up, 1, c)
            results.append(wrk("upstream (nginx static 200)", up, d, c))
            results.append(wrk("nginx proxy, 1 worker", px, d, c))
            sw, sw_port, _ = switchover(tmp, up, up, 50, 0)
            wrk("warm-up", sw_port, 1, c)
            results.append(wrk("switchover, weight 50", sw_port, d, c))
            stop(sw)
            sw, sw_port, sw_admin = switchover(tmp, up, up, 50, 20)
            wrk("warm-up", sw_port, 1, c)
            results.append(wrk("switchover, weight 50, mirror 20%", sw_port, d, c))
            with urllib.request.urlopen(f"http://127.0.0.1:{sw_admin}/api/v1/stats") as resp:
                mirror_stats = json.load(resp)["mirror"]
            stop(sw)
            if args.slow_mirror:
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
                results.append(wrk("nginx mirror 100% -> 1 s candidate", nm, d, 8))
                sw, sw_port, _ = switchover(tmp, up, slow_port, 0, 100)
                results.append(wrk("switchover mirror 100% -> 1 s candidate", sw_port, d, 8))
                stop(sw)
        finally:
            for proc in procs:
                stop(proc)
    by = {r.name: r for r in results}
    ngx = by["nginx proxy, 1 worker"]
    sw50 = by["switchover, weight 50"]
    swm = by["switchover, weight 50, mirror 20%"]
    ratios = {
        "switchover/nginx req/s": sw50.rps / ngx.rps,
        "switchover+mirror20/nginx req/s": swm.rps / ngx.rps,
        "mirror 20% cost (1 - mirror/no mirror)": 1 - swm.rps / sw50.rps,
    }
    if args.json:
        print(json.dumps({"results": [r.__dict__ for r in results], "ratios": ratios, "mirror": mirror_stats,
                          "connections": args.connections, "duration": args.duration, "cpus": os.cpu_count()}))
        return
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, {os.cpu_count()} CPUs")
    print(f"{'target':42} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for r in results:
        print(f"{r.name:42} {r.rps:10.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.errors:7d}")
    for label, value in ratios.items():
        print(f"{label:42} {value:10.2f}")
    print(f"mirror counters: {mirror_stats}")


if __name__ == "__main__":
    main()
