"""What the proxy hands to parity (DESIGN.md: "the built-in proxy diffs in place").

When a request was mirrored and both answers are complete (bodies within the copy cap), the proxy
calls ``MirrorSink.submit(pair)`` from its event loop. A sink must return at once (queue the work,
diff off the loop, drop and count when full): the user's request is never delayed by parity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]  # as received, names lower-cased
    body: bytes
    latency: float  # seconds
    error: str | None = None  # "connect", "reset", "timeout" when there was no answer


@dataclass(frozen=True)
class MirrorPair:
    method: str
    path: str  # with the query string
    headers: tuple[tuple[str, str], ...]  # the user's request headers, names lower-cased
    body: bytes
    stable: Answer  # the answer the user got
    candidate: Answer  # the mirrored copy's answer, never sent to the user
    at: float  # epoch seconds when the request arrived


class MirrorSink(Protocol):
    def submit(self, pair: MirrorPair) -> None:
        """Take one pair; must not block."""

    def skip(self, method: str, path: str, at: float, reason: str) -> None:
        """A mirrored request whose answers will not be compared: ``too_large`` when an answer is
        above the copy cap (not buffered). Counted, so that reports say what was never diffed."""

    def report(self) -> dict[str, Any]:
        """JSON for the admin API's GET /api/v1/parity."""

    def close(self) -> None: ...
