"""`timeouts:`, `dns:` and `journeys:`: what preflight and the synthetic checks look at."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from switchover.plan.common import Duration, Strict


class Timeouts(Strict):
    client: Duration = 10.0
    server: Duration = 5.0


class Dns(Strict):
    hostnames: list[str] = []
    resolvers: list[str] = []
    max_ttl: int = Field(60, ge=0)


class JourneyExpect(Strict):
    status: int | list[int] | None = None
    body_contains: str | None = None
    json_subset: dict[str, Any] | None = Field(None, alias="json")


class JourneyStep(Strict):
    method: str = "GET"
    path: str
    headers: dict[str, str] = {}
    json_body: Any = Field(None, alias="json")
    body: str | None = None
    capture: dict[str, str] = {}
    expect: JourneyExpect = JourneyExpect()


class Journey(Strict):
    name: str
    every: Duration = 60.0
    steps: list[JourneyStep] = Field(min_length=1)
