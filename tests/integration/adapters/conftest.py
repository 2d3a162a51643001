"""Real servers for the adapters area: nginx, Prometheus, moto, a DNS server, HTTP test services.

Every server binds 127.0.0.1 on a free port and is stopped by its fixture; load loops are bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Service:
    """A small HTTP/1.1 service answering every path with its name (and a JSON body)."""

    name: str
    port: int
    server: ThreadingHTTPServer
    hits: list[str] = field(default_factory=list)
    routes: dict[tuple[str, str], Callable[[BaseHTTPRequestHandler, bytes], tuple[int, dict[str, str], bytes]]] = \
        field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_service(name: str) -> Service:
    holder: dict[str, Service] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body_in = self.rfile.read(length) if length else b""
            svc = holder["svc"]
            path = self.path.split("?")[0]
            svc.hits.append(f"{self.command} {path}")
            route = svc.routes.get((self.command, path))
            if route is not None:
                status, headers, body = route(self, body_in)
            else:
                status, headers, body = 200, {"Content-Type": "application/json"}, json.dumps(
                    {"service": svc.name}).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    svc = Service(name, int(server.server_address[1]), server)
    holder["svc"] = svc
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return svc


@pytest.fixture
def services() -> Iterator[tuple[Service, Service]]:
    stable, candidate = start_service("stable"), start_service("candidate")
    yield stable, candidate
    for svc in (stable, candidate):
        svc.server.shutdown()
        svc.server.server_close()


@dataclass
class Nginx:
    """A private nginx: its own prefix, main conf, and the switchover file its http{} includes."""

    prefix: Path
    conf: Path
    include: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def argv(self, *extra: str) -> list[str]:
        return [NGINX, "-p", str(self.prefix), "-c", str(self.conf), *extra]

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv("-g", "daemon off;"), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        try:
            wait_port(self.port)
        except RuntimeError:
            self.process.kill()
            err = self.process.stderr.read().decode() if self.process.stderr else ""
            raise RuntimeError(f"nginx did not start: {err}") from None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process = None


def nginx_main_conf(prefix: Path, include: Path) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(f"  {k}_temp_path {prefix}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n  access_log off;\n{temp}  include {include};\n}}\n")


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    """A private nginx, not started: the test renders the include first, then calls start()."""
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    include = prefix / "switchover.conf"
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_main_conf(prefix, include))
    ng = Nginx(prefix, conf, include, free_port())
    yield ng
    ng.stop()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's Route 53 (and other AWS APIs) on a free port, with throwaway credentials."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@dataclass
class FakeKube:
    """A small HTTP server answering the Kubernetes API paths the Istio router uses (no cluster runs
    here): server-side apply (PATCH application/apply-patch+yaml) stores the object, GET returns it."""

    url: str
    server: ThreadingHTTPServer
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def fake_kube(tmp_path: Path) -> Iterator[tuple[FakeKube, Path]]:
    import yaml

    holder: dict[str, FakeKube] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _not_found(self, path: str) -> None:
            self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                             "message": f"{path} not found", "code": 404})

        def do_GET(self) -> None:
            kube = holder["kube"]
            path = self.path.split("?")[0].rstrip("/")  # the client asks for /version/
            kube.requests.append({"method": "GET", "path": path, "auth": self.headers.get("Authorization")})
            if path == "/version":
                self._send(200, {"major": "1", "minor": "29", "gitVersion": "v1.29.0",  # as a real API server answers
                                 "gitCommit": "3f7a50f38688eb332e2a1b013678c6435d539ae6", "gitTreeState": "clean",
                                 "buildDate": "2023-12-13T08:51:44Z", "goVersion": "go1.21.5", "compiler": "gc",
                                 "platform": "linux/amd64"})
            elif path in kube.objects:
                self._send(200, kube.objects[path])
            else:
                self._not_found(path)

        def do_PATCH(self) -> None:
            kube = holder["kube"]
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            kube.requests.append({"method": "PATCH", "path": path, "query": query,
                                  "content_type": self.headers.get("Content-Type"),
                                  "auth": self.headers.get("Authorization")})
            if self.headers.get("Content-Type") != "application/apply-patch+yaml":
                self._send(415, {"kind": "Status", "code": 415, "message": "expected server-side apply"})
                return
            obj = yaml.safe_load(body)
            obj.setdefault("metadata", {})["resourceVersion"] = str(len(kube.requests))
            kube.objects[path] = obj
            self._send(200, obj)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    kube = FakeKube(f"http://127.0.0.1:{server.server_address[1]}", server)
    holder["kube"] = kube
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": kube.url}}],
        "users": [{"name": "test", "user": {"token": "sw-adapters-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    }))
    yield kube, kubeconfig
    server.shutdown()
    server.server_close()


@dataclass
class PromStack:
    """A real Prometheus (scrape interval 1 s) scraping a test exporter that serves the metric names
    the built-in proxy serves: http_requests_total{app,role,status},
    http_request_duration_seconds_bucket{app,role,le}."""

    url: str
    requests: Any  # prometheus_client Counter
    latency: Any  # prometheus_client Histogram

    def record(self, app: str, role: str, n: int, errors: int, seconds: float) -> None:
        for i in range(n):
            status = "503" if i < errors else "200"
            self.requests.labels(app=app, role=role, status=status).inc()
            self.latency.labels(app=app, role=role).observe(seconds)

    def wait_scraped(self, timeout: float = 20.0) -> None:
        """Until Prometheus has the exporter up and two scrapes behind it."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                body = httpx.get(f"{self.url}/api/v1/query",
                                 params={"query": 'count_over_time(up{job="sw_adapters"}[1m])'}, timeout=2).json()
                result = body["data"]["result"]
                if result and float(result[0]["value"][1]) >= 2:
                    return
            time.sleep(0.25)
        raise RuntimeError("Prometheus did not scrape the test exporter")


