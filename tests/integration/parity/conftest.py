"""Real HTTP services on ephemeral ports for the parity tests: a stable, a second stable and
candidates that differ in chosen ways. Each answers ``GET /orders/<id>`` with a JSON order."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Service:
    url: str
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # method, path, headers
    done: list[str] = field(default_factory=list)  # paths answered (after any delay)
    peers: set[int] = field(default_factory=set)  # client ports: the connections requests came on


Behaviour = Callable[[int, dict[str, Any]], dict[str, Any]]


def order(order_id: int) -> dict[str, Any]:
    return {"id": order_id, "status": "paid", "total_cents": 1000 + order_id,
            "items": [{"sku": f"S{order_id % 7}", "qty": 1 + order_id % 3, "etag": f"e{time.time_ns()}"}],
            "generated_at": time.time_ns()}


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the listen backlog: bursts of users connect at once (the default is 5)


def start_service(change: Behaviour | None = None, *, delay: float = 0.0, status: int = 200,
                  headers: dict[str, str] | None = None) -> tuple[Service, ThreadingHTTPServer]:
    svc = Service("")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without NODELAY, Nagle + delayed ACK add 40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            svc.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            svc.peers.add(self.client_address[1])
            if delay:
                time.sleep(delay)
            parts = self.path.split("?")[0].strip("/").split("/")
            oid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            doc = order(oid)
            if change is not None:
                doc = change(oid, doc)
            body = json.dumps(doc).encode()
            svc.done.append(self.path)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _answer
        do_POST = _answer

    server = _Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # A slow answer to a client that has gone (the test is over) is no news.
    server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    svc.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return svc, server


@pytest.fixture
def services() -> Iterator[Callable[..., Service]]:
    started: list[ThreadingHTTPServer] = []

    def make(change: Behaviour | None = None, **kw: Any) -> Service:
        svc, server = start_service(change, **kw)
        started.append(server)
        return svc

    yield make
    for server in started:
        server.shutdown()
        server.server_close()


def cli(*args: str, timeout: float = 120) -> Any:
    """Run the real `switchover` command; returns the CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "switchover", *args], capture_output=True, text=True,
                          timeout=timeout)


def write_plan(path: Any, stable: str, candidate: str, parity: dict[str, Any] | None = None,
               steps: list[dict[str, Any]] | None = None, driver: str = "proxy") -> Any:
    import yaml

    doc: dict[str, Any] = {"name": "sw_parity_it", "stable": {"url": stable}, "candidate": {"url": candidate},
                           "traffic": {"driver": driver}, "parity": parity or {}}
    if steps:
        doc["steps"] = steps
    plan = path / "plan.yaml"
    plan.write_text(yaml.safe_dump(doc, sort_keys=False))
    return plan


def write_requests(path: Any, ids: range, extra: list[str] | None = None) -> Any:
    f = path / "requests.jsonl"
    lines = [json.dumps({"method": "GET", "path": f"/orders/{i}", "headers": {"Authorization": "Bearer s3cr3t-token"}})
             for i in ids]
    f.write_text("\n".join(lines + (extra or [])) + "\n")
    return f


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream stable {{ server {stable}; keepalive 8; }}
  upstream parity {{ server {parity}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      mirror /__switchover_mirror;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://stable;
    }}
    location = /__switchover_mirror {{
      internal;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://parity$request_uri;
    }}
  }}
}}
"""


@pytest.fixture
def processes(tmp_path: Any) -> Iterator[Any]:
    """Child processes (proxy, parity serve, nginx), each in its own group, stopped at the end."""
    from switchover.demo.runner import Processes

    log = open(tmp_path / "processes.log", "ab")  # noqa: SIM115 - closed below
    procs = Processes(log)  # type: ignore[arg-type]
    yield procs
    procs.stop()
    log.close()


def start_nginx(procs: Any, tmp: Any, stable: str, parity: str) -> str:
    """Our own nginx (not the system's): config, pid and logs in ``tmp``, on a free port."""
    from switchover.demo.runner import free_port, wait_http

    port = free_port()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, stable=stable.removeprefix("http://"),
                                      parity=parity.removeprefix("http://"), port=port))
    child = procs.start(["/usr/sbin/nginx", "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")])
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/orders/0", 20, child)
    return url


def start_proxy(procs: Any, plan: Any, admin: int) -> None:
    import sys

    from switchover.demo.runner import wait_http

    child = procs.start([sys.executable, "-m", "switchover", "proxy", "--plan", str(plan)])
    wait_http(f"http://127.0.0.1:{admin}/healthz", 20, child)


def start_serve(procs: Any, plan: Any, tmp: Any) -> str:
    """`switchover parity serve` on a free port; returns its URL once it listens."""
    import sys

    from switchover.demo.runner import free_port

    port = free_port()
    out = tmp / "serve.out"
    child = procs.start([sys.executable, "-m", "switchover", "parity", "serve", "--plan", str(plan),
                         "--listen", f"127.0.0.1:{port}"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return f"http://127.0.0.1:{port}"
        except OSError:
            if child.poll() is not None:
                raise RuntimeError(f"parity serve exited with {child.returncode}") from None
            time.sleep(0.1)
    del out
    raise RuntimeError("parity serve did not listen within 20 s")


def wait_for(check: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    """Poll until ``check()`` (bounded); the tests assert outcomes, never durations."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
