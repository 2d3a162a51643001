"""The response diff (pure): status, chosen headers and the body, JSON canonicalised.

Key order, whitespace and number formatting never matter (``1.0 == 1`` unless
``int_float_equal: false``); arrays named in ``unordered`` compare as multisets; ``ignore`` paths
are skipped; numbers within ``float_tolerance`` are equal. Non-JSON bodies compare as bytes.
Each difference names its field (indexes collapsed to ``[*]``) and its kind.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import orjson

from switchover.parity import rawjson
from switchover.parity.kinds import DiffKind
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

    @cached_property
    def named_headers(self) -> frozenset[str]:
        """The headers the diff reads: those compared, and the body's type and encoding."""
        return frozenset((*self.headers, "content-type", "content-encoding"))

    @cached_property
    def named_headers_raw(self) -> frozenset[bytes]:
        """The same, as the proxy holds header names (lower-cased bytes)."""
        return frozenset(n.encode("latin-1") for n in self.named_headers)

    @cached_property
    def named_lengths(self) -> frozenset[int]:
        """The lengths of those names: most headers are passed over without lower-casing them."""
        return frozenset(len(n) for n in self.named_headers_raw)

    @cached_property
    def headers_raw(self) -> tuple[bytes, ...]:
        """The headers compared, as the proxy holds their names (``rawjson.headers_agree``)."""
        return tuple(n.encode("latin-1") for n in self.headers)

    @cached_property
    def top_keys(self) -> dict[tuple[str, int], str | None]:
        """What a top-level member found by ``rawjson.changed_members`` adds (``top_keys``)."""
        return {}

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


# json.dumps with options builds a new encoder on every call; one encoder writes the same text.
_SHOW_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)


def _show(value: Any) -> str:
    text = _SHOW_ENCODER.encode(value)
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
    return _loads_standard(body)[0]


def _load_text(text: bytes | rawjson.Raw) -> Any:
    data = bytes(text)
    if len(data) < len(_NINETEEN):  # a short value (most that differ): no integer beyond 64 bits in it
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return _loads(data)


def _loads_standard(body: bytes) -> tuple[Any, bool]:
    """The document, and whether it is standard JSON read by orjson (no NaN, no huge integers)."""
    if body.translate(_DIGITS_AS_ZERO).find(_NINETEEN) != -1:
        return json.loads(body), False
    try:
        return orjson.loads(body), True
    except orjson.JSONDecodeError:  # NaN, Infinity, integers beyond 64 bits: the standard library reads them
        return json.loads(body), False


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


def _nothing_ignored(loc: Location) -> bool:
    return False


_CONFIRMS_BEFORE_SEARCH = 8  # equal subtrees confirmed by their text before the bodies are searched


