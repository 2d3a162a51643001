"""The proxy's cheap path (quick.py) finds exactly what the full diff finds, and its summed counts
land in the store as the comparisons they sum would."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchover.parity import diff, worker
from switchover.parity.compare import Comparer, Comparison, Request
from switchover.parity.diff import DiffOptions, diff_json
from switchover.parity.quick import QUICK_MAX_BYTES, Counts, QuickDiff
from switchover.parity.store import MismatchStore
from switchover.plan import plan_from_dict
from switchover.plan.parity import Parity
from switchover.traffic.proxy.hooks import Answer, MirrorPair, pair_from_raw, raw_from_pair
from tests.unit.parity import reference_diff
from tests.unit.parity.documents import get_at, leaf_paths, same_json, set_at

JSON_CT = ("content-type", "application/json")
KEYS = ["a", "b", "id", "items", "etag", "generated_at", "odd key", "n"]

scalars = (st.none() | st.booleans() | st.integers(-3, 3) | st.integers(-2**70, 2**70)
           | st.sampled_from([0.0, 1.0, -1.0, 2.5, 1e-12, 1e300, 1.0000000001]) | st.text(max_size=3))
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5), max_leaves=20)


@dataclass(frozen=True)
class Opts:
    ignore: tuple[str, ...]
    unordered: tuple[str, ...]
    float_tolerance: float
    int_float_equal: bool
    headers: tuple[str, ...]


options = st.builds(
    Opts,
    st.lists(st.sampled_from(["$.generated_at", "$.items[*].etag", "$..id", "$.a[0]", "$.*.n"]), max_size=3).map(tuple),
    st.lists(st.sampled_from(["$.items", "$.b", "$.a[*].items", "$"]), max_size=2).map(tuple),
    st.sampled_from([0.0, 1e-9, 0.1]),
    st.booleans(),
    st.sampled_from([(), ("content-type",), ("x-version",)]),
)


def _dumps(value: Any, rnd: random.Random) -> str:
    """JSON text with keys shuffled and random whitespace (or floats written as 1.0 / 1e0)."""
    ws = lambda: rnd.choice(["", " ", "\n"])  # noqa: E731
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return "{" + ",".join(f"{ws()}{json.dumps(k)}:{ws()}{_dumps(v, rnd)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(ws() + _dumps(v, rnd) for v in value) + ws() + "]"
    return json.dumps(value)


def _mutate(doc: Any, rnd: random.Random, other: Any) -> Any:
    """The candidate's document: the same one, or one place changed the way candidates do."""
    choice = rnd.randrange(9)
    if choice == 0:
        return doc
    if choice == 1:
        return other
    if isinstance(doc, dict) and doc:
        key = rnd.choice(sorted(doc))
        copy = dict(doc)
        if choice == 2:
            del copy[key]
        elif choice == 3:
            copy[rnd.choice(KEYS)] = other
        else:
            copy[key] = _mutate(doc[key], rnd, other)
        return copy
    if isinstance(doc, list) and doc:
        i = rnd.randrange(len(doc))
        if choice == 2:
            return doc[::-1]
        if choice == 3:
            return doc[:i] + doc[i + 1:]
        return [*doc[:i], _mutate(doc[i], rnd, other), *doc[i + 1:]]
    if isinstance(doc, bool):
        return int(doc) if choice < 6 else (not doc)
    if isinstance(doc, int):
        return float(doc) if choice < 6 else (bool(doc) if abs(doc) <= 1 else doc + 1)
    if isinstance(doc, float):
        return doc * (1 + 1e-10) if choice < 6 else -doc
    return other


def _answer(body: bytes, rnd: random.Random, status: int = 200, error: str | None = None) -> Answer:
    headers = [JSON_CT] if rnd.random() < 0.8 else [("content-type", "text/plain")]
    if rnd.random() < 0.3:
        headers.append(("X-Version", rnd.choice(["1", "2"])))
    if rnd.random() < 0.2:
        headers.insert(0, ("Content-Type", "charset=utf-8"))  # a repeated header is joined
    return Answer(status, tuple(headers), body, 0.001, error)


