"""`switchover demo [--bad-candidate]`: v1 and v2 of the sample orders service, the built-in proxy,
a load generator and a plan with short holds; the live view; then a summary. Everything it starts
is stopped at the end, also on Ctrl-C. Needs nothing but ``pip install``."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import httpx
from rich.console import Console

from switchover.demo.load import LoadGenerator, LoadResult
from switchover.errors import UserError

PLAN = """\
# The demo's plan: written by `switchover demo`, a complete example of a small cutover.
name: demo-orders
stable:    {{url: "http://127.0.0.1:{v1}", ready: /healthz/ready}}
candidate: {{url: "http://127.0.0.1:{v2}", ready: /healthz/ready}}
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
  inconclusive_limit: 20
  on_inconclusive: rollback
parity: {{ignore: ["$.version"]}}  # v1 and v2 say which they are
steps:
  - shadow: {{percent: 20, hold: {hold}, budget: 0.01, min_compared: 100}}
  - canary: {{weight: 10, hold: {hold}}}
  - canary: {{weight: 25, hold: {hold}}}
  - canary: {{weight: 50, hold: {hold}}}
  - canary: {{weight: 100, hold: {hold}}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise UserError(f"demo: {url}: the process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise UserError(f"demo: {url} did not answer within {timeout:g}s")


class Processes:
    """Child processes started for the demo, each in its own process group, stopped in reverse."""

    def __init__(self, log: TextIO) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        self.log = log

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(argv, stdout=self.log, stderr=self.log, start_new_session=True)
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=5)


@dataclass(frozen=True)
class Stack:
    plan_path: Path
    ports: dict[str, int]
    procs: Processes
    workdir: Path


@contextlib.contextmanager
def stack(workdir: Path, *, plan_template: str = PLAN, v2_args: tuple[str, ...] = (), start_proxy: bool = True,
          **fields: object) -> Iterator[Stack]:
    """v1, v2 and the proxy running on free ports; the plan written from ``plan_template``
    (``str.format`` with the ports, ``state``, ``split_state`` and ``fields``)."""
    ports = {name: free_port() for name in ("v1", "v2", "listen", "admin", "api")}
    db = workdir / "orders.db"
    plan_path = workdir / "plan.yaml"
    values: dict[str, object] = {"state": workdir / "journal.db", "split_state": workdir / "split.json",
                                 "hold": "6s", "min_requests": 20, **ports}
    values.update(fields)
    plan_path.write_text(plan_template.format(**values), encoding="utf-8")
    with open(workdir / "processes.log", "ab") as log:
        procs = Processes(log)  # type: ignore[arg-type]
        try:
            py = sys.executable
            for version in ("v1", "v2"):
                port = ports[version]
                argv = [py, "-m", "switchover.demo.service", "--port", str(port), "--version", version, "--db", str(db)]
                if version == "v2":
                    argv.extend(v2_args)
                child = procs.start(argv)
                wait_http(f"http://127.0.0.1:{port}/healthz/ready", 20, child)
            if start_proxy:
                proxy = procs.start([py, "-m", "switchover", "proxy", "--plan", str(plan_path)])
                wait_http(f"http://127.0.0.1:{ports['admin']}/healthz", 20, proxy)
            yield Stack(plan_path, ports, procs, workdir)
        finally:
            procs.stop()


def summary(console: Console, outcome: str, reason: str, seconds: float, load: LoadResult) -> None:
    colour = "green" if outcome == "promoted" else "red"
    console.rule("summary")
    console.print(f"outcome: [bold {colour}]{outcome.replace('_', ' ')}[/bold {colour}]"
                  + (f" ({reason})" if outcome != "promoted" else ""), highlight=False)
    console.print(f"time taken: {seconds:.0f}s", highlight=False)
    console.print(f"requests served: {load.total} ({load.sent['GET']} GET, {load.sent['POST']} POST); "
                  f"answered by " + ", ".join(f"{v}: {n}" for v, n in sorted(load.by_version.items())), highlight=False)
    console.print(f"failed user requests: {load.total_failed} (GET {load.failed['GET']}, POST {load.failed['POST']})",
                  highlight=False)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(bad_candidate: bool = False, console: Console | None = None) -> str:
    from switchover.engine.controller import Controller, metrics_for
    from switchover.engine.store import StateStore
    from switchover.plan import load_plan
    from switchover.traffic.base import router_for
    from switchover.ui.live import LiveView

    console = console or Console()
    started = time.monotonic()
    # `kill` (SIGTERM) or a closed terminal (SIGHUP) clean up like Ctrl-C: stop what we started.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    with tempfile.TemporaryDirectory(prefix="switchover-demo-") as tmp, \
            stack(Path(tmp), v2_args=("--bad",) if bad_candidate else ()) as running:
        plan_path, ports = running.plan_path, running.ports
        console.print(f"demo: v1 on :{ports['v1']}, v2{' (bad)' if bad_candidate else ''} on :{ports['v2']}, "
                      f"proxy on :{ports['listen']} (admin :{ports['admin']}), plan {plan_path}", highlight=False)
        plan = load_plan(plan_path)
        load = LoadGenerator("127.0.0.1", ports["listen"], rate=300, duration=150, workers=6)
        load.start()
        store = StateStore(plan.state_url(), plan.base_dir())
        try:
            controller = Controller(plan, store, router_for(plan), metrics_for(plan), view=LiveView(console))
            outcome = controller.run()
            reason = controller.refresh().finish_reason
        finally:
            result = load.stop()
            store.close()
        summary(console, outcome, reason, time.monotonic() - started, result)
        return outcome
