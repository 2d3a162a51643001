"""Who goes where: the weighted split, sticky hashing, and sampling for mirrors. Pure functions.

A sticky user's key hashes to a point h in [0, 100); the user is on the candidate iff h < weight.
Raising the weight only ever adds users to the candidate (monotone by construction), and with the
weight unchanged the same key always lands on the same side.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

_SCALE = 100.0 / 2.0**64


def sticky_point(key: bytes) -> float:
    """The key's fixed point in [0, 100). blake2b: stable across processes and versions (unlike hash())."""
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") * _SCALE


def on_candidate(weight: int, point: float) -> bool:
    """Whether a user at ``point`` in [0, 100) goes to the candidate at ``weight`` percent."""
    return point < weight


def cookie_value(header: bytes, name: str) -> bytes | None:
    """The value of cookie ``name`` in a Cookie header, or None."""
    text = header.decode("latin-1")
    prefix = name + "="
    # Fast path for the common well-formed header; SimpleCookie for quoted values.
    for part in text.split(";"):
        part = part.strip()
        if part.startswith(prefix):
            value = part[len(prefix):]
            if value.startswith('"'):
                try:
                    jar: SimpleCookie = SimpleCookie()
                    jar.load(part)
                    return jar[name].value.encode("latin-1") if name in jar else None
                except CookieError:
                    return None
            return value.encode("latin-1")
    return None


@dataclass(frozen=True)
class Split:
    """The split in force: candidate weight and mirror share, both in percent (0-100)."""

    candidate_weight: int = 0
    mirror_percent: int = 0

    def to_json(self) -> dict[str, int]:
        return {"candidate_weight": self.candidate_weight, "mirror_percent": self.mirror_percent}


def parse_split_update(current: Split, body: object) -> Split:
    """A PUT /api/v1/split body applied to ``current``; ValueError with a reason on bad input."""
    if not isinstance(body, dict):
        raise ValueError('expected a JSON object, e.g. {"candidate_weight": 25}')
    unknown = sorted(set(body) - {"candidate_weight", "mirror_percent"})
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}; expected candidate_weight and/or mirror_percent")
    if not body:
        raise ValueError("give candidate_weight and/or mirror_percent")
    values = {"candidate_weight": current.candidate_weight, "mirror_percent": current.mirror_percent}
    for name, value in body.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer 0-100, got {value!r}")
        if not 0 <= value <= 100:
            raise ValueError(f"{name} must be within 0-100, got {value}")
        values[name] = value
    return Split(**values)
