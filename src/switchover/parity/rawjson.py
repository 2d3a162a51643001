"""The diff's walk over JSON text, parsing only where the two answers differ.

Two answers to the same request are mostly the same bytes: a timestamp or a request id differs,
rarely a real field. Parsing both documents in full (orjson: ~8 µs for two 2 KB answers, ~27 µs
inside a busy proxy) is most of what a diff costs. msgspec reads an object's members as ``Raw``
slices of the text without building them (validating as it goes); members whose texts are the same
bytes are equal whatever the options (ignored paths, tolerance, order), so only the members whose
texts differ are looked at: objects member by member, arrays element by element, and the rest
parsed and handed to the walker, which compares them exactly as it compares whole documents.

The results are the walker's own (``tests/unit/parity/test_parity_rawjson.py`` compares both on
generated documents): a reordering is found from the elements whose texts differ (the others are
the same on both sides), and ``walk`` decides every value that is not an object or an array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from switchover.parity.kinds import DiffKind
from switchover.parity.paths import Location, PathSet

OBJECT = msgspec.json.Decoder(dict[str, msgspec.Raw])  # an object's members as texts
_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_OPEN_OBJECT, _OPEN_ARRAY = ord("{"), ord("[")

DecodeError = msgspec.DecodeError
Raw = msgspec.Raw
Text = bytes | msgspec.Raw
Member = tuple[str, Text | None, Text | None]  # a name, and its value's text on each side (None: absent)

# What ``changed_members`` says of a member: two strings without escapes, two integers, true and
# false (values that differ whatever the options, but a float tolerance for integers), or the walk
# decides; missing from the second text; only in the second.
STRING, INTEGER, BOOLEAN, WALK, MISSING, EXTRA = range(6)

_native: Callable[[Text, Text], list[Member] | None] | None = None
changed_members: Callable[[Text, Text], str | None] | None = None  # a signature: ``kinds_of`` reads it
headers_agree: Callable[[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], tuple[bytes, ...]], bool] | None = None
try:  # the compiled reader (setup.py); without it, msgspec alone: the same results, slower
    from switchover.parity import _members
except ImportError:  # pragma: no cover - an install without a C compiler
    pass
else:
    if _members.VERSION == 1:
        _native, changed_members, headers_agree = (_members.differing_members, _members.changed_members,
                                                   _members.headers_agree)


def kinds_of(signature: str) -> list[tuple[str, int]]:
    """(name, kind) of each member in what ``changed_members`` returns (name NUL kind NUL, ...)."""
    parts = signature.split("\0")
    return [(parts[i], int(parts[i + 1])) for i in range(0, len(parts) - 1, 2)]


def differing_members(a: Text, b: Text) -> list[Member]:
    """The members of two JSON objects (UTF-8 texts) whose texts differ: (name, a's text, b's text),
    a's in a's order with None for b's when b lacks it, then b's own with None for a's. Read by
    ``_members.c`` when it can tell, else by msgspec (raises ``DecodeError`` when one is not a valid
    JSON object)."""
    if _native is not None:
        found = _native(a, b)
        if found is not None:
            return found
    return members_by_msgspec(a, b)


def members_by_msgspec(a: Text, b: Text) -> list[Member]:
    """``differing_members`` read by msgspec alone."""
    ma, mb = OBJECT.decode(a), OBJECT.decode(b)
    out: list[Member] = []
    for key, va in ma.items():
        vb = mb.get(key)
        if va != vb:
            out.append((key, va, vb))
    for key, vb in mb.items():
        if key not in ma:
            out.append((key, None, vb))
    return out


def native() -> bool:
    """Whether the compiled reader is there (the benchmarks say so; the tests in CI require it)."""
    return _native is not None


class Options(Protocol):
    @property
    def ignore(self) -> PathSet: ...
    @property
    def unordered(self) -> PathSet: ...


class Walker(Protocol):
    """What ``diff._Walker`` offers this walk."""

    shows: bool  # whether ``add`` uses the values (else they are not parsed)

    @property
    def opts(self) -> Options: ...

    def ignored(self, loc: Location) -> bool: ...
    def walk(self, a: Any, b: Any, loc: Location) -> None: ...
    def add(self, loc: Location, kind: DiffKind, a: Any, b: Any, *, a_absent: bool = False,
            b_absent: bool = False) -> None: ...
    def order_differs(self, a: list[Any], b: list[Any], loc: Location, at: list[int]) -> bool: ...


class RawWalk:
    """One walk; ``load`` parses a text as the diff does (orjson, the standard library for what
    orjson cannot read exactly)."""

    def __init__(self, walker: Walker, load: Callable[[bytes | msgspec.Raw], Any]) -> None:
        self.w = walker
        self.load = load

    def objects(self, a: bytes | msgspec.Raw, b: bytes | msgspec.Raw, loc: Location) -> None:
        """Two JSON objects whose texts differ (raises ``DecodeError`` when one is not valid JSON)."""
        w = self.w
        for key, va, vb in differing_members(a, b):
            if va is not None and vb is not None:
                self.values(va, vb, (*loc, key))
            elif va is not None:
                if not w.ignored((*loc, key)):
                    w.add((*loc, key), DiffKind.MISSING, self.show(va), None, b_absent=True)
            elif vb is not None and not w.ignored((*loc, key)):
                w.add((*loc, key), DiffKind.EXTRA, None, self.show(vb), a_absent=True)

    def values(self, a: Text, b: Text, loc: Location) -> None:
        """Two values whose texts differ."""
        w = self.w
        if w.ignored(loc):
            return
        ka, kb = memoryview(a)[0], memoryview(b)[0]
        if ka == kb == _OPEN_OBJECT:
            self.objects(a, b, loc)
        elif ka == kb == _OPEN_ARRAY and not (w.opts.unordered and w.opts.unordered.matches(loc)):
            self.arrays(a, b, loc)
        else:  # scalars, different types, multisets: the walker decides
            w.walk(self.load(a), self.load(b), loc)

    def arrays(self, a: Text, b: Text, loc: Location) -> None:
        """Two ordered arrays whose texts differ."""
        w = self.w
        la, lb = _ARRAY.decode(a), _ARRAY.decode(b)
        n = min(len(la), len(lb))
        differ = [i for i in range(n) if la[i] != lb[i]]
        parsed: dict[int, tuple[Any, Any]] = {}
        if differ and len(la) == len(lb) and n > 1:
            # Elements with the same text are the same on both sides: only those whose texts differ
            # can make the arrays a reordering of each other.
            for i in differ:
                parsed[i] = (self.load(la[i]), self.load(lb[i]))
            xa = [parsed[i][0] for i in differ]
            xb = [parsed[i][1] for i in differ]
            if w.order_differs(xa, xb, loc, differ):
                w.add(loc, DiffKind.ORDER, self.show(a), self.show(b))
                return
        for i in differ:
            if i in parsed:
                x, y = parsed[i]
                w.walk(x, y, (*loc, i))
            else:
                self.values(la[i], lb[i], (*loc, i))
        for i in range(len(lb), len(la)):
            if not w.ignored((*loc, i)):
                w.add((*loc, i), DiffKind.MISSING, self.show(la[i]), None, b_absent=True)
        for i in range(len(la), len(lb)):
            if not w.ignored((*loc, i)):
                w.add((*loc, i), DiffKind.EXTRA, None, self.show(lb[i]), a_absent=True)

    def show(self, raw: bytes | msgspec.Raw) -> Any:
        return self.load(raw) if self.w.shows else None


def starts_object(body: bytes) -> bool:
    """Whether ``body`` may be read by ``RawWalk.objects`` (text that starts an object, valid UTF-8:
    msgspec does not check the UTF-8 of strings it skips, and the diff calls such text not JSON)."""
    if body[:1] != b"{":
        return False
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
