"""What a probe reports: a named check with pass / fail / warn and the reason, for people and JSON."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from switchover import secrets


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "candidate.ready", "dns.ttl api.example.com @10.0.0.2"
    status: Status
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": str(self.status), "reason": secrets.redact(self.reason)}
