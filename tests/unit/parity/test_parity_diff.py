"""The diff: canonicalisation properties, kinds, ignore/unordered/tolerance, headers and status."""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from switchover.parity.diff import DiffKind, DiffOptions, canonical, default_options, diff_answers, diff_json
from switchover.plan.parity import Parity
from tests.unit.parity.documents import get_at, leaf_paths, same_json, set_at


@dataclass(frozen=True)
class A:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)
    body: bytes = b"{}"
    error: str | None = None


def opts(**kw: Any) -> DiffOptions:
    return DiffOptions.from_parity(Parity(**kw))


scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                         max_leaves=25)


def _shuffled_dumps(value: Any, rnd: random.Random) -> str:
    """JSON text with keys in a random order and random whitespace."""
    ws = lambda: rnd.choice(["", " ", "\n  ", "\t"])  # noqa: E731
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return "{" + ",".join(f"{ws()}{json.dumps(k)}{ws()}:{ws()}{_shuffled_dumps(v, rnd)}" for k, v in items) + ws() + "}"
    if isinstance(value, list):
        return "[" + ",".join(ws() + _shuffled_dumps(v, rnd) for v in value) + ws() + "]"
    return json.dumps(value)


@settings(max_examples=200, deadline=None)
@given(documents, st.integers(0, 2**32))
def test_key_order_and_whitespace_never_matter(doc: Any, seed: int) -> None:
    rnd = random.Random(seed)
    a = A(body=_shuffled_dumps(doc, rnd).encode())
    b = A(body=_shuffled_dumps(doc, rnd).encode())
    assert diff_answers(a, b, default_options()) == []




@settings(max_examples=300, deadline=None)
@given(documents, st.data())
def test_a_real_value_change_is_always_found(doc: Any, data: st.DataObject) -> None:
    paths = leaf_paths(doc)
    path = data.draw(st.sampled_from(paths))
    old = get_at(doc, path)
    new = data.draw(scalars.filter(lambda v: not same_json(v, old)))
    changed = set_at(doc, path, new)
    diffs = diff_json(doc, changed, default_options())
    assert diffs, (doc, changed)
    assert all(d.kind in (DiffKind.CHANGED, DiffKind.TYPE) for d in diffs)




@settings(max_examples=100, deadline=None)
@given(documents)
def test_canonical_text_is_the_same_for_reordered_documents(doc: Any) -> None:
    rnd = random.Random(7)
    again = json.loads(_shuffled_dumps(doc, rnd))
    assert canonical(doc, default_options()) == canonical(again, default_options())


def test_kinds_changed_missing_extra_type_order() -> None:
    a = {"id": 1, "name": "x", "gone": True, "tags": ["a", "b"], "n": 1}
    b = {"id": 2, "name": "x", "new": None, "tags": ["b", "a"], "n": "1"}
    got = {(d.field, d.kind) for d in diff_json(a, b, default_options())}
    assert got == {("$.id", DiffKind.CHANGED), ("$.gone", DiffKind.MISSING), ("$.new", DiffKind.EXTRA),
                   ("$.tags", DiffKind.ORDER), ("$.n", DiffKind.TYPE)}


def test_indexes_collapse_in_field_names_but_not_in_where() -> None:
    a = {"items": [{"p": 1}, {"p": 2}, {"p": 3}]}
    b = {"items": [{"p": 1}, {"p": 5}, {"p": 3}]}
    [d] = diff_json(a, b, default_options())
    assert (d.field, d.where, d.stable, d.candidate) == ("$.items[*].p", "$.items[1].p", "2", "5")


def test_numbers_int_float_and_tolerance() -> None:
    assert diff_json({"a": 1}, {"a": 1.0}, default_options()) == []
    assert [d.kind for d in diff_json({"a": 1}, {"a": 1.0}, opts(int_float_equal=False))] == [DiffKind.CHANGED]
    assert diff_json({"a": 1.0}, {"a": 1.0000001}, default_options()) != []
    assert diff_json({"a": 1.0}, {"a": 1.0000001}, opts(float_tolerance=1e-6)) == []
    assert diff_json({"a": True}, {"a": 1}, default_options())[0].kind is DiffKind.TYPE


def test_ignored_paths_and_unordered_arrays() -> None:
    o = opts(ignore=["$.generated_at", "$.items[*].etag"], unordered=["$.items"])
    a = {"generated_at": "t1", "items": [{"id": 1, "etag": "x"}, {"id": 2, "etag": "y"}]}
    b = {"generated_at": "t2", "items": [{"id": 2, "etag": "q"}, {"id": 1, "etag": "z"}]}
    assert diff_json(a, b, o) == []
    b2 = {"generated_at": "t2", "items": [{"id": 2, "etag": "q"}, {"id": 3, "etag": "z"}]}
    assert [(d.field, d.kind) for d in diff_json(a, b2, o)] == [("$.items[*].id", DiffKind.CHANGED)]
    deep = opts(ignore=["$..etag"])
    assert diff_json({"x": {"etag": 1}, "etag": 2}, {"x": {"etag": 3}, "etag": 4}, deep) == []


def test_status_header_and_error_mismatches() -> None:
    o = opts(headers=["content-type", "cache-control"])
    [s] = diff_answers(A(), A(status=500), o)
    assert (s.field, s.kind, s.stable, s.candidate) == ("status", DiffKind.STATUS, "200", "500")
    h = diff_answers(A(headers=(("content-type", "application/json"), ("cache-control", "max-age=60"))),
                     A(headers=(("content-type", "application/json"),)), o)
    assert [(d.field, d.kind, d.stable, d.candidate) for d in h] == [
        ("header:cache-control", DiffKind.HEADER, "max-age=60", "")]
    # Date and Server are ignored by default even when listed.
    assert diff_answers(A(headers=(("date", "1"),)), A(headers=(("date", "2"),)),
                        opts(headers=["date", "server"])) == []
    [e] = diff_answers(A(), A(error="timeout"), o)
    assert (e.field, e.kind) == ("error", DiffKind.ERROR)


def test_non_json_bodies_and_compression() -> None:
    text = (("content-type", "text/plain"),)
    assert diff_answers(A(headers=text, body=b"hello"), A(headers=text, body=b"hello"), default_options()) == []
    [d] = diff_answers(A(headers=text, body=b"hello"), A(headers=text, body=b"hullo"), default_options())
    assert (d.field, d.kind) == ("body", DiffKind.CHANGED)
    [t] = diff_answers(A(body=b'{"a": 1}'), A(body=b"<html>oops</html>"), default_options())
    assert (t.field, t.kind) == ("body", DiffKind.TYPE)
    gz = (("content-type", "application/json"), ("content-encoding", "gzip"))
    assert diff_answers(A(body=b'{"a": 1}'), A(headers=gz, body=gzip.compress(b'{ "a" : 1 }')),
                        default_options()) == []


def test_numbers_beyond_64_bits_and_unordered_big_ints() -> None:
    big = b'{"a": 123456789012345678901234567890, "l": [1, 99999999999999999999999]}'
    assert diff_answers(A(body=big), A(body=big.replace(b"[1, ", b"[ 1,")), default_options()) == []
    [d] = diff_answers(A(body=big), A(body=big.replace(b"890,", b"891,")), default_options())
    assert (d.field, d.kind) == ("$.a", DiffKind.CHANGED)
    o = opts(unordered=["$.l"])
    assert diff_json({"l": [1, 2**70]}, {"l": [2**70, 1]}, o) == []
