"""The compiled reader of top-level members (parity/_members.c) finds what msgspec finds, and says
"cannot tell" (None) for every text msgspec would not read: the diff then reads it with msgspec."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchover.parity import rawjson
from tests.unit.parity.test_parity_quick import KEYS, _dumps, _mutate, documents

try:
    from switchover.parity._members import differing_members as native
except ImportError:  # an install without a C compiler: the diff uses msgspec alone
    native = None



def _by_msgspec(a: bytes, b: bytes) -> list[tuple[str, bytes | None, bytes | None]] | None:
    try:
        found = rawjson.members_by_msgspec(a, b)
    except rawjson.DecodeError:
        return None
    return [(k, None if va is None else bytes(va), None if vb is None else bytes(vb)) for k, va, vb in found]


def _agrees(a: bytes, b: bytes) -> list[tuple[str, bytes | None, bytes | None]] | None:
    """The native result, checked against msgspec's: equal when it has one, and msgspec fails on
    nothing it reads. Returns it."""
    assert native is not None, "the compiled reader must be built in CI (setup.py)"
    mine = native(a, b)
    if mine is not None:
        assert mine == _by_msgspec(a, b), (a, b)
    return mine


def _pair(doc: dict[str, Any], other: Any, seed: int) -> tuple[bytes, bytes]:
    rnd = random.Random(seed)
    cand = _mutate(doc, rnd, other)
    if not isinstance(cand, dict):
        cand = {"a": cand}
    return _dumps(doc, rnd).encode(), _dumps(cand, rnd).encode()


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), documents, min_size=0, max_size=8), documents, st.integers(0, 2**32))
def test_it_finds_the_members_msgspec_finds(doc: dict[str, Any], other: Any, seed: int) -> None:
    a, b = _pair(doc, other, seed)
    mine = _agrees(a, b)
    # keys shuffled by one serialiser and not the other still read (only names with escapes or two
    # members of one name are left to msgspec; these documents have neither)
    assert mine is not None, (a, b)


@settings(max_examples=1500, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), documents, min_size=1, max_size=6), documents, st.integers(0, 2**32),
       st.lists(st.tuples(st.sampled_from(["drop", "insert", "replace", "cut"]), st.integers(0, 10**6),
                          st.sampled_from([*b'{}[]",:\\ 0123456789.eE+-tfnul\x00\x1f\x7f\xc3\xff'])),
                min_size=1, max_size=3))
def test_mangled_text_is_never_read_as_something_else(doc: dict[str, Any], other: Any, seed: int,
                                                       edits: list[tuple[str, int, int]]) -> None:
    """Bytes dropped, inserted, replaced or cut from either text: whatever the reader returns,
    msgspec returns the same (it never reads invalid JSON as valid, nor past the end)."""
    a, b = _pair(doc, other, seed)
    texts = [bytearray(a), bytearray(b)]
    for i, (edit, at, byte) in enumerate(edits):
        t = texts[i % 2] if i else texts[seed % 2]
        at %= len(t) + 1
        if edit == "drop" and at < len(t):
            del t[at]
        elif edit == "insert":
            t.insert(at, byte)
        elif edit == "replace" and at < len(t):
            t[at] = byte
        elif edit == "cut":
            del t[at:]
    _agrees(bytes(texts[0]), bytes(texts[1]))


CASES: list[tuple[bytes, bytes]] = [
    (b'{"a":1}', b'{"a":2}'),
    (b'{"a":1,"b":[1,2]}', b'{"b":[1,2],"a":1,"z":null}'),  # other order, one extra
    (b'{}', b'{ }'),
    (b'{"a":1}', b'{"a":1} '),
    (b'{"a":1}', b'{"a":1}x'),  # text after the object
    (b'{"a":1}', b'{"a":1'),
    (b'{"a":1,"a":2}', b'{"a":1,"a":3}'),  # two of one name: msgspec keeps the last
    (b'{"a":1,"b":2}', b'{"b":2,"b":3}'),
    (b'{"a\\u0062":1}', b'{"ab":2}'),  # a name with an escape
    (b'{"a":"\\ud83d\\ude00"}', b'{"a":"x"}'),  # a surrogate pair
    (b'{"a":"\\ud83d"}', b'{"a":"x"}'),  # a lone surrogate
    (b'{"a":"\\ude00"}', b'{"a":"x"}'),
    (b'{"a":"\\x"}', b'{"a":"x"}'),
    (b'{"a":"\x01"}', b'{"a":"x"}'),  # a control character
    (b'{"a":01}', b'{"a":1}'),
    (b'{"a":1.}', b'{"a":1}'),
    (b'{"a":-}', b'{"a":1}'),
    (b'{"a":1e}', b'{"a":1}'),
    (b'{"a":1E+5}', b'{"a":-0.5e-3}'),
    (b'{"a":12}', b'{"a":123}'),  # the first's text is a prefix of the second's
    (b'{"a":"x"}', b'{"a":"x"y}'),
    (b'{"a":tru}', b'{"a":true}'),
    (b'{"a":[1,]}', b'{"a":[1]}'),
    (b'{"a":{"b":1,}}', b'{"a":{}}'),
    (b'{"a":[}', b'{"a":[]}'),
    (b'{"a":1,}', b'{"a":1}'),
    (b'{"a" 1}', b'{"a":1}'),
    (b'[1]', b'{"a":1}'),
    (b'', b'{}'),
    (b'{"caf\xc3\xa9":"\xc3\xa9"}', b'{"caf\xc3\xa9":"e"}'),  # a UTF-8 name: left to msgspec
    (b'{"a":"\xc3\xa9","b":1}', b'{"a":"\xc3\xa9","b":2}'),  # UTF-8 values
    (b'{"a":' + b"[" * 40 + b"]" * 40 + b"}", b'{"a":1}'),  # deeper than the reader goes
    (b'{"a":' + b"[" * 20 + b"]" * 20 + b"}", b'{"a":2}'),
    (b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(300)) + b"}", b'{"a":1}'),  # more members than it keeps
]


@pytest.mark.parametrize(("a", "b"), CASES)
def test_edge_cases_agree_with_msgspec(a: bytes, b: bytes) -> None:
    _agrees(a, b)
    _agrees(b, a)


def test_what_it_leaves_to_msgspec_is_still_read() -> None:
    """Names with escapes, two members of one name, deep nesting: None here, msgspec's answer through
    ``rawjson.differing_members``."""
    assert native is not None
    for a, b in [(b'{"a\\u0062":1}', b'{"ab":2}'), (b'{"a":1,"a":2}', b'{"a":1,"a":3}'),
                 (b'{"a":' + b"[" * 40 + b"]" * 40 + b"}", b'{"a":1}')]:
        assert native(a, b) is None
        assert [(k, va and bytes(va), vb and bytes(vb)) for k, va, vb in rawjson.differing_members(a, b)] == \
            _by_msgspec(a, b)
    assert rawjson.differing_members(b'{"a":1,"a":2}', b'{"a":3,"a":2}') == []  # msgspec keeps the last


def test_a_real_answer_pair() -> None:
    stable = {"id": 1, "status": "paid", "total_cents": 1234, "generated_at": "2026-11-27T10:00:00Z",
              "items": [{"sku": f"SKU-{i:05d}", "qty": 1 + i % 3} for i in range(30)]}
    candidate = dict(stable, total_cents=1235, generated_at="2026-11-27T10:00:01Z")
    a, b = json.dumps(stable).encode(), json.dumps(candidate).encode()
    assert _agrees(a, b) == [("total_cents", b"1234", b"1235"),
                             ("generated_at", b'"2026-11-27T10:00:00Z"', b'"2026-11-27T10:00:01Z"')]


def test_the_compiled_reader_is_built() -> None:
    """The test command builds the package (``pip install -e``, a C compiler on the machine): the
    proxy's diff must get its fast reader there, and the tests here must test it. (An install
    without a compiler still works, with msgspec alone; it is not one the tests accept.)"""
    assert native is not None and rawjson.native()


def test_changed_members_says_what_each_difference_is() -> None:
    assert rawjson.changed_members is not None
    a = b'{"s":"x","e":"\\u0078","i":10,"z":0,"f":1.5,"b":true,"n":null,"o":{"k":1},"t":"1","gone":1}'
    b = b'{"s":"y","e":"y","i":11,"z":-0,"f":1.5e0,"b":false,"n":1,"o":{"k":2},"t":1,"new":[]}'
    found = rawjson.changed_members(a, b)
    assert found is not None
    assert tuple(rawjson.kinds_of(found)) == (
        ("s", rawjson.STRING), ("e", rawjson.WALK), ("i", rawjson.INTEGER), ("z", rawjson.WALK),
        ("f", rawjson.WALK), ("b", rawjson.BOOLEAN), ("n", rawjson.WALK), ("o", rawjson.WALK),
        ("t", rawjson.WALK), ("gone", rawjson.MISSING), ("new", rawjson.EXTRA))
    assert rawjson.changed_members(a, b"[1]") is None


def test_headers_agree_only_when_the_compared_headers_have_the_same_values() -> None:
    agree = rawjson.headers_agree
    assert agree is not None
    names = (b"content-type", b"x-version")
    base = [(b"Content-Type", b"application/json"), (b"Date", b"now"), (b"x-version", b"1")]
    assert agree(base, [(b"date", b"later"), (b"X-Version", b"1"), (b"content-type", b"application/json")], names)
    assert not agree(base, [(b"Content-Type", b"application/json"), (b"x-version", b"2")], names)
    assert not agree(base, [(b"Content-Type", b"application/json")], names)  # one missing
    assert not agree(base, [*base, (b"X-Version", b"1")], names)  # twice on one side
    assert not agree([*base, (b"Content-Encoding", b"gzip")], base, names)  # the body must be decoded first
    assert not agree(base, [("Content-Type", "application/json")], names)  # type: ignore[list-item]
    assert agree(base, base, ())
