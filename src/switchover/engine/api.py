"""The controller HTTP API (``controller.api``): operator commands, status and ``/metrics``.

Commands are not executed here: they are journaled as ``operator_command`` events and the
controller loop, which re-reads the journal before every action, acts on them. So a command has
the same effect whether it arrives through this API or is read from the journal after a restart.

- ``GET /healthz``
- ``GET /api/v1/status``: the run state (a fold of the journal)
- ``POST /api/v1/commands`` ``{"command": "pause|resume|promote|abort|confirm", "actor": "user@host"}``
- ``GET /metrics``
A bearer token (``controller.token``) is required when set, and must be set when the API is bound
to anything but loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from switchover import secrets
from switchover.engine.metrics_export import Gauges, render
from switchover.engine.state import RunState, fold
from switchover.engine.store import StateStore
from switchover.errors import UserError

if TYPE_CHECKING:
    from switchover.plan import Plan

COMMANDS = ("pause", "resume", "promote", "abort", "confirm")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_token(plan: Plan) -> str | None:
    """The token the API requires; a UserError when bound beyond loopback without one."""
    host, _, _port = plan.controller.api.rpartition(":")
    if plan.controller.token:
        return secrets.resolve(plan.controller.token, where="controller.token")
    if not is_loopback(host):
        raise UserError(f"controller.api {plan.controller.api} is not loopback: set controller.token: env:NAME")
    return None


class ControllerApi:
    """Serves the API from a thread; ``state()`` is read from its own connection to the store."""

    def __init__(self, plan: Plan, run_id: Callable[[], str], gauges: Gauges) -> None:
        self.plan = plan
        self.token = api_token(plan)
        self.gauges = gauges
        self._run_id = run_id
        self._store = StateStore(plan.state_url(), plan.base_dir())
        self._lock = threading.Lock()
        host, _, port = plan.controller.api.rpartition(":")
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet: the journal is the log
                return

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, code: int, value: Any) -> None:
                self._send(code, json.dumps(value, default=str).encode())

            def _authorised(self) -> bool:
                if api.token is None:
                    return True
                given = self.headers.get("Authorization", "")
                if hmac.compare_digest(given.encode(), f"Bearer {api.token}".encode()):
                    return True
                self._json(401, {"error": "bearer token required (controller.token)"})
                return False

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._json(200, {"ok": True})
                    return
                if not self._authorised():
                    return
                if self.path == "/api/v1/status":
                    self._json(200, api.state().to_json())
                elif self.path == "/metrics":
                    self._send(200, render(api.plan.name, api.state(), api.gauges), "text/plain; version=0.0.4")
                else:
                    self._json(404, {"error": f"no such path {self.path}"})

            def do_POST(self) -> None:
                if not self._authorised():
                    return
                if self.path != "/api/v1/commands":
                    self._json(404, {"error": f"no such path {self.path}"})
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                    body = json.loads(self.rfile.read(length) or b"{}")
                    command = str(body["command"])
                    actor = str(body.get("actor") or "api")
                except (ValueError, KeyError, TypeError):
                    self._json(400, {"error": 'expected {"command": ..., "actor": ...}'})
                    return
                if command not in COMMANDS:
                    self._json(400, {"error": f"unknown command {command!r}; known: {', '.join(COMMANDS)}"})
                    return
                self._json(202, api.command(command, actor))

        try:
            self.server = ThreadingHTTPServer((host, int(port)), Handler)
        except OSError as exc:
            raise UserError(f"controller.api {plan.controller.api}: cannot listen: {exc.strerror}") from None
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="controller-api", daemon=True)

    def state(self) -> RunState:
        with self._lock:
            return fold(self._store.events(self._run_id()))

    def command(self, command: str, actor: str) -> dict[str, Any]:
        with self._lock:
            state = fold(self._store.events(self._run_id()))
            if state.finished:
                return {"accepted": False, "reason": f"the run already finished ({state.outcome})"}
            if command == "confirm" and state.step_kind != "manual":
                return {"accepted": False, "reason": f"step {state.step_index + 1} is {state.step_kind or 'none'}, "
                                                     "not a manual step: nothing to confirm"}
            event = self._store.append(state.run_id, "operator_command", actor,
                                       {"command": command, "step_index": state.step_index})
        return {"accepted": True, "seq": event.seq, "step_index": state.step_index}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._store.close()
