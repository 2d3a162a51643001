"""The one rollback (DESIGN.md, "rollback"): used by ``switchover rollback`` (controller dead or
alive) and by the controller itself.

In order: the router straight to weight 0 and mirror 0 (users first), the ``dual_write`` flag off,
every registered participant (``ROLLBACK_PARTICIPANTS``: "module:function", each called as
``fn(plan, store, actor) -> dict``; a module that does not exist is skipped), the plan's rollback
hooks, notifications, then a ``rollback`` event. Idempotent: a second rollback of the same run
re-asserts the routes and the flag but does not run hooks or participants again. A live controller
re-reads the journal before every action and stops when it sees the event.
"""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from switchover import secrets
from switchover.engine.state import fold
from switchover.errors import UserError
from switchover.notify.webhook import notify
from switchover.traffic.base import router_for

if TYPE_CHECKING:
    from switchover.engine.store import StateStore
    from switchover.plan import Plan
    from switchover.plan.notify import Hook
    from switchover.traffic.base import Router

ROLLBACK_PARTICIPANTS: list[str] = [
    "switchover.engine.steps.movement:rollback_participant",
]


@dataclass(frozen=True)
class RollbackReport:
    run_id: str
    routed: bool  # the router now sends every user to stable, mirroring off
    routes: tuple[int, int] | None  # read back after setting
    repeat: bool  # this run had been rolled back already
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        # Notifications are best effort: a chat outage does not make a rollback fail.
        return self.routed and all(s.get("ok", True) for s in self.steps if s.get("action") != "notify")

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "ok": self.ok, "routed": self.routed,
                "routes": list(self.routes) if self.routes else None, "repeat": self.repeat,
                "steps": secrets.redact_obj(self.steps)}


def _participant(target: str) -> Callable[..., dict[str, Any]] | None:
    module_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    fn: Callable[..., dict[str, Any]] | None = getattr(module, func_name, None)
    return fn


def run_hook(plan: Plan, hook: Hook) -> dict[str, Any]:
    """One rollback hook; the result for the journal (never raises)."""
    if hook.command is not None:
        argv = hook.command.argv
        try:
            done = subprocess.run(argv, cwd=plan.base_dir(), capture_output=True, text=True,
                                  timeout=hook.command.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"hook": "command", "argv": argv, "ok": False, "detail": str(exc)}
        return {"hook": "command", "argv": argv, "ok": done.returncode == 0, "exit": done.returncode,
                "output": (done.stdout + done.stderr)[-500:]}
    assert hook.webhook is not None
    ref = hook.webhook.url
    try:
        url = secrets.resolve(ref, where="rollback.hooks webhook")
        response = httpx.request(hook.webhook.method, url, json=hook.webhook.body, headers=hook.webhook.headers,
                                 timeout=hook.webhook.timeout)
        return {"hook": "webhook", "url": secrets.redact_url(url), "ok": 200 <= response.status_code < 300,
                "status": response.status_code}
    except (UserError, httpx.HTTPError) as exc:
        return {"hook": "webhook", "url": ref, "ok": False, "detail": secrets.redact(str(exc))}


def rollback(plan: Plan, store: StateStore, actor: str, reason: str, *, router: Router | None = None,
             run_id: str | None = None) -> RollbackReport:
    """Send every user to stable and undo what can be undone; journal it. See the module doc."""
    run = run_id or store.latest_run()
    if run is None:
        run = "no-run"
    state = fold(store.events(run)) if run != "no-run" else None
    repeat = state is not None and state.rollback_at is not None
    steps: list[dict[str, Any]] = []

    routed = False
    routes: tuple[int, int] | None = None
    try:
        active = router or router_for(plan)
        active.set_routes(0, 0)
        routes = active.get_routes()
        routed = routes == (0, 0)
        steps.append({"action": "routes", "ok": routed, "weight": routes[0], "mirror": routes[1]})
    except UserError as exc:
        steps.append({"action": "routes", "ok": False, "detail": str(exc)})

    store.set_flag("dual_write", False, actor)
    steps.append({"action": "dual_write_flag", "ok": True, "value": False})

    if not repeat:
        for target in ROLLBACK_PARTICIPANTS:
            fn = _participant(target)
            if fn is None:
                continue
            try:
                result = fn(plan, store, actor)
                steps.append({"action": "participant", "target": target, "ok": bool(result.get("ok", True)),
                              "result": result})
            except Exception as exc:  # a participant's failure must not stop the rest of the rollback
                steps.append({"action": "participant", "target": target, "ok": False,
                              "detail": f"{exc.__class__.__name__}: {exc}"})
        for hook in plan.rollback.hooks:
            steps.append({"action": "hook", **run_hook(plan, hook)})
        deliveries = notify(plan, "rollback", f"rolled back by {actor}: {reason}", {"reason": reason})
        steps.extend({"action": "notify", **d.to_json()} for d in deliveries)

    report = RollbackReport(run, routed, routes, repeat, steps)
    store.append(run, "rollback", actor, {"reason": reason, **report.to_json()})
    return report
