"""What the proxy hands to parity (DESIGN.md: "the built-in proxy diffs in place").

When a request was mirrored and both answers are complete (bodies within the copy cap), the proxy
calls ``MirrorSink.submit(pair)`` from its event loop. A sink must return at once (queue the work,
diff off the loop, drop and count when full): the user's request is never delayed by parity.

A sink that also has ``submit_raw(raw)`` is given the pair as the proxy holds it (``RawPair``: bytes
as parsed, nothing decoded, no object built), which costs the proxy's loop a fraction of a
``MirrorPair``; ``pair_from_raw`` makes the ``MirrorPair`` wherever the sink diffs.

A sink whose ``sends_copies`` is true (``CopyingSink``; the parity sink with
``parity.copies_from: worker``) sends the copies itself: the proxy tells it where once
(``send_copies_to``) and then hands over each mirrored request with the user's stable answer
(``submit_copy(RawCopy)``), and sends no copy of its own. ``skip`` also says ``stopped`` for copies
given up as the proxy stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from switchover.traffic.proxy.shared import HelperBlock

RawHeaders = list[tuple[bytes, bytes]]
# method, target, request headers, request body, arrival (epoch seconds),
# stable's status, headers, body, latency, error kind; then the candidate's.
RawPair = tuple[bytes, bytes, RawHeaders, bytes, float,
                int, RawHeaders, bytes, float, str | None,
                int, RawHeaders, bytes, float, str | None]
# A sink with ``sends_copies`` gets, instead, the request and the stable answer (the first ten fields
# of a ``RawPair``) and the copy to send, as bytes (``x-switchover-shadow: 1`` added): ``submit_copy``.
RawCopy = tuple[bytes, bytes, RawHeaders, bytes, float, int, RawHeaders, bytes, float, str | None, bytes]


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


@dataclass(frozen=True)
class CopyTarget:
    """Where and how a sink that sends the copies sends them: the proxy's candidate and mirror limits."""

    url: str
    cap: int  # bytes of an answer kept for the diff (the copy cap)
    response_timeout: float
    connect_timeout: float
    max_in_flight: int
    batch_wait: float
    # The sink's block of the proxy's counters (shared.py): what came of its copies counts in the
    # proxy's ``shadow`` role and mirror counters. None: the proxy counts copies as handed over.
    counters: HelperBlock | None = None


class MirrorSink(Protocol):
    def submit(self, pair: MirrorPair) -> None:
        """Take one pair; must not block."""

    def skip(self, method: str, path: str, at: float, reason: str) -> None:
        """A mirrored request whose answers will not be compared: ``too_large`` when an answer is
        above the copy cap (not buffered). Counted, so that reports say what was never diffed."""

    def report(self) -> dict[str, Any]:
        """JSON for the admin API's GET /api/v1/parity."""

    def close(self) -> None: ...


class CopyingSink(MirrorSink, Protocol):
    """A sink whose ``sends_copies`` is true sends the copies itself: the proxy tells it where once
    (``send_copies_to``) and then hands over each request with the user's stable answer."""

    sends_copies: bool

    def send_copies_to(self, target: CopyTarget) -> None: ...

    def submit_copy(self, copy: RawCopy) -> None: ...


def pair_from_raw(r: RawPair) -> MirrorPair:
    """The ``MirrorPair`` of what the proxy held: names lower-cased, bytes read as Latin-1 (HTTP's
    own), request headers without value left out (the proxy's placeholder for a missing Host)."""
    return MirrorPair(r[0].decode("latin-1"), r[1].decode("latin-1"), decode_headers([h for h in r[2] if h[1]]), r[3],
                      Answer(r[5], decode_headers(r[6]), r[7], r[8], r[9]),
                      Answer(r[10], decode_headers(r[11]), r[12], r[13], r[14]), r[4])


def raw_from_pair(p: MirrorPair) -> RawPair:
    """The inverse of ``pair_from_raw`` (for callers that hold a ``MirrorPair``)."""
    s, c = p.stable, p.candidate
    return (p.method.encode("latin-1"), p.path.encode("latin-1"), _encode(p.headers), p.body, p.at,
            s.status, _encode(s.headers), s.body, s.latency, s.error,
            c.status, _encode(c.headers), c.body, c.latency, c.error)


def _encode(headers: tuple[tuple[str, str], ...]) -> RawHeaders:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def decode_headers(headers: RawHeaders) -> tuple[tuple[str, str], ...]:
    """Names lower-cased, both decoded. Most headers come again and again (Server, Content-Type,
    the same Date for a second): decoded once, remembered (~0.5 us less per answer of 8 headers)."""
    seen = _DECODED.get
    return tuple([seen(h) or _decode(h) for h in headers])


_DECODED: dict[tuple[bytes, bytes], tuple[str, str]] = {}
_DECODED_MAX = 4096  # distinct headers remembered
_NOT_REMEMBERED = frozenset(("authorization", "cookie", "set-cookie", "proxy-authorization"))


def _decode(header: tuple[bytes, bytes]) -> tuple[str, str]:
    decoded = (header[0].decode("latin-1").lower(), header[1].decode("latin-1"))
    if decoded[0] not in _NOT_REMEMBERED:  # credentials are not kept beyond their request
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[header] = decoded
    return decoded