@pytest.fixture(scope="session")
def prom_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromStack]:
    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

    from switchover.metrics.base import LATENCY_BOUNDS

    registry = CollectorRegistry()
    requests = Counter("http_requests_total", "requests", ["app", "role", "status"], registry=registry)
    latency = Histogram("http_request_duration_seconds", "latency", ["app", "role"], buckets=LATENCY_BOUNDS,
                        registry=registry)
    # Series exist at 0 before traffic, as the proxy's do, so increase() sees the first requests.
    for app in ("sw_adapters_orders",):
        for role in ("stable", "canary"):
            latency.labels(app=app, role=role)
            for status in ("200", "503"):
                requests.labels(app=app, role=role, status=status)
    exporter_port = free_port()
    server, _thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    process, url = start_prometheus(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{exporter_port}")
    stack = PromStack(url, requests, latency)
    try:
        stack.wait_scraped()
        yield stack
    finally:
        stop_process(process)
        server.shutdown()


def start_prometheus(tmp: Path, target: str) -> tuple[subprocess.Popen[bytes], str]:
    """A private Prometheus (scrape interval 1 s) scraping ``target``'s /metrics as job sw_adapters."""
    config = tmp / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                      "scrape_configs:\n  - job_name: sw_adapters\n"
                      f"    static_configs: [{{targets: ['{target}']}}]\n")
    port = free_port()
    process = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 30)
    except RuntimeError:
        stop_process(process)
        raise
    return process, f"http://127.0.0.1:{port}"


def stop_process(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class DnsServer:
    """An authoritative DNS server on 127.0.0.1 (UDP), written with dnspython's message API."""

    address: str
    records: dict[str, tuple[str, int]]  # hostname -> (IPv4, TTL)
    queries: list[str] = field(default_factory=list)


@pytest.fixture
def dns_server() -> Iterator[Callable[[dict[str, tuple[str, int]]], DnsServer]]:
    import dns.message
    import dns.rcode
    import dns.rdatatype
    import dns.rrset

    stops: list[tuple[threading.Event, socket.socket, threading.Thread]] = []

    def start(records: dict[str, tuple[str, int]]) -> DnsServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)
        server = DnsServer(f"127.0.0.1:{sock.getsockname()[1]}", records)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    data, peer = sock.recvfrom(4096)
                except (TimeoutError, OSError):
                    continue
                query = dns.message.from_wire(data)
                answer = dns.message.make_response(query)
                answer.flags |= 0x0400  # authoritative
                for question in query.question:
                    name = question.name.to_text().rstrip(".")
                    server.queries.append(f"{name} {dns.rdatatype.to_text(question.rdtype)}")
                    if name not in server.records:
                        answer.set_rcode(dns.rcode.NXDOMAIN)
                    elif question.rdtype == dns.rdatatype.A:
                        ip, ttl = server.records[name]
                        answer.answer.append(dns.rrset.from_text(question.name, ttl, "IN", "A", ip))
                sock.sendto(answer.to_wire(), peer)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        stops.append((stop, sock, thread))
        return server

    yield start
    for stop, sock, thread in stops:
        stop.set()
        thread.join(timeout=5)
        sock.close()
