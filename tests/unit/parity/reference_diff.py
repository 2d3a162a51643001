"""The response diff as first written (kept verbatim, only for tests): the optimised diff in
``switchover.parity.diff`` must report exactly what this one does.

The response diff (pure): status, chosen headers and the body, JSON canonicalised.

Key order, whitespace and number formatting never matter (``1.0 == 1`` unless
``int_float_equal: false``); arrays named in ``unordered`` compare as multisets; ``ignore`` paths
are skipped; numbers within ``float_tolerance`` are equal. Non-JSON bodies compare as bytes.
Each difference names its field (indexes collapsed to ``[*]``) and its kind.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import orjson

from switchover.parity.paths import (
    Location,
    PathError,
    PathPattern,
    PathSet,
    compile_path,
    concrete_name,
    field_name,
)
from switchover.plan.parity import Parity

_SHOW = 160  # characters of a value kept in a difference, for people


class DiffKind(StrEnum):
    CHANGED = "changed"  # same type, other value
    MISSING = "missing"  # in stable's answer, not in the candidate's
    EXTRA = "extra"  # in the candidate's answer only
    TYPE = "type"  # JSON types differ (string vs number, JSON vs not JSON)
    ORDER = "order"  # same elements, other order
    STATUS = "status"
    HEADER = "header"
    ERROR = "error"  # the candidate gave no answer (connect, reset, timeout)


@dataclass(frozen=True)
class Difference:
    field: str  # "$.items[*].price", "status", "header:content-type", "body", "error"
    kind: DiffKind
    where: str  # the concrete location: "$.items[3].price"
    stable: str  # short JSON of each side ("" when absent)
    candidate: str

    @property
    def key(self) -> str:
        """What counts are keyed by: the field and the kind."""
        return f"{self.field}|{self.kind}"

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "kind": str(self.kind), "where": self.where,
                "stable": self.stable, "candidate": self.candidate}


class AnswerLike(Protocol):
    """What the diff needs of an answer (``traffic.proxy.hooks.Answer`` is one)."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def error(self) -> str | None: ...


@dataclass(frozen=True)
class DiffOptions:
    ignore: PathSet
    unordered: PathSet
    headers: tuple[str, ...]  # lower-case names compared
    float_tolerance: float = 0.0
    int_float_equal: bool = True

    @classmethod
    def from_parity(cls, parity: Parity) -> DiffOptions:
        skip = {h.lower() for h in parity.ignore_headers}
        return cls(
            ignore=PathSet([_compile("parity.ignore", p) for p in parity.ignore]),
            unordered=PathSet([_compile("parity.unordered", p) for p in parity.unordered]),
            headers=tuple(h.lower() for h in parity.headers if h.lower() not in skip),
            float_tolerance=parity.float_tolerance,
            int_float_equal=parity.int_float_equal,
        )


def default_options() -> DiffOptions:
    return DiffOptions.from_parity(Parity())


def _compile(where: str, text: str) -> PathPattern:
    try:
        return compile_path(text)
    except PathError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOW else text[: _SHOW - 1] + "…"


