"""The response diff's walk as first written (kept verbatim, only for tests): the optimised diff in
``switchover.parity.diff`` must report exactly what this one does. What is not the walk (the kinds,
options, differences, the text of values, headers and bodies) is the diff's own, imported.

The response diff (pure): status, chosen headers and the body, JSON canonicalised.

Key order, whitespace and number formatting never matter (``1.0 == 1`` unless
``int_float_equal: false``); arrays named in ``unordered`` compare as multisets; ``ignore`` paths
are skipped; numbers within ``float_tolerance`` are equal. Non-JSON bodies compare as bytes.
Each difference names its field (indexes collapsed to ``[*]``) and its kind.
"""

from __future__ import annotations

import math
from typing import Any

from switchover.parity.diff import (  # what the walk is not: kinds, options, the text of values
    AnswerLike,
    Difference,
    DiffKind,
    DiffOptions,
    _dumps,
    _jtype,
    _loads,
    _show,
    _text,
    decoded_body,
    header,
)
from switchover.parity.paths import Location, concrete_name, field_name


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
