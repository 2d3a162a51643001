"""rollback_safe's recent-keys row check: the bounded key record, the WHERE it builds, the verdict."""

from __future__ import annotations

import datetime as dt

from switchover.analysis.verdict import Outcome, Verdict
from switchover.data.cdc.recent import RecentKeys
from switchover.engine.steps.movement import KeyDivergence, RowCheck, judge_row_check, keys_where


def test_datamove_recent_keys_bounded_and_settled_only_before_catch_up() -> None:
    recent = RecentKeys(per_table=3)
    assert recent.settled(10) == {} and recent.pending() == 0
    recent.applied("orders", [["1"], ["2"]], at=10.0)
    assert recent.settled(10) == {}  # never caught up: nothing is settled
    assert recent.pending() == 2
    recent.caught_up(11.0)
    recent.applied("orders", [["3"], ["4"], ["2"]], at=12.0)  # 1 is evicted, 2 moves to the newest
    settled = recent.settled(10)
    assert settled == {}  # 3, 4, 2 were applied after the stream last caught up
    recent.caught_up(12.5)
    assert [k for k, _ in recent.settled(2)["orders"]] == [("2",), ("4",)]  # most recent first, limited
    assert recent.applied_at("orders", (4,)) == 12.0  # a typed key read back by a diff matches its text
    assert recent.applied_at("orders", (1,)) is None


def test_datamove_keys_where_reads_the_same_on_both_engines() -> None:
    assert keys_where(("id",), [(1,), ("2",)], {"postgresql"}) == "(\"id\" = 1) OR (\"id\" = '2')"
    assert keys_where(("a", "b"), [("x'y", dt.date(2026, 1, 2))], {"mysql"}) == \
        "(`a` = 'x''y' AND `b` = '2026-01-02')"
    assert keys_where(("id",), [("a\\b",)], {"mysql", "postgresql"}) is None  # backslashes differ
    assert keys_where(("id",), [("a\\b",)], {"mysql"}) == "(`id` = 'a\\\\b')"
    assert keys_where(("odd name",), [(1,)], {"mysql", "postgresql"}) is None
    assert keys_where(("id",), [(None,), (b"\x00",)], {"postgresql"}) is None


def test_datamove_judge_row_check() -> None:
    lag = Verdict("rollback_safe", Outcome.PASS, "reverse CDC keeps stable up to date", {"lag_ms": 5.0})
    ok = judge_row_check(lag, RowCheck(Outcome.PASS, 3))
    assert ok.outcome is Outcome.PASS and ok.numbers["keys_checked"] == 3.0
    bad = judge_row_check(lag, RowCheck(Outcome.FAIL, 3, (KeyDivergence("orders", (17,), "changed", ("status",)),)))
    assert bad.outcome is Outcome.FAIL and "orders key (17) changed: column(s) status" in bad.reason
    unsure = judge_row_check(lag, RowCheck(Outcome.INCONCLUSIVE, 0, detail="orders: connection refused"))
    assert unsure.outcome is Outcome.INCONCLUSIVE and "connection refused" in unsure.reason
