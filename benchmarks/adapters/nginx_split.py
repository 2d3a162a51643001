"""What switchover's nginx configuration costs: requests/s through the rendered file (map on the sticky
key, split_clients, two upstreams, mirror sampling) against a plain `proxy_pass` to one upstream
(the reference), both in the same private nginx, measured with wrk in the same run, alternating.

    .venv/bin/python benchmarks/adapters/nginx_split.py [--seconds 3] [--rounds 3] [--mirror 10]

Prints each round and the median ratio (switchover / reference); 1.00 means no cost.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from switchover.plan import plan_from_dict
from switchover.traffic.nginx import render_config

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WRK = shutil.which("wrk") or "/usr/bin/wrk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def wrk(url: str, seconds: int, headers: list[str]) -> float:
    args = [WRK, "-t2", "-c32", f"-d{seconds}s", *[a for h in headers for a in ("-H", h)], url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print(f"  wrk reported: {errors.group(0)}", file=sys.stderr)
    if not match:
        raise SystemExit(f"wrk output not understood:\n{out}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mirror", type=int, default=0, help="also mirror this percentage (to a 204 server)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sw_adapters_bench_"))
    up_a, up_b, split_port, ref_port = free_port(), free_port(), free_port(), free_port()
    plan = plan_from_dict({"name": "bench", "stable": {"url": f"http://127.0.0.1:{up_a}"},
                           "candidate": {"url": f"http://127.0.0.1:{up_b}"},
                           "traffic": {"listen": f"127.0.0.1:{split_port}", "sticky": {"header": "X-User-Id"},
                                       "nginx": {"mirror_url": f"http://127.0.0.1:{up_a}/copy"}}})
    assert plan.traffic.nginx is not None
    include = tmp / "switchover.conf"
    include.write_text(render_config(plan, plan.traffic.nginx, 50, args.mirror))
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(f"  {k}_temp_path {tmp}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp / "logs").mkdir()
    (tmp / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
        "events { worker_connections 4096; }\nhttp {\n  access_log off;\n" + temp +
        f"  server {{ listen 127.0.0.1:{up_a}; location / {{ return 200 'stable'; }} }}\n"
        f"  server {{ listen 127.0.0.1:{up_b}; location / {{ return 200 'candidate'; }} }}\n"
        f"  upstream reference {{ server 127.0.0.1:{up_a}; keepalive 32; }}\n"
        f"  server {{ listen 127.0.0.1:{ref_port}; location / {{ proxy_pass http://reference; "
        "proxy_http_version 1.1; proxy_set_header Connection \"\"; } }\n"
        f"  include {include};\n}}\n")
    proc = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"])
    try:
        for port in (up_a, up_b, split_port, ref_port):
            wait_port(port)
        ratios = []
        for n in range(args.rounds):
            ref = wrk(f"http://127.0.0.1:{ref_port}/", args.seconds, [])
            split = wrk(f"http://127.0.0.1:{split_port}/", args.seconds, ["X-User-Id: u-42"])
            ratios.append(split / ref)
            print(f"round {n + 1}: reference {ref:,.0f} req/s, switchover split 50%, mirror {args.mirror}%: "
                  f"{split:,.0f} req/s, "
                  f"ratio {split / ref:.2f}")
        print(f"median ratio switchover/reference: {statistics.median(ratios):.2f} "
              "(1.00 = the split configuration costs nothing)")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
