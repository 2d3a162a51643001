"""Pure parts of data movement: chunk sizing, throttling, pgoutput decoding, value conversion,
gate judgements, event upcasting."""

from __future__ import annotations

import datetime as dt
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchover.analysis.verdict import Outcome
from switchover.data.apply import convert
from switchover.data.backfill import _copy_unescape
from switchover.data.backfill_control import (
    MAX_CHUNK,
    MIN_CHUNK,
    ThrottleInputs,
    next_chunk_size,
    throttle_reason,
)
from switchover.data.cdc.pgoutput import PG_EPOCH, Decoder, lsn_int, lsn_text
from switchover.data.dlq import Event, upcast
from switchover.engine.steps.movement import judge_lag, judge_rollback_safe


@given(st.integers(MIN_CHUNK, MAX_CHUNK), st.floats(0, 100), st.floats(0.01, 10))
def test_datamove_chunk_size_stays_in_bounds_and_moves_toward_target(size: int, elapsed: float, target: float) -> None:
    new = next_chunk_size(size, elapsed, target)
    assert MIN_CHUNK <= new <= MAX_CHUNK
    if elapsed > target * 1.01:
        assert new <= size
    if 0 < elapsed < target * 0.99:
        assert new >= size


def test_datamove_chunk_size_halves_at_most_after_one_slow_chunk() -> None:
    assert next_chunk_size(10_000, 60.0, 0.5) == 5_000
    assert next_chunk_size(10_000, 0.001, 0.5) == 20_000


def test_datamove_throttle_reasons_in_priority_order() -> None:
    assert throttle_reason(ThrottleInputs()) is None
    assert "lag 900 ms" in (throttle_reason(ThrottleInputs(lag_ms=900, max_lag_ms=500)) or "")
    assert throttle_reason(ThrottleInputs(lag_ms=100, max_lag_ms=500)) is None
    assert "query returned 3" in (throttle_reason(ThrottleInputs(query_value=3, lag_ms=900)) or "")
    assert throttle_reason(ThrottleInputs(query_value=0)) is None
    assert "/tmp/stop exists" in (throttle_reason(ThrottleInputs(flag_file="/tmp/stop", query_value=1)) or "")
    assert "paused" in (throttle_reason(ThrottleInputs(paused=True, flag_file="/x")) or "")


@given(st.integers(0, 2**64 - 1))
def test_datamove_lsn_text_round_trip(lsn: int) -> None:
    assert lsn_int(lsn_text(lsn)) == lsn


def _cstr(s: str) -> bytes:
    return s.encode() + b"\x00"


def _tuple(values: list[str | None]) -> bytes:
    out = struct.pack(">H", len(values))
    for v in values:
        out += b"n" if v is None else b"t" + struct.pack(">I", len(v.encode())) + v.encode()
    return out


def _relation() -> bytes:
    cols = [(1, "id"), (0, "status"), (0, "amount")]
    body = struct.pack(">I", 77) + _cstr("public") + _cstr("orders") + struct.pack(">BH", ord("d"), len(cols))
    for flags, name in cols:
        body += struct.pack(">B", flags) + _cstr(name) + struct.pack(">Ii", 25, -1)
    return b"R" + body


def test_datamove_pgoutput_decodes_a_transaction_with_key_change_and_delete() -> None:
    d = Decoder()
    ts = 1_000_000  # one second after the PostgreSQL epoch, in microseconds
    assert d.feed(b"B" + struct.pack(">QqI", 100, ts, 9)) is None
    d.feed(_relation())
    d.feed(b"I" + struct.pack(">I", 77) + b"N" + _tuple(["1", "new", None]))
    d.feed(b"U" + struct.pack(">I", 77) + b"K" + _tuple(["1", None, None]) + b"N" + _tuple(["2", "moved", "3.50"]))
    d.feed(b"D" + struct.pack(">I", 77) + b"K" + _tuple(["2", None, None]))
    txn = d.feed(b"C" + struct.pack(">BQQq", 0, 100, 0x1_0000_0010, ts))
    assert txn is not None
    assert txn.position == "1/10" and txn.commit_at == PG_EPOCH + 1
    ops = [(c.op, c.row, c.old_key) for c in txn.changes]
    assert ops == [("insert", {"id": "1", "status": "new", "amount": None}, None),
                   ("update", {"id": "2", "status": "moved", "amount": "3.50"}, {"id": "1"}),
                   ("delete", None, {"id": "2"})]


def test_datamove_pgoutput_skips_our_own_origin() -> None:
    d = Decoder(skip_origin_prefix="sw_apply_")
    d.feed(b"B" + struct.pack(">QqI", 1, 0, 1))
    d.feed(b"O" + struct.pack(">Q", 0) + _cstr("sw_apply_orders_fwd"))
    d.feed(_relation())
    d.feed(b"I" + struct.pack(">I", 77) + b"N" + _tuple(["1", "echo", None]))
    txn = d.feed(b"C" + struct.pack(">BQQq", 0, 1, 2, 0))
    assert txn is not None and txn.changes == ()


