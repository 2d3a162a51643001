"""Fixtures: real upstream processes and the real `switchover proxy` as a subprocess, on ephemeral ports."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).parent
SWITCHOVER = [sys.executable, "-m", "switchover"]
READY = re.compile(r"listening on http://([\d.]+):(\d+), admin on http://([\d.]+):(\d+)")


@dataclass
class Upstream:
    name: str
    url: str
    proc: subprocess.Popen[str]


def _start_upstream(name: str, *args: str) -> Upstream:
    proc = subprocess.Popen([sys.executable, str(HERE / "upstream_app.py"), name, "0", *args],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    scheme = "https" if "--tls" in args else "http"
    return Upstream(name, f"{scheme}://127.0.0.1:{port}", proc)


@pytest.fixture
def upstreams() -> Iterator[Callable[..., Upstream]]:
    started: list[Upstream] = []

    def start(name: str, *args: str) -> Upstream:
        up = _start_upstream(name, *args)
        started.append(up)
        return up

    yield start
    for up in started:
        up.proc.kill()
        up.proc.wait()


@pytest.fixture
def stable(upstreams: Callable[..., Upstream]) -> Upstream:
    return upstreams("stable")


@pytest.fixture
def candidate(upstreams: Callable[..., Upstream]) -> Upstream:
    return upstreams("candidate")


def closed_port_url() -> str:
    """An address where nothing listens (connection refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@dataclass
class RunningProxy:
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""
    admin: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(self.admin + "/api/v1/stats", headers=self.headers, timeout=10).json())

    def split(self) -> dict[str, int]:
        return dict(httpx.get(self.admin + "/api/v1/split", headers=self.headers, timeout=10).json())

    def set_split(self, **body: int) -> httpx.Response:
        return httpx.put(self.admin + "/api/v1/split", json=body, headers=self.headers, timeout=10)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text()


def launch(args: list[str], tmp: Path, env: dict[str, str] | None = None, wait: bool = True) -> RunningProxy:
    log = tmp / f"proxy-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*SWITCHOVER, "proxy", *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
    running = RunningProxy(proc, log)
    if not wait:
        return running
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        match = READY.search(log.read_text())
        if match:
            running.url = f"http://{match[1]}:{match[2]}"
            running.admin = f"http://{match[3]}:{match[4]}"
            return running
        if proc.poll() is not None:
            raise AssertionError(f"the proxy exited with {proc.returncode}: {log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the proxy did not start: {log.read_text()}")


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Callable[..., RunningProxy]]:
    """start_proxy(stable_url, candidate_url, *flags) runs `switchover proxy` on ephemeral ports."""
    running: list[RunningProxy] = []

    def start(stable: str | None, candidate: str | None, *flags: str, env: dict[str, str] | None = None,
              state_file: Path | None = None) -> RunningProxy:
        args = ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                "--state-file", str(state_file or tmp_path / f"state-{len(running)}.json"), *flags]
        if stable:
            args += ["--stable", stable]
        if candidate:
            args += ["--candidate", candidate]
        proxy = launch(args, tmp_path, env)
        running.append(proxy)
        return proxy

    yield start
    for proxy in running:
        if proxy.proc.poll() is None:
            proxy.proc.send_signal(signal.SIGTERM)  # graceful: the parent of --workers stops its workers
            try:
                proxy.proc.wait(20)
            except subprocess.TimeoutExpired:
                proxy.proc.kill()
                proxy.proc.wait()


def write_plan(tmp: Path, stable: str, candidate: str, traffic: dict[str, Any]) -> Path:
    """A minimal plan (JSON is YAML) whose traffic section sets the proxy's limits."""
    plan = tmp / "plan.yaml"
    plan.write_text(json.dumps({"name": "sw_proxy_test", "stable": {"url": stable}, "candidate": {"url": candidate},
                                "traffic": traffic}))
    return plan
