"""`parity:` how candidate answers are compared with stable's."""

from __future__ import annotations

from pydantic import Field

from switchover.plan.common import Strict


class Parity(Strict):
    ignore: list[str] = []
    unordered: list[str] = []
    headers: list[str] = Field(["content-type"], description="response headers compared")
    ignore_headers: list[str] = ["date", "server", "x-request-id"]
    float_tolerance: float = 0.0
    int_float_equal: bool = True
    endpoints: list[str] = Field([], description="explicit path templates, e.g. /orders/{id}")
    stable_secondary: str | None = None
    learn_noise: float = Field(0.0, ge=0, le=1, description="share of requests sent to stable twice")
    noise_relative: float = Field(2.0, ge=1)
    noise_absolute: float = Field(0.001, ge=0)
    mirror_writes: bool = False
    samples: int = Field(20, ge=0)
    redact_fields: list[str] = []
    store: str | None = None
    listen: str = "127.0.0.1:9903"
