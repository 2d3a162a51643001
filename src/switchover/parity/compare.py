"""One comparison: a request and its answers (stable, candidate, optionally a second stable) to a
``Comparison`` ready for the store. Pure: the time comes in with the request.

Samples keep both bodies so that people can see what differed, with ``Authorization``, ``Cookie``,
``Set-Cookie`` and the plan's ``redact_fields`` masked, and known secrets scrubbed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from switchover import secrets
from switchover.parity.diff import AnswerLike, Difference, DiffOptions, decoded_body, diff_answers
from switchover.parity.endpoints import Template, compile_template, endpoint
from switchover.parity.paths import Location, PathSet, compile_path
from switchover.plan.parity import Parity

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
ALWAYS_REDACTED = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization"})
_BODY_KEEP = 64 * 1024  # bytes of each body kept in a sample


def is_read(method: str) -> bool:
    """Requests mirrored by default: the safe methods. Writes only with ``mirror_writes: true``."""
    return method.upper() in SAFE


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query string
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


@dataclass(frozen=True)
class Sample:
    at: float
    method: str
    path: str
    request_headers: tuple[tuple[str, str], ...]
    stable_status: int
    stable_headers: tuple[tuple[str, str], ...]
    stable_body: str
    candidate_status: int
    candidate_headers: tuple[tuple[str, str], ...]
    candidate_body: str
    differences: tuple[Difference, ...]


@dataclass(frozen=True)
class Comparison:
    endpoint: str
    at: float
    differences: tuple[Difference, ...]  # stable vs candidate
    noise: tuple[Difference, ...] | None  # stable vs stable again (None: no noise comparison made)
    sample: Sample | None  # kept when the answers differ
    skipped: str | None = None  # why nothing was compared

    @property
    def compared(self) -> bool:
        return self.skipped is None


class Comparer:
    """Diffs answers the way the plan's ``parity:`` says; reusable across threads (no state)."""

    def __init__(self, parity: Parity) -> None:
        self.parity = parity
        self.options = DiffOptions.from_parity(parity)
        self.templates: tuple[Template, ...] = tuple(compile_template(t) for t in parity.endpoints)
        names = [f.lower() for f in parity.redact_fields]
        self.redact_headers = ALWAYS_REDACTED | {n for n in names if not n.startswith("$")}
        self.redact_paths = PathSet([compile_path(p) for p in parity.redact_fields if p.startswith("$")])
        self.redact_keys = {n for n in parity.redact_fields if not n.startswith("$")}

    def endpoint(self, method: str, path: str) -> str:
        return endpoint(method, path, self.templates)

    def compare(self, request: Request, stable: AnswerLike, candidate: AnswerLike,
                secondary: AnswerLike | None, at: float) -> Comparison:
        ep = self.endpoint(request.method, request.path)
        if stable.error:
            return Comparison(ep, at, (), None, None, skipped=f"stable: {stable.error}")
        diffs = tuple(diff_answers(stable, candidate, self.options))
        noise: tuple[Difference, ...] | None = None
        if secondary is not None and not secondary.error:
            noise = tuple(diff_answers(stable, secondary, self.options))
        return Comparison(ep, at, diffs, noise, None)

    def with_sample(self, comparison: Comparison, request: Request, stable: AnswerLike,
                    candidate: AnswerLike) -> Comparison:
        """The comparison with its sample (both bodies, redacted). Costly on big bodies, so callers
        build it only for the answers the store will keep (the last N per endpoint)."""
        if not comparison.differences or not self.parity.samples:
            return comparison
        return replace(comparison, sample=self.sample(request, stable, candidate, comparison.differences,
                                                      comparison.at))

    # ------------------------------------------------------------ redaction

    def _headers(self, headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        return tuple((k, secrets.MASK if k.lower() in self.redact_headers else secrets.redact(v)) for k, v in headers)

    def _body(self, answer: AnswerLike) -> str:
        body = decoded_body(answer)
        if self.redact_paths or self.redact_keys:
            try:
                doc = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                doc = None
            else:
                body = json.dumps(self._mask(doc, ()), ensure_ascii=False).encode()
        text = body[:_BODY_KEEP].decode("utf-8", errors="replace")
        return secrets.redact(text)

    def _mask(self, value: Any, loc: Location) -> Any:
        if isinstance(value, dict):
            return {k: (secrets.MASK if k in self.redact_keys or self.redact_paths.matches((*loc, k))
                        else self._mask(v, (*loc, k))) for k, v in value.items()}
        if isinstance(value, list):
            return [secrets.MASK if self.redact_paths.matches((*loc, i)) else self._mask(v, (*loc, i))
                    for i, v in enumerate(value)]
        return value

    def sample(self, request: Request, stable: AnswerLike, candidate: AnswerLike,
               diffs: tuple[Difference, ...], at: float) -> Sample:
        masked = tuple(self._mask_difference(d) for d in diffs)
        return Sample(at, request.method, secrets.redact(request.path), self._headers(request.headers),
                      stable.status, self._headers(stable.headers), self._body(stable),
                      candidate.status, self._headers(candidate.headers),
                      self._body(candidate) if not candidate.error else f"(no answer: {candidate.error})",
                      masked)

    def _mask_difference(self, d: Difference) -> Difference:
        leaf = d.where.rsplit(".", 1)[-1]
        secret_header = d.field.startswith("header:") and d.field[7:] in self.redact_headers
        if secret_header or leaf in self.redact_keys or any(d.field == p.text for p in self.redact_paths.patterns):
            return Difference(d.field, d.kind, d.where, secrets.MASK, secrets.MASK)
        return Difference(d.field, d.kind, d.where, secrets.redact(d.stable), secrets.redact(d.candidate))
