"""The walk over JSON text (rawjson.py) finds exactly what parsing both documents in full finds."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from switchover.parity import diff
from switchover.parity.diff import DiffOptions, diff_answers, difference_keys
from switchover.plan.parity import Parity
from switchover.traffic.proxy.hooks import Answer
from tests.unit.parity import reference_diff
from tests.unit.parity.test_parity_quick import KEYS, _mutate, documents, options

JSON_CT = (("content-type", "application/json"),)


def parity_options(ignore: tuple[str, ...] = (), unordered: tuple[str, ...] = (), float_tolerance: float = 0.0,
                   int_float_equal: bool = True) -> DiffOptions:
    return DiffOptions.from_parity(Parity(ignore=list(ignore), unordered=list(unordered),
                                          float_tolerance=float_tolerance, int_float_equal=int_float_equal))


def _text(value: Any, rnd: random.Random, spaced: float) -> str:
    """One serialiser for both sides (as services write), now and then a space or a float as 1.0."""
    ws = lambda: " " if rnd.random() < spaced else ""  # noqa: E731
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{ws()}{_text(v, rnd, spaced)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(ws() + _text(v, rnd, spaced) for v in value) + "]"
    return json.dumps(value)


def _full(stable: bytes, candidate: bytes, opts: DiffOptions) -> list[dict[str, str]]:
    """What the walker finds when it is given both documents parsed in full."""
    a, b = diff._loads_standard(stable), diff._loads_standard(candidate)
    walker = diff._Walker(opts, True, (stable, candidate), a[1] and b[1])
    walker.walk(a[0], b[0], ())
    return [d.to_json() for d in walker.out]


def _answers(stable: bytes, candidate: bytes) -> tuple[Answer, Answer]:
    return Answer(200, JSON_CT, stable, 0.0), Answer(200, JSON_CT, candidate, 0.0)


@settings(max_examples=800, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), documents, min_size=1, max_size=6), documents, options,
       st.integers(0, 2**32))
def test_parsing_only_what_differs_finds_what_parsing_everything_finds(doc: dict[str, Any], other: Any, o: Any,
                                                                       seed: int) -> None:
    rnd = random.Random(seed)
    opts = parity_options(ignore=o.ignore, unordered=o.unordered, float_tolerance=o.float_tolerance,
                          int_float_equal=o.int_float_equal)
    cand = _mutate(doc, rnd, other)
    if rnd.random() < 0.3:  # long arrays of similar elements: reorderings, one element changed
        items = [doc, other] * rnd.randrange(1, 5) + [cand]
        doc = {"id": 7, "items": items}
        moved = [items[i] for i in rnd.sample(range(len(items)), len(items))]
        cand = {"id": 7, "items": moved if rnd.random() < 0.5 else [*items[:-1], _mutate(items[-1], rnd, other)]}
    spaced = rnd.choice([0.0, 0.0, 0.05])
    stable_text = _text(doc, random.Random(seed), spaced).encode()
    cand_text = _text(cand, random.Random(seed), spaced).encode()
    if stable_text == cand_text:
        return
    stable, candidate = _answers(stable_text, cand_text)
    got = [d.to_json() for d in diff_answers(stable, candidate, opts)]
    assert got == _full(stable_text, cand_text, opts), (stable_text, cand_text)
    ref = reference_diff.diff_answers(stable, candidate, reference_diff.DiffOptions(
        ignore=opts.ignore, unordered=opts.unordered, headers=opts.headers,
        float_tolerance=opts.float_tolerance, int_float_equal=opts.int_float_equal))
    assert got == [d.to_json() for d in ref]
    assert difference_keys(stable, candidate, opts) == {f"{d['field']}|{d['kind']}" for d in got}


def test_only_the_member_that_changed_is_reported_in_a_large_answer() -> None:
    items = [{"sku": f"SKU-{i}", "qty": i % 3, "price": 1.5 * i, "tags": ["a", "b"]} for i in range(300)]
    stable = {"id": 1, "generated_at": "10:00:00", "items": items, "total": 100}
    moved = [*items]
    moved[150] = {**items[150], "qty": 99}
    candidate = {"id": 1, "generated_at": "10:00:01", "items": moved, "total": 100}
    opts = parity_options(ignore=("$.generated_at",))
    got = diff_answers(*_answers(json.dumps(stable).encode(), json.dumps(candidate).encode()), opts)
    assert [(d.field, d.kind, d.where, d.stable, d.candidate) for d in got] == [
        ("$.items[*].qty", "changed", "$.items[150].qty", "0", "99")]


def test_a_reordering_among_equal_elements_is_an_order_difference() -> None:
    items = [{"n": i} for i in range(20)]
    swapped = [*items]
    swapped[3], swapped[17] = swapped[17], swapped[3]
    got = diff_answers(*_answers(json.dumps({"items": items}).encode(), json.dumps({"items": swapped}).encode()),
                       parity_options())
    assert [(d.field, d.kind) for d in got] == [("$.items", "order")]


def test_formatting_alone_is_never_a_difference() -> None:
    stable = b'{"a": {"b": [1, 2.0, "x"]}, "c": "\\u00e9"}'
    candidate = '{"c":"é","a":{"b":[1.0,2,"x"]}}'.encode()
    assert diff_answers(*_answers(stable, candidate), parity_options()) == []


def test_text_that_is_not_json_is_reported_as_the_full_parse_reports_it() -> None:
    bad_utf8 = b'{"a": "\xff", "b": 1}'  # msgspec skips strings without checking their UTF-8
    good = b'{"a": "x", "b": 1}'
    nan = b'{"a": NaN, "b": 1}'
    huge = b'{"a": 123456789012345678901234567890, "b": 1}'
    opts = parity_options()
    for stable, candidate in ((good, bad_utf8), (good, nan), (good, huge), (huge, huge.replace(b"90,", b"91,"))):
        got = [d.to_json() for d in diff_answers(*_answers(stable, candidate), opts)]
        ref = reference_diff.diff_answers(*_answers(stable, candidate), reference_diff.DiffOptions(
            ignore=opts.ignore, unordered=opts.unordered, headers=opts.headers))
        assert got == [d.to_json() for d in ref], (stable, candidate)
        assert got  # each pair differs


def test_documents_nested_too_deep_to_walk_compare_as_text() -> None:
    opts = parity_options()
    for depth in (900, 3000):  # deeper than the walk (Python's recursion), deeper than the parsers
        stable = ('{"a":' + "[" * depth + "1" + "]" * depth + "}").encode()
        candidate = stable.replace(b"1", b"2")
        got = diff_answers(*_answers(stable, candidate), opts)
        assert [(d.field, d.kind) for d in got] == [("body", "changed")]
        assert difference_keys(*_answers(stable, candidate), opts) == {"body|changed"}
        assert diff_answers(*_answers(stable, stable), opts) == []