@settings(max_examples=600, deadline=None)
@given(documents, documents, options, st.integers(0, 2**32))
def test_the_cheap_path_finds_what_the_full_diff_finds(doc: Any, other: Any, o: Opts, seed: int) -> None:
    rnd = random.Random(seed)
    parity = Parity(ignore=list(o.ignore), unordered=list(o.unordered), float_tolerance=o.float_tolerance,
                    int_float_equal=o.int_float_equal, headers=list(o.headers))
    comparer = Comparer(parity)
    quick = QuickDiff(comparer)
    cand_doc = _mutate(doc, rnd, other)
    stable_body = _dumps(doc, rnd).encode()
    kind = rnd.randrange(12)
    if kind == 0:
        cand_body = b"<html>not json</html>"
    elif kind == 1:
        stable_body, cand_body = b"plain text", b"plain text!"
    else:
        cand_body = _dumps(cand_doc, rnd).encode()
    status = 500 if kind == 2 else 200
    error = "timeout" if kind == 3 else None
    stable = _answer(stable_body, rnd, error="reset" if kind == 4 else None)
    candidate = _answer(cand_body, rnd, status, error)
    request = Request("GET", f"/orders/{rnd.randrange(1000)}?x=1", ())
    full = comparer.compare(request, stable, candidate, None, 0.0)
    keys = quick.keys(stable, candidate)
    # As the proxy holds the pair: header names in the case they came in, nothing decoded.
    raw = raw_from_pair(MirrorPair(request.method, request.path, (), b"", _cased(stable, rnd),
                                   _cased(candidate, rnd), 0.0))
    raw_keys = quick.keys_raw(raw)
    if full.skipped:
        assert keys is None and raw_keys is None  # the worker counts what was not compared
        return
    assert keys == tuple(sorted({d.key for d in full.differences})), (stable_body, cand_body)
    assert raw_keys == keys
    assert quick.endpoint(request.method, request.path) == full.endpoint
    assert quick.endpoint_raw(raw[0], raw[1]) == full.endpoint


def _cased(answer: Answer, rnd: random.Random) -> Answer:
    """The answer with its header names in the case a server may send them."""
    headers = tuple((rnd.choice([k, k.upper(), k.title()]), v) for k, v in answer.headers)
    return Answer(answer.status, headers, answer.body, answer.latency, answer.error)


def test_a_pair_as_the_proxy_holds_it_becomes_the_same_pair_again() -> None:
    pair = MirrorPair("GET", "/orders/7?x=é", (("authorization", "Bearer s3cret"), ("x-tag", "café")), b"{}",
                      Answer(200, (("content-type", "application/json"),), b'{"a": 1}', 0.01),
                      Answer(502, (), b"", 0.2, "reset"), 12.5)
    assert pair_from_raw(raw_from_pair(pair)) == pair
    raw = (b"GET", b"/a", [(b"Host", b""), (b"X-Tag", b"v")], b"", 1.0,
           200, [(b"Content-Type", b"text/plain")], b"x", 0.1, None, 200, [], b"x", 0.1, None)
    held = pair_from_raw(raw)  # type: ignore[arg-type]
    # Names lower-cased; the proxy's placeholder for a missing Host (no value) is not the user's header.
    assert held.headers == (("x-tag", "v"),) and held.stable.headers == (("content-type", "text/plain"),)


@settings(max_examples=300, deadline=None)
@given(documents, st.data())
def test_a_real_value_change_is_always_found_by_the_cheap_path(doc: Any, data: st.DataObject) -> None:
    doc = {"payload": doc, "n": 1}
    leaves = leaf_paths(doc)
    path = data.draw(st.sampled_from(leaves))
    old = get_at(doc, path)
    new = data.draw(scalars.filter(lambda v: not same_json(v, old)))
    quick = QuickDiff(Comparer(Parity()))
    stable = Answer(200, (JSON_CT,), json.dumps(doc).encode(), 0.0)
    candidate = Answer(200, (JSON_CT,), json.dumps(set_at(doc, path, new)).encode(), 0.0)
    keys = quick.keys(stable, candidate)
    assert keys, (doc, path, new)