def _dumps(value: Any) -> bytes:
    """Canonical text (sorted keys, no spaces). orjson is ~14x faster than the standard library here."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits: the standard library writes them
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


# orjson reads integers beyond 64 bits as floats (losing digits): where a body holds 19 digits in
# a row, the standard library parses it. (translate + find run at C speed; a regex took 1 ms on 40 KB.)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN = b"0" * 19


def _loads(body: bytes) -> Any:
    if body.translate(_DIGITS_AS_ZERO).find(_NINETEEN) != -1:
        return json.loads(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:  # NaN, Infinity, integers beyond 64 bits: the standard library reads them
        return json.loads(body)


def _jtype(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _Walker:
    def __init__(self, opts: DiffOptions, bools: bool = True) -> None:
        self.opts = opts
        self.out: list[Difference] = []
        # Python's == calls true == 1 and (with int_float_equal off) 1 == 1.0 the same JSON; when a
        # document may hold booleans, or number types matter, equal subtrees are confirmed by text.
        self.confirm = bools or not opts.int_float_equal

    def same(self, a: Any, b: Any) -> bool:
        return a == b and (not self.confirm or _dumps(a) == _dumps(b))

    def add(self, loc: Location, kind: DiffKind, a: Any, b: Any, *, a_absent: bool = False,
            b_absent: bool = False) -> None:
        self.out.append(Difference(field_name(loc), kind, concrete_name(loc),
                                   "" if a_absent else _show(a), "" if b_absent else _show(b)))

    def walk(self, a: Any, b: Any, loc: Location) -> None:
        ta, tb = type(a), type(b)
        # Equal values are the common case: compare at C speed, descend only where they differ.
        # (`==` alone calls true == 1 equal: same type for scalars, canonical text for subtrees.)
        if ta is tb and a == b and ((ta is not dict and ta is not list) or self.same(a, b)):
            return
        if self.opts.ignore and self.opts.ignore.matches(loc):
            return
        if ta is dict and tb is dict:
            for key, value in a.items():
                if key in b:
                    bv = b[key]
                    if type(value) is type(bv) and value == bv and not isinstance(value, dict | list):
                        continue
                    self.walk(value, bv, (*loc, key))
                elif not (self.opts.ignore and self.opts.ignore.matches((*loc, key))):
                    self.add((*loc, key), DiffKind.MISSING, value, None, b_absent=True)
            for key, value in b.items():
                if key not in a and not (self.opts.ignore and self.opts.ignore.matches((*loc, key))):
                    self.add((*loc, key), DiffKind.EXTRA, None, value, a_absent=True)
            return
        if ta is list and tb is list:
            self.walk_list(a, b, loc)
            return
        ja, jb = _jtype(a), _jtype(b)
        if ja != jb:
            self.add(loc, DiffKind.TYPE, a, b)
            return
        if ja == "number":
            if not self.numbers_equal(a, b):
                self.add(loc, DiffKind.CHANGED, a, b)
            return
        if a != b:
            self.add(loc, DiffKind.CHANGED, a, b)

    def numbers_equal(self, a: float, b: float) -> bool:
        if not self.opts.int_float_equal and type(a) is not type(b):
            return False
        if a == b:
            return True
        tol = self.opts.float_tolerance
        return tol > 0 and math.isclose(a, b, rel_tol=tol, abs_tol=tol)

    def walk_list(self, a: list[Any], b: list[Any], loc: Location) -> None:
        if self.opts.unordered and self.opts.unordered.matches(loc):
            # A multiset: drop the elements both sides hold, then pair what is left in canonical order.
            ea = [(_dumps(self.canon(v, (*loc, 0))), v) for v in a]
            eb = [(_dumps(self.canon(v, (*loc, 0))), v) for v in b]
            left: dict[bytes, int] = {}
            for k, _ in eb:
                left[k] = left.get(k, 0) + 1
            only_a = []
            for k, v in sorted(ea, key=lambda kv: kv[0]):
                if left.get(k, 0):
                    left[k] -= 1
                else:
                    only_a.append(v)
            only_b = []
            for k, v in sorted(eb, key=lambda kv: kv[0]):
                if left.get(k, 0):
                    left[k] -= 1
                    only_b.append(v)
            a, b = only_a, only_b
        elif len(a) == len(b) and len(a) > 1:
            ka = [_dumps(self.canon(v, (*loc, i))) for i, v in enumerate(a)]
            kb = [_dumps(self.canon(v, (*loc, i))) for i, v in enumerate(b)]
            if ka != kb and sorted(ka) == sorted(kb):
                self.add(loc, DiffKind.ORDER, a, b)
                return
        for i in range(min(len(a), len(b))):
            self.walk(a[i], b[i], (*loc, i))
        for i in range(len(b), len(a)):
            if not (self.opts.ignore and self.opts.ignore.matches((*loc, i))):
                self.add((*loc, i), DiffKind.MISSING, a[i], None, b_absent=True)
        for i in range(len(a), len(b)):
            if not (self.opts.ignore and self.opts.ignore.matches((*loc, i))):
                self.add((*loc, i), DiffKind.EXTRA, None, b[i], a_absent=True)

    def canon(self, value: Any, loc: Location) -> Any:
        """A normalised copy: ignored paths removed, integral floats as ints, unordered arrays sorted."""
        if isinstance(value, dict):
            return {k: self.canon(v, (*loc, k)) for k, v in value.items()
                    if not (self.opts.ignore and self.opts.ignore.matches((*loc, k)))}
        if isinstance(value, list):
            items = [self.canon(v, (*loc, i)) for i, v in enumerate(value)
                     if not (self.opts.ignore and self.opts.ignore.matches((*loc, i)))]
            if self.opts.unordered and self.opts.unordered.matches(loc):
                items.sort(key=_dumps)
            return items
        if isinstance(value, float) and self.opts.int_float_equal and value.is_integer():
            return int(value)
        return value


def diff_json(a: Any, b: Any, opts: DiffOptions, bools: bool = True) -> list[Difference]:
    """Differences between two parsed JSON documents (stable first). ``bools=False`` promises that
    neither holds a boolean (a fast path: equal subtrees need no second look)."""
    walker = _Walker(opts, bools)
    walker.walk(a, b, ())
    return walker.out


def canonical(value: Any, opts: DiffOptions) -> str:
    """The canonical text of a document: equal for answers the diff calls equal (tolerance aside)."""
    return _dumps(_Walker(opts).canon(value, ())).decode()


# ---------------------------------------------------------------- whole answers


def header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in headers if k.lower() == name]
    return ", ".join(values) if values else None


def decoded_body(answer: AnswerLike) -> bytes:
    """The body with gzip/deflate content-encoding undone (so compression never counts as a change)."""
    encoding = (header(answer.headers, "content-encoding") or "").lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            return zlib.decompress(answer.body, 47 if "gzip" in encoding else 15)
        except zlib.error:
            try:
                return zlib.decompress(answer.body, -15)
            except zlib.error:
                return answer.body
    return answer.body


_NOT_JSON = object()


def _parse(body: bytes, content_type: str | None) -> Any:
    text = body.strip()
    looks = (content_type is not None and "json" in content_type.lower()) or text[:1] in (b"{", b"[")
    if not looks:
        return _NOT_JSON
    try:
        return _loads(body)
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


def _text(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    return text if len(text) <= _SHOW else text[: _SHOW - 1] + "…"


def diff_answers(stable: AnswerLike, candidate: AnswerLike, opts: DiffOptions) -> list[Difference]:
    """All differences between two answers to the same request. The stable answer must exist."""
    if candidate.error:
        return [Difference("error", DiffKind.ERROR, "error", str(stable.status), candidate.error)]
    out: list[Difference] = []
    if stable.status != candidate.status:
        # Bodies of different statuses (an error page against a JSON document) say nothing more.
        return [Difference("status", DiffKind.STATUS, "status", str(stable.status), str(candidate.status))]
    for name in opts.headers:
        sv, cv = header(stable.headers, name), header(candidate.headers, name)
        if sv != cv:
            out.append(Difference(f"header:{name}", DiffKind.HEADER, f"header:{name}", sv or "", cv or ""))
    sb, cb = decoded_body(stable), decoded_body(candidate)
    if sb == cb:
        return out
    sdoc = _parse(sb, header(stable.headers, "content-type"))
    cdoc = _parse(cb, header(candidate.headers, "content-type"))
    if sdoc is _NOT_JSON and cdoc is _NOT_JSON:
        out.append(Difference("body", DiffKind.CHANGED, "body", _text(sb), _text(cb)))
    elif sdoc is _NOT_JSON or cdoc is _NOT_JSON:
        out.append(Difference("body", DiffKind.TYPE, "body", _text(sb), _text(cb)))
    else:
        # No "true"/"false" anywhere in either text means no booleans: a cheap C-speed check.
        bools = b"true" in sb or b"false" in sb or b"true" in cb or b"false" in cb
        out.extend(diff_json(sdoc, cdoc, opts, bools))
    return out
