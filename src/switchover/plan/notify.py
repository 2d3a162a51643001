"""`notify:` and `rollback:` hooks."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from switchover.plan.common import Duration, Strict, UrlOrRef


class Notifier(Strict):
    slack: UrlOrRef | None = None
    webhook: UrlOrRef | None = None

    @model_validator(mode="after")
    def _one(self) -> Notifier:
        if (self.slack is None) == (self.webhook is None):
            raise ValueError("a notifier is either {slack: env:NAME} or {webhook: env:NAME}")
        return self


class CommandHook(Strict):
    argv: list[str] = Field(min_length=1)
    timeout: Duration = 60.0


class WebhookHook(Strict):
    url: UrlOrRef
    method: str = "POST"
    timeout: Duration = 30.0
    headers: dict[str, str] = {}
    body: dict[str, Any] | None = None


class Hook(Strict):
    command: CommandHook | None = None
    webhook: WebhookHook | None = None

    @model_validator(mode="after")
    def _one(self) -> Hook:
        if (self.command is None) == (self.webhook is None):
            raise ValueError("a hook is either {command: {argv: [...]}} or {webhook: {url: ...}}")
        return self


class Rollback(Strict):
    hooks: list[Hook] = []
    drain_timeout: Duration = 60.0
