"""Send a notification to every notifier of the plan. Never raises: a notifier that fails is
reported (URL redacted) and the run goes on; the result is journaled by the caller.

- ``slack``: a Slack incoming-webhook body ``{"text": ...}`` (Mattermost, Rocket.Chat and Teams
  connectors accept the same).
- ``webhook``: a JSON body ``{"plan", "event", "text", "details"}``.
URLs are usually ``env:NAME``: they carry tokens, so they are shown only redacted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from switchover import secrets
from switchover.errors import UserError

if TYPE_CHECKING:
    from switchover.plan import Plan


@dataclass(frozen=True)
class Delivery:
    target: str  # redacted
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "ok": self.ok, "detail": self.detail}


def _shown(url: str, ref: str) -> str:
    if secrets.is_ref(ref):
        return f"{ref} ({secrets.redact_url(url).split('//', 1)[-1].split('/', 1)[0]})"
    return secrets.redact_url(url)


def notify(plan: Plan, event: str, text: str, details: dict[str, Any] | None = None,
           timeout: float = 5.0) -> list[Delivery]:
    out: list[Delivery] = []
    for i, notifier in enumerate(plan.notify):
        ref = notifier.slack or notifier.webhook or ""
        try:
            url = secrets.resolve(ref, where=f"notify[{i}]")
        except UserError as exc:
            out.append(Delivery(ref, False, str(exc)))
            continue
        shown = _shown(url, ref)
        if notifier.slack:
            body: dict[str, Any] = {"text": f"[switchover {plan.name}] {text}"}
        else:
            body = {"plan": plan.name, "event": event, "text": text, "details": secrets.redact_obj(details or {})}
        try:
            response = httpx.post(url, json=body, timeout=timeout)
            ok = 200 <= response.status_code < 300
            out.append(Delivery(shown, ok, f"HTTP {response.status_code}"))
        except httpx.HTTPError as exc:
            out.append(Delivery(shown, False, secrets.redact(f"{exc.__class__.__name__}: {exc}")))
    return out