def test_datamove_convert_postgres_text_for_other_engines() -> None:
    assert convert("t", "boolean", "mysql") == 1
    assert convert("42", "bigint", "sqlite") == 42
    assert convert("2026-11-26 07:20:00.5+00", "timestamp with time zone", "mysql") == \
        dt.datetime(2026, 11, 26, 7, 20, 0, 500000)
    assert convert("2026-11-26 09:20:00+02", "timestamp with time zone", "sqlite") == "2026-11-26 07:20:00"
    assert convert("\\x0aff", "bytea", "mysql") == b"\n\xff"
    assert convert(1, "tinyint(1)", "postgresql", "boolean") is True
    assert convert("2026-11-26 07:20:00+00", "timestamp with time zone", "postgresql") == "2026-11-26 07:20:00+00"


def test_datamove_copy_text_unescape() -> None:
    assert _copy_unescape(b"a\\tb\\\\c\\nd") == "a\tb\\c\nd"
    assert _copy_unescape(b"plain") == "plain"


def test_datamove_lag_verdicts() -> None:
    assert judge_lag("cdc.lag", 12.0, 500.0, True, None).outcome is Outcome.PASS
    assert judge_lag("cdc.lag", 900.0, 500.0, True, None).outcome is Outcome.FAIL
    stopped = judge_lag("cdc.lag", 1.0, 500.0, False, "slot gone")
    assert stopped.outcome is Outcome.FAIL and "slot gone" in stopped.reason


def test_datamove_rollback_safe_verdicts() -> None:
    ok = judge_lag("r", 5.0, 500.0, True, None)
    behind = judge_lag("r", 5000.0, 500.0, True, None)
    assert judge_rollback_safe(ok, False, None).outcome is Outcome.PASS
    assert judge_rollback_safe(behind, True, 0).outcome is Outcome.FAIL
    assert judge_rollback_safe(None, True, 0).outcome is Outcome.PASS
    assert judge_rollback_safe(None, True, 3).outcome is Outcome.FAIL
    assert judge_rollback_safe(None, True, None).outcome is Outcome.INCONCLUSIVE
    assert judge_rollback_safe(None, False, None).outcome is Outcome.FAIL


def test_datamove_versioned_events_are_upcast_side_by_side() -> None:
    v1 = Event("k1", "orders", "upsert", {"id": 1, "total": 10}, ("id",), 1)
    v2 = Event("k2", "orders", "upsert", {"id": 2, "total_cents": 500}, ("id",), 2)
    ups = {("orders", 1): lambda r: {"id": r["id"], "total_cents": r["total"] * 100}}
    assert upcast(v1, ups, {"orders": 2}).row == {"id": 1, "total_cents": 1000}
    assert upcast(v2, ups, {"orders": 2}).row == {"id": 2, "total_cents": 500}
    with pytest.raises(ValueError, match="no upcaster"):
        upcast(v1, {}, {"orders": 2})


def test_datamove_debezium_events_round_trip() -> None:
    from switchover.data.apply import Change, Transaction
    from switchover.data.cdc.debezium import from_event, to_events

    txn = Transaction("0/10", 1.5, (Change("update", "orders", {"id": 2, "s": "x"}, {"id": 1}),
                                     Change("delete", "orders", None, {"id": 3})))
    events = to_events(txn, "postgresql", "shop", 2000)
    assert [e["op"] for e in events] == ["u", "d"] and events[0]["source"]["ts_ms"] == 1500
    import json

    back = [from_event(json.dumps(e), {"orders": ("id",)}, i) for i, e in enumerate(events, 1)]
    assert [c for t in back if t for c in t.changes] == list(txn.changes)
    wrapped = json.dumps({"schema": {}, "payload": {"op": "c", "after": {"id": 9}, "source": {"table": "orders"}}})
    got = from_event(wrapped, {"orders": ("id",)}, 7)
    assert got is not None and got.position == "7" and got.changes[0].op == "insert"
    assert from_event("null", {"orders": ("id",)}, 1) is None  # Kafka tombstone
    assert from_event(json.dumps({"op": "c", "after": {}, "source": {"table": "other"}}), {"orders": ("id",)}, 1) is None


def test_datamove_debezium_bad_line_names_the_line() -> None:
    from switchover.data.cdc.debezium import from_event
    from switchover.errors import UserError

    with pytest.raises(UserError, match="line 4: not JSON"):
        from_event("{nope", {"orders": ("id",)}, 4)
    with pytest.raises(UserError, match="line 5: not a Debezium change event"):
        from_event('{"op": "x"}', {"orders": ("id",)}, 5)
