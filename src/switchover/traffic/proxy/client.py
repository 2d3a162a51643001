"""The ``proxy`` Router: a client of the built-in proxy's admin API (``switchover proxy``).

The proxy runs on its own; this only reads and moves its split (``/api/v1/split``) and reads its
counters (``/api/v1/stats``). Unreachable or refusing admin API: ``UserError`` naming the URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from switchover import secrets
from switchover.errors import UserError
from switchover.traffic.base import clamp_percent

if TYPE_CHECKING:
    from switchover.plan import Plan


class AdminClient:
    """Small synchronous client of the proxy admin API."""

    def __init__(self, admin: str, token_ref: str | None = None, timeout: float = 3.0) -> None:
        self.base = f"http://{admin}"
        headers = {}
        if token_ref:
            headers["Authorization"] = f"Bearer {secrets.resolve(token_ref, where='traffic.admin_token')}"
        self._client = httpx.Client(base_url=self.base, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.base + path
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise UserError(f"proxy admin API {url} unreachable: {exc.__class__.__name__}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise UserError(f"proxy admin API {method} {url}: HTTP {response.status_code}: {secrets.redact(str(detail))}")
        try:
            return response.json()
        except ValueError:
            raise UserError(f"proxy admin API {url}: not JSON") from None

    def healthy(self) -> bool:
        try:
            return self._client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False


class ProxyRouter:
    """Router over the built-in proxy's admin API (``traffic.admin``, bearer ``traffic.admin_token``)."""

    name = "proxy"

    def __init__(self, plan: Plan) -> None:
        self.admin = AdminClient(plan.traffic.admin, plan.traffic.admin_token)

    def sync(self, plan: Plan) -> None:
        # The proxy takes its upstreams and sticky key from the same plan (`switchover proxy --plan`);
        # here we only make sure it is there to be driven.
        if not self.admin.healthy():
            raise UserError(f"proxy admin API {self.admin.base}/healthz does not answer: start `switchover proxy "
                            f"--plan PLAN` first")

    def set_routes(self, weight: int, mirror_percent: int) -> None:
        body = {"candidate_weight": clamp_percent(weight, "weight"),
                "mirror_percent": clamp_percent(mirror_percent, "mirror_percent")}
        self.admin.request("PUT", "/api/v1/split", body)

    def get_routes(self) -> tuple[int, int]:
        split = self.admin.request("GET", "/api/v1/split")
        try:
            return int(split["candidate_weight"]), int(split["mirror_percent"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"proxy admin API {self.admin.base}/api/v1/split: unexpected answer {split!r}") from None

    def is_online(self) -> bool:
        return self.admin.healthy()

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin.request("GET", "/api/v1/stats")
        return result
