"""The mismatch store and the sink's queue (SQLite file in a temp dir; no sockets)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from switchover.parity.compare import Comparer, Request
from switchover.parity.sink import ParitySink
from switchover.parity.store import MismatchStore, store_path
from switchover.plan import plan_from_dict
from switchover.plan.parity import Parity
from switchover.traffic.proxy.hooks import Answer, MirrorPair

JSON = (("content-type", "application/json"),)


def answer(body: dict[str, object], headers: tuple[tuple[str, str], ...] = JSON) -> Answer:
    return Answer(200, headers, json.dumps(body).encode(), 0.001)


def test_samples_redact_authorization_cookie_and_configured_fields(tmp_path: Path) -> None:
    parity = Parity(redact_fields=["$.card.number", "password", "x-api-key"], samples=2)
    comparer = Comparer(parity)
    store = MismatchStore(tmp_path / "p.db", samples=2)
    req = Request("GET", "/users/1", (("authorization", "Bearer abc.def"), ("cookie", "sid=42"), ("x-api-key", "k-123")))
    for i in range(5):
        stable = answer({"card": {"number": "4111"}, "password": "hunter2", "n": i})
        cand = answer({"card": {"number": "4112"}, "password": "hunter3", "n": i + 1},
                      headers=(*JSON, ("set-cookie", "sid=99")))
        store.record([comparer.with_sample(comparer.compare(req, stable, cand, None, at=float(i)), req, stable, cand)])
    samples = store.samples(10)
    assert len(samples) == 2 and [s["at"] for s in samples] == [4.0, 3.0]  # last N, newest first
    text = json.dumps(samples)
    for secret in ("abc.def", "sid=42", "k-123", "4111", "4112", "hunter2", "hunter3", "sid=99"):
        assert secret not in text
    diffs = {d["field"]: d for d in samples[0]["differences"]}
    assert diffs["$.card.number"]["stable"] == "***" and diffs["$.n"]["candidate"] == "5"
    tally = store.tally()
    assert tally.endpoints[0].compared == 5
    assert {(f.field, f.diffs) for f in tally.fields} == {("$.card.number", 5), ("$.password", 5), ("$.n", 5)}
    store.close()


def test_store_path_follows_the_plan_folder(tmp_path: Path) -> None:
    plan = plan_from_dict({"name": "orders", "stable": {"url": "http://127.0.0.1:1"},
                           "candidate": {"url": "http://127.0.0.1:2"}}, filename=str(tmp_path / "plan.yaml"))
    assert store_path(plan) == tmp_path / ".switchover" / "orders-parity.db"
    custom = plan.model_copy(update={"parity": Parity(store="data/p.db")})
    assert store_path(custom) == tmp_path / "data" / "p.db"


def test_sink_submit_never_blocks_and_counts_drops_when_full(tmp_path: Path) -> None:
    plan = plan_from_dict({"name": "sw_parity_unit", "stable": {"url": "http://127.0.0.1:1"},
                           "candidate": {"url": "http://127.0.0.1:2"}, "parity": {"queue": 10}},
                          filename=str(tmp_path / "plan.yaml"))
    sink = ParitySink(plan)
    gate = threading.Event()
    real = sink._compare
    sink._compare = lambda *a: (gate.wait(10), real(*a))[1]  # type: ignore[method-assign]  # hold the diff thread
    pair = MirrorPair("GET", "/orders/1", (), b"", answer({"a": 1}), answer({"a": 2}), 0.0)
    for _ in range(50):
        sink.submit(pair)  # returns at once even though nothing is being diffed
    assert sink.submitted == 50 and sink.dropped >= 39  # 10 queued + at most one taken by the worker
    gate.set()
    sink.close()
    report = sink.report()
    assert report["compared"] == 50 - sink.dropped
    assert report["counters"]["dropped"] == sink.dropped
    assert report["endpoints"][0]["fields"][0]["field"] == "$.a"
