"""Integration tests of the controller: the real `switchover proxy`, the demo's orders service as
v1 and v2 (real sockets, subprocesses), `switchover run` as a subprocess where a test kills it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchover.demo.runner import Stack, stack
from switchover.engine.state import RunState, fold
from switchover.engine.store import Event, StateStore

PLAN = """\
name: sw-controller-it
stable:    {{url: "http://127.0.0.1:{v1}", ready: /healthz/ready}}
candidate: {{url: "http://127.0.0.1:{v2}", ready: {ready}}}
state: "sqlite:///{state}"
controller: {{api: "127.0.0.1:{api}"}}
traffic:
  driver: proxy
  listen: "127.0.0.1:{listen}"
  admin: "127.0.0.1:{admin}"
  sticky: {{header: X-User-Id}}
  state_file: "{split_state}"
slo: {{p95_ms: 200, error_rate: 0.01}}
analysis:
  interval: 1s
  min_requests: {min_requests}
  failure_limit: 3
  inconclusive_limit: {inconclusive_limit}
  on_inconclusive: {on_inconclusive}
steps: {steps}
rollback:
  hooks:
    - command: {{argv: ["sh", "-c", "echo rolled-back >> {hooklog}"]}}
notify:
  - {{webhook: "env:SW_CONTROLLER_NOTIFY_URL"}}
"""

DEFAULTS: dict[str, Any] = {
    "ready": "/healthz/ready", "min_requests": 15, "inconclusive_limit": 20, "on_inconclusive": "rollback",
    "steps": '[{canary: {weight: 10, hold: 3s}}, {canary: {weight: 50, hold: 3s}}, {canary: {weight: 100, hold: 2s}}]',
}


class Received:
    """Bodies a local webhook receiver got (the plan's notifier), in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.bodies.append({"path": self.path, **json.loads(self.rfile.read(length) or b"{}")})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def notifications(monkeypatch: pytest.MonkeyPatch) -> Iterator[Received]:
    received = Received()
    monkeypatch.setenv("SW_CONTROLLER_NOTIFY_URL", f"http://127.0.0.1:{received.port}/hooks/SECRET-TOKEN-123")
    yield received
    received.close()


@pytest.fixture
def make_stack(tmp_path: Path, notifications: Received) -> Iterator[Callable[..., Stack]]:
    """Start v1, v2 (``v2_args``) and the proxy with the test plan; stopped at the end of the test."""
    contexts: list[Any] = []

    def make(v2_args: tuple[str, ...] = (), plan_template: str = PLAN, **fields: Any) -> Stack:
        values = {**DEFAULTS, "hooklog": tmp_path / "hook.log", **fields}
        ctx = stack(tmp_path, plan_template=plan_template, v2_args=v2_args, **values)
        contexts.append(ctx)
        return ctx.__enter__()

    yield make
    for ctx in reversed(contexts):
        ctx.__exit__(None, None, None)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchover", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def start_run(plan: Path, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "switchover", "run", str(plan)], stdout=out, stderr=out)


def events(s: Stack) -> list[Event]:
    store = StateStore(f"sqlite:///{s.workdir / 'journal.db'}")
    try:
        return store.events()
    finally:
        store.close()


def state(s: Stack) -> RunState:
    return fold(events(s))


def split(s: Stack) -> tuple[int, int]:
    body = httpx.get(f"http://127.0.0.1:{s.ports['admin']}/api/v1/split", timeout=5).json()
    return int(body["candidate_weight"]), int(body["mirror_percent"])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def weights_moved(evs: list[Event]) -> list[int]:
    """The weights the controller moved to (re-assertions after a restart excluded)."""
    return [int(e.payload["weight"]) for e in evs if e.kind == "weight_set" and e.payload.get("reason") == "step"]