@settings(max_examples=600, deadline=None)
@given(documents, documents, options, st.integers(0, 2**32))
def test_the_diff_reports_what_the_first_diff_reported(doc: Any, other: Any, o: Opts, seed: int) -> None:
    """The optimised walk (text-confirmed subtrees, reorderings ruled out by ``==``, bodies searched
    for booleans only when worth it) against the diff as first written, kept in reference_diff.py."""
    rnd = random.Random(seed)
    parity = Parity(ignore=list(o.ignore), unordered=list(o.unordered), float_tolerance=o.float_tolerance,
                    int_float_equal=o.int_float_equal, headers=list(o.headers))
    cand = _mutate(doc, rnd, other)
    if rnd.random() < 0.3:  # long lists of similar elements: where reorderings and confirmations matter
        doc = {"items": [doc, other] * rnd.randrange(1, 6) + [cand]}
        cand = {"items": [doc["items"][i] for i in rnd.sample(range(len(doc["items"])), len(doc["items"]))]
                if rnd.random() < 0.5 else [*doc["items"][:-1], _mutate(doc["items"][-1], rnd, other)]}
    stable = _answer(_dumps(doc, rnd).encode(), rnd)
    candidate = _answer(_dumps(cand, rnd).encode(), rnd)
    got = diff.diff_answers(stable, candidate, DiffOptions.from_parity(parity))
    want = reference_diff.diff_answers(stable, candidate, reference_diff.DiffOptions.from_parity(parity))
    assert [d.to_json() for d in got] == [d.to_json() for d in want]


def test_reorderings_and_booleans_in_long_lists() -> None:
    opts = DiffOptions.from_parity(Parity())
    items = [{"sku": f"S{i}", "ok": i % 2 == 0, "qty": i} for i in range(40)]
    changed = [dict(x) for x in items]
    changed[17]["qty"] = 1700
    assert [(d.field, d.kind) for d in diff_json(items, changed, opts)] == [("$[*].qty", "changed")]
    assert [d.kind for d in diff_json(items, items[::-1], opts)] == ["order"]
    as_ints = [dict(x, ok=int(x["ok"])) for x in items]  # true == 1 for Python, not for JSON
    assert {(d.field, d.kind) for d in diff_json(items, as_ints, opts)} == {("$[*].ok", "type")}


def test_large_compressed_and_unanswered_stable_go_to_the_full_path() -> None:
    quick = QuickDiff(Comparer(Parity()))
    small = Answer(200, (JSON_CT,), b'{"a": 1}', 0.0)
    big = Answer(200, (JSON_CT,), b'{"a": "' + b"x" * QUICK_MAX_BYTES + b'"}', 0.0)
    gz = Answer(200, (JSON_CT, ("Content-Encoding", "gzip")), b"\x1f\x8b", 0.0)
    assert quick.keys(small, big) is None and quick.keys(big, small) is None
    assert quick.keys(small, gz) is None
    assert quick.keys(Answer(0, (), b"", 0.0, "reset"), small) is None
    assert quick.keys(small, Answer(0, (), b"", 0.0, "timeout")) == ("error|error",)
    assert quick.keys(small, small) == ()


def _comparisons(rnd: random.Random, n: int) -> list[Comparison]:
    out = []
    for i in range(n):
        ep = rnd.choice(["GET /a", "GET /b/{id}"])
        keys = rnd.sample(["$.x|changed", "$.y|missing", "status|status", "$.z[*].w|type"], rnd.randrange(3))
        diffs = tuple(diff.Difference(k.rpartition("|")[0], diff.DiffKind(k.rpartition("|")[2]), "", "", "")
                      for k in keys)
        out.append(Comparison(ep, 1000.0 + rnd.random() * 10 + i, diffs, None, None))
    return out


