"""The cheap path: what the built-in proxy diffs on its own event loop.

Counting needs only each differing field's key (field|kind) and the endpoint; the full diff also
writes what each difference shows (values, concrete places) and samples with redaction. So for
answers up to ``QUICK_MAX_BYTES`` the proxy runs the same walk recording only keys
(``diff.difference_keys``: equal bodies are one memcmp, equal subtrees are one C-speed ``==``) and
adds them to ``Counts``, which go to the store in batches. What it cannot settle cheaply returns
``None`` and goes to the worker process: a stable answer missing (skipped), a compressed or large
body. Results are the full diff's: the unit tests compare both on generated answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from switchover.parity import rawjson
from switchover.parity.compare import Comparer
from switchover.parity.diff import AnswerLike, difference_keys, difference_keys_raw, top_keys
from switchover.traffic.proxy.hooks import RawPair

QUICK_MAX_BYTES = 64 * 1024  # per body (the proxy's copy cap): two 50 KB answers that differ in a few members take ~50 us
_ENDPOINTS_MAX = 4096  # distinct (method, path) remembered
_METHODS_MAX = 64  # distinct methods remembered (a client may send any token)
_FOUND_MAX = 4096  # distinct combinations of differing members remembered


@dataclass
class Counts:
    """What ``MismatchStore.record`` would add for a run of comparisons without noise, summed:
    per endpoint [compared, first at, last at], per endpoint and sorted keys (field|kind) the
    answers that differed in exactly those (``signatures``), and from them per (endpoint, key) the
    answers that differed in it (``fields``). Kept per endpoint, per keys: adding a comparison makes
    no new object (the proxy adds one per mirrored pair, on its loop)."""

    endpoints: dict[str, list[float]] = field(default_factory=dict)
    differing: dict[str, dict[tuple[str, ...], int]] = field(default_factory=dict)  # endpoint: keys: answers
    skipped: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (endpoint, why): [n, first, last]
    compared: int = 0

    def __bool__(self) -> bool:
        return self.compared > 0 or bool(self.skipped)

    @property
    def signatures(self) -> dict[tuple[str, tuple[str, ...]], int]:
        """Per (endpoint, sorted keys): the answers that differed in exactly those."""
        return {(ep, keys): n for ep, by_keys in self.differing.items() for keys, n in by_keys.items()}

    @property
    def fields(self) -> dict[tuple[str, str], int]:
        """Per (endpoint, key): the answers that differed in it."""
        out: dict[tuple[str, str], int] = {}
        for ep, by_keys in self.differing.items():
            for keys, n in by_keys.items():
                for key in keys:
                    out[(ep, key)] = out.get((ep, key), 0) + n
        return out

    def merge(self, other: Counts) -> None:
        """Add counts summed elsewhere."""
        self.compared += other.compared
        _add_spans(self.endpoints, other.endpoints)
        _add_spans(self.skipped, other.skipped)
        for ep, by_keys in other.differing.items():
            mine = self.differing.setdefault(ep, {})
            for keys, n in by_keys.items():
                mine[keys] = mine.get(keys, 0) + n

    def skip(self, endpoint: str, at: float, reason: str) -> None:
        """A pair of ``endpoint`` not compared, and why (``too_large``)."""
        s = self.skipped.get((endpoint, reason))
        if s is None:
            self.skipped[(endpoint, reason)] = [1, at, at]
        else:
            s[0] += 1
            s[1], s[2] = min(s[1], at), max(s[2], at)

    def add(self, endpoint: str, at: float, keys: tuple[str, ...]) -> None:
        """One comparison of ``endpoint`` at ``at`` that differed in ``keys`` (sorted; empty: equal)."""
        self.compared += 1
        ep = self.endpoints.get(endpoint)
        if ep is None:
            self.endpoints[endpoint] = [1, at, at]
        else:
            ep[0] += 1
            if at < ep[1]:
                ep[1] = at
            if at > ep[2]:
                ep[2] = at
        if keys:
            by_keys = self.differing.get(endpoint)
            if by_keys is None:
                by_keys = self.differing[endpoint] = {}
            by_keys[keys] = by_keys.get(keys, 0) + 1


def _add_spans(mine: dict[Any, list[float]], other: dict[Any, list[float]]) -> None:
    """Add [count, first at, last at] entries of ``other`` to ``mine``."""
    for key, (n, first, last) in other.items():
        span = mine.get(key)
        if span is None:
            mine[key] = [n, first, last]
        else:
            span[0] += n
            span[1], span[2] = min(span[1], first), max(span[2], last)


class QuickDiff:
    """Keys of the differences between two answers, as ``Comparer.compare`` would find them."""

    def __init__(self, comparer: Comparer, max_bytes: int = QUICK_MAX_BYTES) -> None:
        self.comparer = comparer
        self.options = comparer.options
        self.max_bytes = max_bytes
        self._endpoints: dict[tuple[str, str], str] = {}
        self._raw_endpoints: dict[bytes, dict[bytes, str]] = {}  # method: target: endpoint
        # The compiled reader's fast path (keys_raw): what each combination of members found adds.
        self._changed = rawjson.changed_members
        self._headers_agree = rawjson.headers_agree
        self._names = self.options.headers_raw
        self._found: dict[str, tuple[str, ...] | None] = {}  # by changed_members' signature

    def endpoint(self, method: str, path: str) -> str:
        """``Comparer.endpoint``, remembered: the same paths come again and again."""
        key = (method, path)
        ep = self._endpoints.get(key)
        if ep is None:
            ep = self.comparer.endpoint(method, path)
            if len(self._endpoints) >= _ENDPOINTS_MAX:
                self._endpoints.clear()
            self._endpoints[key] = ep
        return ep

    def endpoint_raw(self, method: bytes, target: bytes) -> str:
        """``endpoint`` of the method and target as the proxy holds them (per method, per target:
        no key to build for each pair)."""
        by_target = self._raw_endpoints.get(method)
        if by_target is None:
            if len(self._raw_endpoints) >= _METHODS_MAX:
                self._raw_endpoints.clear()
            by_target = self._raw_endpoints[method] = {}
        ep = by_target.get(target)
        if ep is None:
            ep = self.endpoint(method.decode("latin-1"), target.decode("latin-1"))
            if len(by_target) >= _ENDPOINTS_MAX:
                by_target.clear()
            by_target[target] = ep
        return ep

    def keys_raw(self, raw: RawPair) -> tuple[str, ...] | None:
        """``keys`` of a pair as the proxy holds it (``hooks.RawPair``), decoding nothing it need not."""
        if raw[9] or len(raw[7]) > self.max_bytes or len(raw[12]) > self.max_bytes:
            return None
        changed, agree = self._changed, self._headers_agree
        if changed is not None and agree is not None and not raw[14] and raw[5] == raw[10]:
            # Most pairs: two JSON objects that differ in a few top-level scalars, the compared
            # headers the same. The compiled reader names the members (rawjson.py); what each
            # combination of them adds is remembered.
            sb, cb = raw[7], raw[12]
            if sb != cb and isinstance(raw[6], list) and isinstance(raw[11], list) and \
                    agree(raw[6], raw[11], self._names):
                found = changed(sb, cb)
                if found is not None:
                    if found in self._found:
                        known = self._found[found]
                    else:
                        top = top_keys(rawjson.kinds_of(found), self.options)
                        known = None if top is None else tuple(sorted(top))
                        if len(self._found) >= _FOUND_MAX:
                            self._found.clear()
                        self._found[found] = known
                    if known is not None:
                        return known
        keys = difference_keys_raw((raw[5], raw[6], raw[7]), (raw[10], raw[11], raw[12], raw[14]), self.options,
                                   self.max_bytes)
        return None if keys is None else tuple(sorted(keys))

    def may_take(self, stable: AnswerLike, candidate: AnswerLike) -> bool:
        """False for what ``keys`` surely leaves to the full path (read before anything else)."""
        return not stable.error and len(stable.body) <= self.max_bytes and len(candidate.body) <= self.max_bytes

    def keys(self, stable: AnswerLike, candidate: AnswerLike) -> tuple[str, ...] | None:
        """The sorted keys (field|kind) of the differences, or None when the full path must decide."""
        if stable.error:
            return None  # not compared: the worker counts it as skipped
        if len(stable.body) > self.max_bytes or len(candidate.body) > self.max_bytes:
            return None  # the common case for large answers, settled before reading any header
        keys = difference_keys(stable, candidate, self.options, self.max_bytes)
        return None if keys is None else tuple(sorted(keys))
