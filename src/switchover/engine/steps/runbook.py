"""Runbook steps: ``manual {prompt}`` (ticked with ``switchover confirm``), ``webhook {url}`` (2xx
passes, like Flagger's confirm hooks) and ``command {argv}`` (exit 0 passes; no shell).

Resumable: a webhook or command whose result is journaled is not run again after a restart; one
interrupted before its result is run again (make them idempotent).
"""

from __future__ import annotations

import subprocess
from typing import Any, ClassVar

import httpx

from switchover import secrets
from switchover.engine.steps.base import Signal, StepContext, StepResult, StepStatus
from switchover.errors import UserError
from switchover.plan.steps import Command, Manual, Webhook


def _previous(ctx: StepContext, kind: str) -> dict[str, Any] | None:
    found = [e.payload for e in ctx.step_events() if e.kind == kind]
    return found[-1] if found else None


class ManualStep:
    kind: ClassVar[str] = "manual"

    def __init__(self, spec: Manual) -> None:
        self.spec = spec

    def run(self, ctx: StepContext) -> StepResult:
        if _previous(ctx, "manual_waiting") is None:
            ctx.journal("manual_waiting", {"prompt": self.spec.prompt})
        ctx.say(f"runbook: {self.spec.prompt} -- tick it with `switchover confirm PLAN`")
        while True:
            signal = ctx.wait(3600.0)
            if signal in (Signal.ABORT, Signal.ROLLBACK):
                return StepResult(StepStatus.ABORTED, str(signal))
            if signal in (Signal.CONFIRM, Signal.PROMOTE):
                return StepResult(StepStatus.DONE, f"confirmed: {self.spec.prompt}")

    def on_rollback(self, ctx: StepContext) -> None:
        return None


class WebhookStep:
    kind: ClassVar[str] = "webhook"

    def __init__(self, spec: Webhook) -> None:
        self.spec = spec

    def run(self, ctx: StepContext) -> StepResult:
        done = _previous(ctx, "webhook_result")
        if done is None:
            done = self._call()
            ctx.journal("webhook_result", done)
        if done["ok"]:
            return StepResult(StepStatus.DONE, f"webhook {done['url']}: {done['detail']}")
        return StepResult(StepStatus.FAILED, f"webhook {done['url']}: {done['detail']}")

    def _call(self) -> dict[str, Any]:
        ref = self.spec.url
        try:
            url = secrets.resolve(ref, where="webhook step url")
        except UserError as exc:
            return {"url": ref, "ok": False, "detail": str(exc)}
        shown = ref if secrets.is_ref(ref) else secrets.redact_url(url)
        try:
            response = httpx.request(self.spec.method, url, headers=self.spec.headers, json=self.spec.body,
                                     timeout=self.spec.timeout)
        except httpx.HTTPError as exc:
            return {"url": shown, "ok": False, "detail": secrets.redact(f"{exc.__class__.__name__}: {exc}")}
        ok = 200 <= response.status_code < 300
        return {"url": shown, "ok": ok, "status": response.status_code, "detail": f"HTTP {response.status_code}"}

    def on_rollback(self, ctx: StepContext) -> None:
        return None


class CommandStep:
    kind: ClassVar[str] = "command"

    def __init__(self, spec: Command) -> None:
        self.spec = spec

    def run(self, ctx: StepContext) -> StepResult:
        done = _previous(ctx, "command_result")
        if done is None:
            ctx.say(f"running {' '.join(self.spec.argv)}")
            done = self._call(ctx)
            ctx.journal("command_result", done)
        if done["ok"]:
            return StepResult(StepStatus.DONE, f"{self.spec.argv[0]} exited 0")
        return StepResult(StepStatus.FAILED, f"{' '.join(self.spec.argv)}: {done['detail']}")

    def _call(self, ctx: StepContext) -> dict[str, Any]:
        try:
            result = subprocess.run(self.spec.argv, cwd=ctx.plan.base_dir(), capture_output=True, text=True,
                                    timeout=self.spec.timeout, check=False)
        except FileNotFoundError:
            return {"argv": self.spec.argv, "ok": False, "detail": f"no such program {self.spec.argv[0]!r}"}
        except subprocess.TimeoutExpired:
            return {"argv": self.spec.argv, "ok": False, "detail": f"timed out after {self.spec.timeout:g}s"}
        except OSError as exc:
            return {"argv": self.spec.argv, "ok": False, "detail": str(exc)}
        output = (result.stdout + result.stderr)[-2000:]
        return {"argv": self.spec.argv, "ok": result.returncode == 0, "exit": result.returncode,
                "detail": f"exit {result.returncode}", "output": secrets.redact(output)}

    def on_rollback(self, ctx: StepContext) -> None:
        return None