class _Walker:
    shows = True  # add() writes the values: parse them for it

    def __init__(self, opts: DiffOptions, bools: bool = True, texts: tuple[bytes, bytes] | None = None,
                 standard: bool = False) -> None:
        self.opts = opts
        self.out: list[Difference] = []
        # Python's == calls true == 1 and (with int_float_equal off) 1 == 1.0 the same JSON; when a
        # document may hold booleans, or number types matter, equal subtrees are confirmed by text.
        self.confirm = bools or not opts.int_float_equal
        # With the bodies at hand, a walk that confirms many subtrees searches them once instead:
        # no "true"/"false" in either means no booleans, and nothing left to confirm.
        self._texts = texts if self.confirm and opts.int_float_equal else None
        self._confirms = 0
        # Parsed as standard JSON (no NaN, which is not equal to itself): Python's == can rule out
        # a reordering (see walk_list).
        self.standard = standard
        # Whether a place is ignored: asked for every member that differs, bound once.
        self.ignored: Callable[[Location], bool] = opts.ignore.matches if opts.ignore else _nothing_ignored

    def same(self, a: Any, b: Any) -> bool:
        if a != b:
            return False
        if not self.confirm:
            return True
        if self._texts is not None:
            self._confirms += 1
            if self._confirms > _CONFIRMS_BEFORE_SEARCH:
                sb, cb = self._texts
                self._texts = None
                if not (b"true" in sb or b"false" in sb or b"true" in cb or b"false" in cb):
                    self.confirm = False
                    return True
        # The same text (the usual case: one serialiser, one key order) says the same types too; the
        # canonical text settles the rest. Cheaper than searching whole bodies for true/false.
        try:
            if orjson.dumps(a) == orjson.dumps(b):
                return True
        except TypeError:  # integers beyond 64 bits
            pass
        return _dumps(a) == _dumps(b)

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
        if self.ignored(loc):
            return
        if ta is dict and tb is dict:
            for key, value in a.items():
                if key in b:
                    bv = b[key]
                    if type(value) is type(bv) and value == bv and (
                            not self.confirm or not isinstance(value, dict | list)):
                        continue
                    self.walk(value, bv, (*loc, key))
                elif not self.ignored((*loc, key)):
                    self.add((*loc, key), DiffKind.MISSING, value, None, b_absent=True)
            for key, value in b.items():
                if key not in a and not self.ignored((*loc, key)):
                    self.add((*loc, key), DiffKind.EXTRA, None, value, a_absent=True)
            return
        if ta is list and tb is list:
            self.walk_list(a, b, loc)
            return
        if ta is tb:  # two scalars of one type (not equal: see above), so of one JSON type
            if (ta is not int and ta is not float) or not self.numbers_equal(a, b):
                self.add(loc, DiffKind.CHANGED, a, b)
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
        elif len(a) == len(b) and len(a) > 1 and self.order_differs(a, b, loc):
            self.add(loc, DiffKind.ORDER, a, b)
            return
        confirm = self.confirm
        for i in range(min(len(a), len(b))):
            x, y = a[i], b[i]
            if type(x) is type(y) and x == y and (not confirm or not isinstance(x, dict | list)):
                continue  # what walk would return at once, without building the location
            self.walk(x, y, (*loc, i))
            confirm = self.confirm
        for i in range(len(b), len(a)):
            if not self.ignored((*loc, i)):
                self.add((*loc, i), DiffKind.MISSING, a[i], None, b_absent=True)
        for i in range(len(a), len(b)):
            if not self.ignored((*loc, i)):
                self.add((*loc, i), DiffKind.EXTRA, None, b[i], a_absent=True)

    def order_differs(self, a: list[Any], b: list[Any], loc: Location, at: Iterable[int] | None = None) -> bool:
        """Whether ``b`` holds ``a``'s elements (of the same length) in another order, by canonical
        text. ``at``: the elements' indexes in their arrays (default: 0, 1, ...)."""
        if not self.may_be_reordered(a, b, loc):
            return False
        places = range(len(a)) if at is None else list(at)
        ka = [_dumps(self.canon(v, (*loc, i))) for i, v in zip(places, a, strict=True)]
        kb = [_dumps(self.canon(v, (*loc, i))) for i, v in zip(places, b, strict=True)]
        return ka != kb and sorted(ka) == sorted(kb)

    def may_be_reordered(self, a: list[Any], b: list[Any], loc: Location) -> bool:
        """False when ``b`` cannot hold ``a``'s elements in another order: the first element that
        differs from its counterpart is nowhere in ``b``. Sound because elements with the same
        canonical text are equal by ``==``, unless an ignored or unordered path lies inside them
        (or NaN, which standard JSON cannot hold). Saves writing every element's canonical text."""
        if not self.standard or self.opts.ignore.reaches_below(loc) or self.opts.unordered.reaches_below(loc):
            return True
        for x, y in zip(a, b, strict=True):
            if x != y:
                return x in b
        return True  # equal by ==: true == 1 and 1 == 1.0 may still differ in text

    def canon(self, value: Any, loc: Location) -> Any:
        """A normalised copy: ignored paths removed, integral floats as ints, unordered arrays sorted."""
        if isinstance(value, dict):
            return {k: self.canon(v, (*loc, k)) for k, v in value.items()
                    if not self.ignored((*loc, k))}
        if isinstance(value, list):
            items = [self.canon(v, (*loc, i)) for i, v in enumerate(value)
                     if not self.ignored((*loc, i))]
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


def _named(headers: Iterable[tuple[str, str]], names: frozenset[str]) -> dict[str, str]:
    """``header(headers, name)`` for each of ``names`` that is there, in one pass."""
    found: dict[str, str] = {}
    for k, v in headers:
        lk = k.lower()
        if lk in names:
            found[lk] = found[lk] + ", " + v if lk in found else v
    return found