def test_summed_counts_reach_the_store_as_the_comparisons_would(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("switchover.parity.store.MAX_SIGNATURES", 3)  # the overflow bucket too
    rnd = random.Random(5)
    batch = _comparisons(rnd, 300)
    one = MismatchStore(tmp_path / "one.db")
    one.record(batch, {"dropped": 4, "compared": len(batch)})
    counts = Counts()
    for c in batch:
        counts.add(c.endpoint, c.at, tuple(sorted({d.key for d in c.differences})))
    summed = MismatchStore(tmp_path / "summed.db")
    summed.record_counts(counts, {"dropped": 4})

    def norm(store: MismatchStore) -> tuple[Any, ...]:
        t = store.tally()
        return (sorted(t.endpoints, key=repr), sorted(t.fields, key=repr), sorted(t.signatures, key=repr), store.counters())

    assert norm(one) == norm(summed)
    one.close()
    summed.close()


def _plan(tmp_path: Path, **parity: Any) -> Any:
    parity.setdefault("diff_on", "proxy")  # not ``auto``: the same on any number of CPUs
    return plan_from_dict({"name": "sw_parity_quick", "stable": {"url": "http://127.0.0.1:1"},
                           "candidate": {"url": "http://127.0.0.1:2"}, "parity": parity},
                          filename=str(tmp_path / "plan.yaml"))


def _run_sink(tmp_path: Path, n: int, prepare: Callable[[worker.ProcessSink], None] | None = None,
              **parity: Any) -> worker.ProcessSink:
    """A ProcessSink given ``n`` pairs as the proxy hands them over (outside a loop), then closed."""
    sink = worker.ProcessSink(_plan(tmp_path, **parity))
    if prepare is not None:
        prepare(sink)
    try:
        for i in range(n):
            sink.submit(_pair(i))
    finally:
        sink.close()
    return sink


@contextlib.contextmanager
def _written(tmp_path: Path) -> Iterator[MismatchStore]:
    """The store the sink of ``_plan`` wrote."""
    store = MismatchStore(tmp_path / ".switchover" / "sw_parity_quick-parity.db")
    try:
        yield store
    finally:
        store.close()


def _pair(i: int) -> MirrorPair:
    stable = Answer(200, (JSON_CT,), json.dumps({"id": i, "total": 100, "at": i}).encode(), 0.0)
    candidate = Answer(200, (JSON_CT,), json.dumps({"id": i, "total": 100 + (i % 2), "at": -i}).encode(), 0.0)
    return MirrorPair("GET", f"/orders/{i}", (("authorization", "Bearer s3cret"),), b"", stable, candidate, float(i))


@pytest.mark.parametrize("diff_on", ["proxy", "worker"])
def test_the_proxys_sink_counts_every_pair_and_keeps_samples_from_the_worker(
        tmp_path: Path, diff_on: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The loop's time limits have tests of their own; here a preemption of this process on a busy
    # machine (one pair's wall time) must not send the endpoint to the worker as slow.
    monkeypatch.setattr(worker, "QUICK_SHARE", 1.0)
    monkeypatch.setattr(worker, "_SLOW_PAIR", float("inf"))
    sink = worker.ProcessSink(_plan(tmp_path, ignore=["$.at"], samples=3, diff_on=diff_on))

    async def proxy_loop() -> None:  # as the proxy calls it: on its event loop, which ships on timers
        for i in range(200):
            sink.submit(_pair(i))
            if i % 50 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.1)

    try:
        asyncio.run(proxy_loop())
        sink.skip("GET", "/orders/7", 7.0, "too_large")  # an answer above the copy cap
    finally:
        sink.close()
    with _written(tmp_path) as store:
        tally = store.tally()
        assert [(e.endpoint, e.compared) for e in tally.endpoints] == [("GET /orders/{id}", 200)]
        assert [(f.field, f.kind, f.diffs) for f in tally.fields] == [("$.total", "changed", 100)]
        samples = store.samples(10)
        assert len(samples) == 3 and all("s3cret" not in json.dumps(s) for s in samples)
        assert store.counters()["compared"] == 200 and store.counters()["skipped_too_large"] == 1
        assert tally.endpoints[0].skipped == 1
    if diff_on == "proxy":
        assert sink.quick >= 190 and sink.to_worker >= 3  # most diffed in place; samples from the worker
    else:
        assert (sink.quick, sink.to_worker, sink.dropped) == (0, 200, 0)  # the loop diffs nothing


def test_with_a_second_stable_the_worker_calls_it_and_counts_what_differs_there_as_noise(tmp_path: Path) -> None:
    """The proxy's sink hands each read to the worker (a noise frame), which calls the second stable
    over a real socket: $.at differs there too (noise), $.total only from the candidate."""
    import http.server
    import threading

    class SecondStable(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            i = int(self.path.rsplit("/", 1)[1])
            body = json.dumps({"id": i, "total": 100, "at": i + 0.5}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SecondStable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sink = worker.ProcessSink(_plan(tmp_path, samples=0,
                                        stable_secondary=f"http://127.0.0.1:{server.server_port}"))

        async def proxy_loop() -> None:
            for i in range(20):
                sink.submit(_pair(i))
            await asyncio.sleep(0.1)

        try:
            asyncio.run(proxy_loop())
        finally:
            sink.close()
    finally:
        server.shutdown()
        server.server_close()
    assert (sink.quick, sink.to_worker, sink.dropped) == (0, 20, 0)
    with _written(tmp_path) as store:
        tally = store.tally()
        assert (tally.endpoints[0].compared, tally.endpoints[0].noise_compared) == (20, 20)
        fields = {(f.field, f.kind): (f.diffs, f.noise_diffs) for f in tally.fields}
        assert fields == {("$.at", "changed"): (19, 20), ("$.total", "changed"): (10, 0)}  # at 0 == -0


class _Headers(list[tuple[bytes, bytes]]):
    """A caller's own type of headers: marshal refuses it, pickle takes it."""


def test_pairs_of_types_marshal_cannot_write_are_pickled_and_compared(tmp_path: Path) -> None:
    sink = worker.ProcessSink(_plan(tmp_path, ignore=["$.at"], samples=0, diff_on="worker"))
    try:
        for i in range(4):
            raw = raw_from_pair(_pair(i))
            sink.submit_raw((*raw[:6], _Headers(raw[6]), *raw[7:]))  # type: ignore[arg-type]
    finally:
        sink.close()
    assert (sink.to_worker, sink.dropped) == (4, 0)
    with _written(tmp_path) as store:
        tally = store.tally()
        assert tally.endpoints[0].compared == 4 and [(f.field, f.diffs) for f in tally.fields] == [("$.total", 2)]


def test_pairs_wait_whole_while_the_worker_is_stopped_and_are_all_compared_after(tmp_path: Path) -> None:
    """The pipe fills (the worker is stopped), writes are taken in part; nothing is lost or torn."""
    import os
    import signal

    sink = worker.ProcessSink(_plan(tmp_path, ignore=["$.at", "$.pad"], samples=0, diff_on="worker"))
    pad = "x" * 20_000  # ~40 KB per pair: 100 pairs are more than the pipe holds
    waiting: list[int] = []

    def big(i: int) -> MirrorPair:
        p = _pair(i)
        s, c = (json.loads(a.body) | {"pad": pad + str(i)} for a in (p.stable, p.candidate))
        return MirrorPair(p.method, p.path, p.headers, p.body, Answer(200, (JSON_CT,), json.dumps(s).encode(), 0.0),
                          Answer(200, (JSON_CT,), json.dumps(c).encode(), 0.0), p.at)

    async def proxy_loop() -> None:
        os.kill(sink._process.pid, signal.SIGSTOP)
        try:
            for i in range(100):
                sink.submit(big(i))
                await asyncio.sleep(0)
            await asyncio.sleep(0.2)  # ships: the pipe takes what it can
            waiting.append(sink.report()["sink"]["unsent_bytes"])
        finally:
            os.kill(sink._process.pid, signal.SIGCONT)
        for _ in range(200):
            await asyncio.sleep(0.02)
            if not sink.report()["sink"]["unsent_bytes"]:
                break
        waiting.append(sink.report()["sink"]["unsent_bytes"])

    try:
        asyncio.run(proxy_loop())
    finally:
        sink.close()
    assert waiting[0] > 0 and waiting[1] == 0  # frames waited for the pipe, then all went
    assert (sink.to_worker, sink.dropped) == (100, 0)
    with _written(tmp_path) as store:
        tally = store.tally()
        assert tally.endpoints[0].compared == 100 and [(f.field, f.diffs) for f in tally.fields] == [("$.total", 50)]


def _big_pair(i: int) -> MirrorPair:
    """``_pair(i)`` with both bodies grown beyond ``worker.LOOP_MAX_BYTES``."""
    pair = _pair(i)
    pad = b', "pad": "' + b"x" * worker.LOOP_MAX_BYTES + b'"}'
    stable, candidate = (Answer(a.status, a.headers, a.body[:-1] + pad, a.latency) for a in (pair.stable, pair.candidate))
    return dataclasses.replace(pair, stable=stable, candidate=candidate)


def test_answers_above_the_loops_size_go_to_the_worker_and_are_compared_the_same(tmp_path: Path) -> None:
    """Bodies over LOOP_MAX_BYTES cost the proxy more to diff than to hand over: the worker diffs them."""
    sink = worker.ProcessSink(_plan(tmp_path, samples=0, ignore=["$.at"]))
    try:
        for i in range(10):
            sink.submit(_big_pair(i) if i % 2 else _pair(i))
    finally:
        sink.close()
    assert (sink.quick, sink.to_worker, sink.dropped) == (5, 5, 0)  # the small ones on the loop
    _assert_all_ten_compared(tmp_path)


@pytest.mark.parametrize("diff_on", ["proxy", "auto"])
def test_while_the_worker_is_behind_the_loop_diffs_what_it_would_have_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, diff_on: str) -> None:
    """A worker with no CPU to spare (stopped here) leaves the pipe full: the pairs it would take
    (large answers; with ``auto`` and CPUs to spare, every pair) are then diffed on the loop rather
    than queued towards a drop."""
    monkeypatch.setattr(worker, "usable_cpus", lambda: 8.0)
    monkeypatch.setattr(worker, "QUICK_SHARE", 1.0)  # a preemption of this process must not count
    monkeypatch.setattr(worker, "_SLOW_PAIR", float("inf"))
    sink = worker.ProcessSink(_plan(tmp_path, samples=0, ignore=["$.at"], diff_on=diff_on))
    os.kill(sink._process.pid, signal.SIGSTOP)

    async def proxy_loop() -> None:
        for i in range(200):
            sink.submit(_big_pair(i))
            if i % 10 == 9:
                await asyncio.sleep(0.03)  # a ship (every 20 ms) writes what waits, until the pipe is full

    try:
        asyncio.run(proxy_loop())
    finally:
        os.kill(sink._process.pid, signal.SIGCONT)
        sink.close()
    assert sink.to_worker >= 10 and sink.quick >= 100 and sink.dropped == 0
    with _written(tmp_path) as store:
        tally = store.tally()
        assert tally.endpoints[0].compared == 200 and [(f.field, f.diffs) for f in tally.fields] == [("$.total", 100)]


@pytest.mark.parametrize(("cpus", "on_loop"), [(2.0, 10), (4.0, 0), (2.5, 10)])
def test_diff_on_auto_hands_pairs_to_the_worker_only_with_cpus_to_spare(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpus: float, on_loop: int) -> None:
    monkeypatch.setattr(worker, "usable_cpus", lambda: cpus)
    sink = _run_sink(tmp_path, 10, samples=0, ignore=["$.at"], diff_on="auto")
    assert (sink.quick, sink.to_worker, sink.dropped) == (on_loop, 10 - on_loop, 0)
    assert sink.diff_on == ("proxy" if on_loop else "auto-worker")
    _assert_all_ten_compared(tmp_path)


def test_beyond_its_share_of_the_loop_pairs_go_to_the_worker_and_are_all_compared(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "QUICK_SHARE", 0.0)
    monkeypatch.setattr(worker, "_WINDOW", 1e9)  # one window: the first pair spends the whole share
    sink = _run_sink(tmp_path, 20, samples=0, ignore=["$.at"])
    assert (sink.quick, sink.to_worker, sink.dropped) == (1, 19, 0)
    with _written(tmp_path) as store:
        assert store.counters().get("dropped", 0) == 0
        tally = store.tally()
        assert tally.endpoints[0].compared == 20 and [(f.field, f.diffs) for f in tally.fields] == [("$.total", 10)]


def test_endpoints_slow_to_diff_go_to_the_worker_with_the_same_counts(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "_SLOW_PAIR", -1.0)  # every pair counts as slow
    sink = _run_sink(tmp_path, 10, samples=0, ignore=["$.at"])
    assert (sink.quick, sink.to_worker) == (1, 9)
    _assert_all_ten_compared(tmp_path)


def _assert_all_ten_compared(tmp_path: Path) -> None:
    with _written(tmp_path) as store:
        tally = store.tally()
        assert tally.endpoints[0].compared == 10 and [(f.field, f.diffs) for f in tally.fields] == [("$.total", 5)]


def test_pairs_held_for_a_batch_are_all_diffed_one_slice_at_a_time(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "_SLICE", 0.0)  # one pair per turn of the loop
    monkeypatch.setattr(worker, "_HOLD_MAX", 8)
    sink = worker.ProcessSink(_plan(tmp_path, samples=0, ignore=["$.at"]))
    turns: list[int] = []

    async def proxy_loop() -> None:
        for i in range(20):
            sink.submit(_pair(i))  # the 8th, 16th... start a batch at once
        for _ in range(30):
            turns.append(sink.quick)
            await asyncio.sleep(0)
        for i in range(20, 23):
            sink.submit(_pair(i))  # held when the loop ends: diffed on close

    try:
        asyncio.run(proxy_loop())
    finally:
        sink.close()
    assert turns[0] < 20 and turns[-1] == 20  # not all at once: one slice per turn, none lost
    assert (sink.quick, sink.dropped) == (23, 0)
    with _written(tmp_path) as store:
        assert store.tally().endpoints[0].compared == 23


def test_a_diff_that_raises_on_the_loop_never_reaches_the_proxy_and_the_worker_takes_the_pair(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken(raw: Any) -> Any:
        raise ValueError("an answer this path cannot read")

    def break_keys(sink: worker.ProcessSink) -> None:
        sink._quick.keys_raw = broken  # type: ignore[method-assign]

    sink = _run_sink(tmp_path, 10, break_keys, samples=0, ignore=["$.at"])  # submit must not raise
    assert (sink.quick, sink.to_worker, sink.dropped) == (0, 10, 0)
    assert sum("the proxy's diff failed" in r.message for r in caplog.records) == 1  # said once per endpoint
    _assert_all_ten_compared(tmp_path)


def test_counts_merged_are_the_counts_added_in_one() -> None:
    rows = [("GET /a", 5.0, ("$.x|changed",)), ("GET /a", 1.0, ()), ("GET /b", 9.0, ("$.x|changed", "$.y|missing")),
            ("GET /a", 7.0, ("$.x|changed",))]
    one, first, second = Counts(), Counts(), Counts()
    for i, (endpoint, at, keys) in enumerate(rows):
        one.add(endpoint, at, keys)
        (first if i % 2 else second).add(endpoint, at, keys)
    for c in (one, second):
        c.skip("GET /a", 3.0, "too_large")
    one.skip("GET /a", 8.0, "too_large")
    first.skip("GET /a", 8.0, "too_large")
    first.merge(second)
    assert first == one
    assert one.endpoints["GET /a"] == [3, 1.0, 7.0] and one.skipped[("GET /a", "too_large")] == [2, 3.0, 8.0]


def test_with_the_worker_gone_the_loops_counts_still_reach_the_store(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    sink = worker.ProcessSink(_plan(tmp_path, ignore=["$.at"], samples=2))
    sink._process.kill()  # the worker process dies (OOM killer, kill -9)
    sink._process.join(10)

    async def proxy_loop() -> None:
        for i in range(40):
            sink.submit(_pair(i))
            await asyncio.sleep(0.01)  # ships every 20 ms: the first write finds the pipe broken
        await asyncio.sleep(0.3)

    try:
        asyncio.run(proxy_loop())
    finally:
        sink.close()
    assert sum("the diff worker is gone" in r.message for r in caplog.records) == 1  # said once
    with _written(tmp_path) as store:
        compared, dropped = store.tally().endpoints[0].compared, store.counters().get("dropped", 0)
        # Every pair the loop settled is counted; the differing ones it wanted as samples (the worker's
        # job) are dropped and counted; only what was in the pipe when it broke is lost.
        assert compared + dropped >= 36 and compared >= 30 and dropped >= 1
