"""Pure pieces of reverse-CDC loop prevention and draining: binlog position order, which drain marker
row is this stream's, and SQLite's own-row marking inside one transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from switchover.data.cdc import sqlite as sqlite_cdc
from switchover.data.cdc.mysql import _drain_row, position_key
from switchover.data.move_tables import Side


def test_datamove_binlog_positions_order_by_file_number_then_offset() -> None:
    assert position_key("mysql-bin.000009:99999") < position_key("mysql-bin.000010:4")
    assert position_key("mysql-bin.000010:120") < position_key("mysql-bin.000010:1200")  # not as text
    assert position_key("host-bin.000002:4") == (2, 4)


@given(st.integers(1, 999_999), st.integers(4, 2**40), st.integers(1, 999_999), st.integers(4, 2**40))
def test_datamove_binlog_position_order_matches_tuple_order(f1: int, p1: int, f2: int, p2: int) -> None:
    a, b = f"mysql-bin.{f1:06d}:{p1}", f"mysql-bin.{f2:06d}:{p2}"
    assert (position_key(a) < position_key(b)) == ((f1, p1) < (f2, p2))


def test_datamove_drain_marker_row_is_matched_by_stream() -> None:
    assert _drain_row({"values": {"stream": "plan_rev", "requested_at": 1.0}}, "plan_rev")
    assert _drain_row({"after_values": {"UNKNOWN_COL0": b"plan_rev", "UNKNOWN_COL1": 2.0}}, "plan_rev")
    assert not _drain_row({"values": {"stream": "other_rev", "requested_at": 1.0}}, "plan_rev")


def test_datamove_sqlite_marks_only_its_own_transactions_rows(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.close()
    side = Side.open(f"sqlite:///{path}")
    sqlite_cdc.install_triggers(side, "t")
    side.execute("INSERT INTO t VALUES (1, 'user')")  # autocommit: a user's write
    side.begin()
    start = sqlite_cdc.own_changes_start(side)
    assert start == 1
    side.execute("INSERT INTO t VALUES (2, 'ours')")
    side.execute("UPDATE t SET v = 'ours too' WHERE id = 1")
    sqlite_cdc.mark_own_changes(side, start, "sw_apply_x")
    side.commit()
    side.execute("INSERT INTO t VALUES (3, 'user again')")
    rows = side.execute(f"SELECT id, op, origin FROM {sqlite_cdc.CHANGELOG} ORDER BY id")
    assert rows == [(1, "insert", None), (2, "insert", "sw_apply_x"), (3, "update", "sw_apply_x"),
                    (4, "insert", None)]
    reader = sqlite_cdc.SqliteReader(side, ["t"], None)
    assert [t.position for t in reader.poll(0.1)] == ["1", "4"]
    reader.close()


def test_datamove_sqlite_without_changelog_has_nothing_to_mark(tmp_path: Path) -> None:
    side = Side.open(f"sqlite:///{tmp_path / 'plain.sqlite'}")
    side.begin()
    assert sqlite_cdc.own_changes_start(side) is None
    side.commit()
    side.close()
