"""`parity:` how candidate answers are compared with stable's (docs/parity.md)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from switchover.plan.common import HostPort, SecretRef, Strict

# Kept here (not imported from switchover.parity) so that the plan depends on nothing else.
_PATH = re.compile(r"""^\$(\.\.?([A-Za-z_$][\w$-]*|\*)|\[(\*|\d+)\]|\[['"][^'"]*['"]\])*$""")


class Parity(Strict):
    ignore: list[str] = Field([], description="JSON paths never compared, e.g. $.generated_at, $.items[*].etag")
    unordered: list[str] = Field([], description="arrays compared as multisets, e.g. $.items")
    headers: list[str] = Field(["content-type"], description="response headers compared")
    ignore_headers: list[str] = ["date", "server", "x-request-id"]
    float_tolerance: float = Field(0.0, ge=0, description="numbers this close (relative, absolute below 1) are equal")
    int_float_equal: bool = Field(True, description="1.0 == 1")
    endpoints: list[str] = Field([], description="explicit path templates, e.g. /orders/{id}")
    stable_secondary: str | None = Field(None, description="a second stable instance: what differs between the two is noise")
    learn_noise: float = Field(0.0, ge=0, le=1, description="share of requests sent to stable twice to learn noise")
    noise_relative: float = Field(2.0, ge=1, description="a regression's rate exceeds noise rate x this")
    noise_absolute: float = Field(0.0, ge=0, le=1, description="... and exceeds the noise rate by at least this")
    mirror_writes: bool = Field(False, description="also compare POST/PUT/PATCH/DELETE (they reach the candidate!)")
    samples: int = Field(20, ge=0, description="last N differing answers kept per endpoint, both bodies")
    redact_fields: list[str] = Field([], description="body fields and headers masked in stored samples")
    store: str | None = Field(None, description="mismatch store (SQLite file); default .switchover/<name>-parity.db")
    listen: HostPort = Field("127.0.0.1:9903", description="where `parity serve` takes mirrored copies")
    admin: HostPort | None = Field(None, description="where `parity serve` answers GET /api/v1/parity and /healthz "
                                   "(default: on the listen address, whose copies of those paths are then not compared)")
    admin_token: SecretRef | None = Field(None, description="env:NAME holding a bearer token that GET /api/v1/parity "
                                          "of `parity serve` then requires (/healthz stays open)")
    queue: int = Field(10000, ge=1, description="pairs waiting for a diff; beyond it copies are dropped and counted")
    concurrency: int = Field(16, ge=1, description="upstream calls in flight for `parity serve`")
    diff_on: Literal["auto", "proxy", "worker"] = Field(
        "auto", description="where the built-in proxy diffs mirrored pairs: `proxy`, answers up to 16 KiB on its own "
        "event loop (least CPU in all: for busy hosts); `worker`, every pair in its parity process, the proxy only "
        "hands them over (for a host with a core to spare); `auto` (the default): as `worker` when the proxy may use "
        "3 CPUs or more (its affinity and its cgroup's quota, v2 or v1), its loop diffing what the worker cannot "
        "keep up with, else as `proxy`")
    copies_from: Literal["proxy", "worker"] = Field(
        "proxy", description="who sends the built-in proxy's copies to the candidate: `proxy`; or `worker`, its "
        "parity process, which then also diffs every pair (diff_on does not apply): the proxy hands over each request "
        "with the user's stable answer and neither writes copies nor reads the candidate's answers (for a host with a "
        "core to spare)")

    @field_validator("ignore", "unordered")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not _PATH.match(path):
                raise ValueError(f"{path!r} is not a JSON path like $.generated_at or $.items[*].etag")
        return value

    @field_validator("endpoints")
    @classmethod
    def _templates(cls, value: list[str]) -> list[str]:
        for tpl in value:
            if not tpl.startswith("/"):
                raise ValueError(f"{tpl!r}: an endpoint template starts with / (e.g. /orders/{{id}})")
        return value

    @field_validator("stable_secondary")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/]+", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/") if value else value