def _named_raw(headers: Iterable[tuple[bytes, bytes]], names: frozenset[bytes],
               lengths: frozenset[int]) -> dict[str, str]:
    """``_named`` of headers as the proxy holds them (bytes, names in any case); ``lengths``: those
    of ``names``."""
    found: dict[str, str] = {}
    for k, v in headers:
        if len(k) not in lengths:
            continue
        lk = k.lower()
        if lk in names:
            name, value = lk.decode("latin-1"), v.decode("latin-1")
            found[name] = found[name] + ", " + value if name in found else value
    return found


def decoded_body(answer: AnswerLike) -> bytes:
    """The body with gzip/deflate content-encoding undone (so compression never counts as a change)."""
    return _decoded(answer.body, header(answer.headers, "content-encoding"))


def _decoded(body: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "").lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            return zlib.decompress(body, 47 if "gzip" in encoding else 15)
        except zlib.error:
            try:
                return zlib.decompress(body, -15)
            except zlib.error:
                return body
    return body


_NOT_JSON = object()


def _parse(body: bytes, content_type: str | None) -> tuple[Any, bool]:
    """The document (``_NOT_JSON`` when it is not JSON) and whether it is standard JSON."""
    text = body.strip()
    looks = (content_type is not None and "json" in content_type.lower()) or text[:1] in (b"{", b"[")
    if not looks:
        return _NOT_JSON, False
    try:
        return _loads_standard(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nested too deep: compared as text
        return _NOT_JSON, False


def _text(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    return text if len(text) <= _SHOW else text[: _SHOW - 1] + "…"


def diff_answers(stable: AnswerLike, candidate: AnswerLike, opts: DiffOptions) -> list[Difference]:
    """All differences between two answers to the same request. The stable answer must exist."""
    found = _diff_answers(stable, candidate, opts, _Walker)
    assert found is not None  # no size limit
    out, walker = found
    if walker is not None:
        out.extend(walker.out)
    return out


def difference_keys(stable: AnswerLike, candidate: AnswerLike, opts: DiffOptions,
                    max_bytes: int | None = None) -> set[str] | None:
    """``{d.key for d in diff_answers(...)}`` without writing what each difference shows (values,
    concrete places): all that counting needs, for a fraction of the cost. With ``max_bytes``, None
    for a body above it or a compressed one (what it holds is unknown until undone)."""
    return _keys(_diff_answers(stable, candidate, opts, _KeyWalker, max_bytes))


def _keys(found: tuple[list[Difference], _Walker | None] | None) -> set[str] | None:
    """The keys of what a ``_KeyWalker`` diff found (None: not settled)."""
    if found is None:
        return None
    out, walker = found
    keys = {d.key for d in out}
    if isinstance(walker, _KeyWalker):
        keys |= walker.keys
    return keys


class _KeyWalker(_Walker):
    """The same walk, recording only the keys (field|kind) of what differs."""

    shows = False

    def __init__(self, opts: DiffOptions, bools: bool = True, texts: tuple[bytes, bytes] | None = None,
                 standard: bool = False) -> None:
        super().__init__(opts, bools, texts, standard)
        self.keys: set[str] = set()

    def add(self, loc: Location, kind: DiffKind, a: Any, b: Any, *, a_absent: bool = False,
            b_absent: bool = False) -> None:
        self.keys.add(difference_key(loc, kind))


def difference_key(loc: Location, kind: DiffKind) -> str:
    """``Difference.key`` of a difference of ``kind`` at ``loc`` (remembered: the same few places
    differ answer after answer)."""
    key = _KEYS.get((loc, kind))
    if key is None:
        key = f"{field_name(loc)}|{kind}"
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.clear()
        _KEYS[(loc, kind)] = key
    return key


_KEYS: dict[tuple[Location, DiffKind], str] = {}
_KEYS_MAX = 4096


def difference_keys_raw(stable: tuple[int, Iterable[tuple[bytes, bytes]], bytes],
                        candidate: tuple[int, Iterable[tuple[bytes, bytes]], bytes, str | None],
                        opts: DiffOptions, max_bytes: int | None = None) -> set[str] | None:
    """``difference_keys`` of answers as the proxy holds them: (status, headers, body) of stable,
    and of the candidate with its error; header bytes are decoded only for the headers read."""
    status, headers, body = stable
    c_status, c_headers, c_body, c_error = candidate
    if c_error:
        return {_ERROR_KEY}
    if status != c_status:
        return {_STATUS_KEY}
    if (rawjson.headers_agree is not None and body != c_body
            and (max_bytes is None or (len(body) <= max_bytes and len(c_body) <= max_bytes))
            and isinstance(headers, list) and isinstance(c_headers, list)
            and rawjson.headers_agree(headers, c_headers, opts.headers_raw)):
        # No header compared differs, neither body is compressed: the bodies decide.
        keys = _object_keys(body, c_body, opts)
        if keys is not None:
            return keys
    names, lengths = opts.named_headers_raw, opts.named_lengths
    sh, ch = _named_raw(headers, names, lengths), _named_raw(c_headers, names, lengths)
    if ("content-encoding" not in sh and "content-encoding" not in ch and body != c_body
            and (max_bytes is None or (len(body) <= max_bytes and len(c_body) <= max_bytes))):
        keys = _object_keys(body, c_body, opts)
        if keys is not None:
            for name in opts.headers:
                if sh.get(name) != ch.get(name):
                    keys.add(f"header:{name}|{DiffKind.HEADER}")
            return keys
    return _keys(_diff_named(sh, body, ch, c_body, opts, _KeyWalker, max_bytes))


def _object_keys(sb: bytes, cb: bytes, opts: DiffOptions) -> set[str] | None:
    """The keys of what differs between two JSON objects (bodies whose texts differ), or None when
    the general path must decide (not two objects, not valid JSON, nested too deep).

    What ``rawjson.RawWalk.objects`` and ``_KeyWalker`` find, in one function: most answers differ
    in a few top-level scalars (a timestamp, an id, a total), which are decided here; members that
    hold objects or arrays, or values of two types, go to the walk."""
    if rawjson.changed_members is not None:
        found = rawjson.changed_members(sb, cb)  # None: the compiled reader cannot tell
        if found is not None:
            top = top_keys(rawjson.kinds_of(found), opts)
            if top is not None:
                return top
    if not (rawjson.starts_object(sb) and rawjson.starts_object(cb)):
        return None
    ignored = opts.ignore.matches if opts.ignore else _nothing_ignored
    keys: set[str] = set()
    if ignored(()):
        return keys
    try:
        members = rawjson.differing_members(sb, cb)
    except rawjson.DecodeError:
        return None  # the general path says what it makes of text that is not JSON
    plain_numbers = not opts.float_tolerance  # then two numbers of one type are equal only when ==
    walk: rawjson.RawWalk | None = None
    try:
        for key, va, vb in members:
            if va is None or vb is None:
                if not ignored((key,)):
                    keys.add(difference_key((key,), DiffKind.MISSING if vb is None else DiffKind.EXTRA))
                continue
            loc: Location = (key,)
            if ignored(loc):
                continue
            if memoryview(va)[0] not in _CONTAINERS and memoryview(vb)[0] not in _CONTAINERS:
                x, y = _load_text(va), _load_text(vb)
                tx = type(x)
                if tx is type(y) and (tx is str or tx is bool or (plain_numbers and (tx is int or tx is float))):
                    if x != y:
                        keys.add(difference_key(loc, DiffKind.CHANGED))
                    continue
            if walk is None:
                walk = rawjson.RawWalk(_KeyWalker(opts, True, (sb, cb), True), _load_text)
            walk.values(va, vb, loc)
    except RecursionError:
        return None  # the general path compares documents nested too deep as text
    if walk is not None:
        assert isinstance(walk.w, _KeyWalker)
        keys |= walk.w.keys
    return keys


_CONTAINERS = frozenset(b"{[")


def top_keys(found: list[tuple[str, int]], opts: DiffOptions) -> set[str] | None:
    """The keys of the members ``rawjson.changed_members`` found, or None when one of them is for
    the walk. What each (name, kind) adds is remembered: the same few members differ again and again."""
    table = opts.top_keys
    keys: set[str] = set()
    for item in found:
        if item in table:
            key = table[item]
        else:
            key = table[item] = _top_key(item, opts)
            if len(table) > _KEYS_MAX:
                table.clear()
        if key is None:
            return None
        if key:
            keys.add(key)
    return keys


def _top_key(item: tuple[str, int], opts: DiffOptions) -> str | None:
    """The key a top-level member of a kind adds: "" when ignored, None when the walk decides."""
    name, kind = item
    loc: Location = (name,)
    if opts.ignore and (opts.ignore.matches(()) or opts.ignore.matches(loc)):
        return ""
    if kind == rawjson.MISSING:
        return difference_key(loc, DiffKind.MISSING)
    if kind == rawjson.EXTRA:
        return difference_key(loc, DiffKind.EXTRA)
    if kind in (rawjson.STRING, rawjson.BOOLEAN) or (kind == rawjson.INTEGER and not opts.float_tolerance):
        return difference_key(loc, DiffKind.CHANGED)
    return None



_ERROR_KEY = f"error|{DiffKind.ERROR}"  # the keys of _diff_answers' first two differences
_STATUS_KEY = f"status|{DiffKind.STATUS}"


def _diff_answers(stable: AnswerLike, candidate: AnswerLike, opts: DiffOptions, walker: type[_Walker],
                  max_bytes: int | None = None) -> tuple[list[Difference], _Walker | None] | None:
    """The differences found before the body's JSON, and the walker that compared the JSON (if any);
    None when ``max_bytes`` is given and a body is above it or compressed."""
    if candidate.error:
        return [Difference("error", DiffKind.ERROR, "error", str(stable.status), candidate.error)], None
    if stable.status != candidate.status:
        # Bodies of different statuses (an error page against a JSON document) say nothing more.
        return [Difference("status", DiffKind.STATUS, "status", str(stable.status), str(candidate.status))], None
    names = opts.named_headers
    return _diff_named(_named(stable.headers, names), stable.body, _named(candidate.headers, names), candidate.body,
                       opts, walker, max_bytes)


def _diff_named(sh: dict[str, str], stable_body: bytes, ch: dict[str, str], candidate_body: bytes,
                opts: DiffOptions, walker: type[_Walker],
                max_bytes: int | None) -> tuple[list[Difference], _Walker | None] | None:
    """Answers of the same status, from their named headers (``_named``) and bodies."""
    out: list[Difference] = []
    if max_bytes is not None and ("content-encoding" in sh or "content-encoding" in ch
                                  or len(stable_body) > max_bytes or len(candidate_body) > max_bytes):
        return None
    for name in opts.headers:
        sv, cv = sh.get(name), ch.get(name)
        if sv != cv:
            out.append(Difference(f"header:{name}", DiffKind.HEADER, f"header:{name}", sv or "", cv or ""))
    sb, cb = stable_body, candidate_body
    if "content-encoding" in sh or "content-encoding" in ch:
        sb, cb = _decoded(sb, sh.get("content-encoding")), _decoded(cb, ch.get("content-encoding"))
    if sb == cb:
        return out, None
    if rawjson.starts_object(sb) and rawjson.starts_object(cb):
        # Two objects: parsed only where their texts differ (rawjson.py); msgspec validates both
        # in full, so no NaN (which is not equal to itself) can be in them.
        w = walker(opts, True, (sb, cb), True)
        try:
            if not w.ignored(()):
                rawjson.RawWalk(w, _load_text).objects(sb, cb, ())
            return out, w
        except rawjson.DecodeError:
            pass  # not valid JSON: parsed below, which says so
        except RecursionError:
            return _too_deep(out, sb, cb), None
    sdoc, s_std = _parse(sb, sh.get("content-type"))
    cdoc, c_std = _parse(cb, ch.get("content-type"))
    if sdoc is _NOT_JSON and cdoc is _NOT_JSON:
        out.append(Difference("body", DiffKind.CHANGED, "body", _text(sb), _text(cb)))
    elif sdoc is _NOT_JSON or cdoc is _NOT_JSON:
        out.append(Difference("body", DiffKind.TYPE, "body", _text(sb), _text(cb)))
    else:
        w = walker(opts, True, (sb, cb), s_std and c_std)
        try:
            w.walk(sdoc, cdoc, ())
        except RecursionError:
            return _too_deep(out, sb, cb), None
        return out, w
    return out, None


def _too_deep(out: list[Difference], sb: bytes, cb: bytes) -> list[Difference]:
    """Documents nested deeper than the parsers or the walk go (~1,000 levels) compare as text."""
    out.append(Difference("body", DiffKind.CHANGED, "body", _text(sb), _text(cb)))
    return out
