"""One PostgreSQL-MariaDB pair of 1M rows with a few hundred planted differences of every kind
(missing, extra, changed text, decimal, timestamp microsecond, NULL vs ''): found exactly."""

from __future__ import annotations

import pytest
from benchmarks.rowdiff.dataset import COLUMNS, MY_URL, PG_URL, drop, load, planted

from switchover.data.rowdiff import TableSpec, diff_tables
from switchover.data.urls import parse_db_url

pytestmark = [pytest.mark.postgres, pytest.mark.mariadb, pytest.mark.slow]

TABLE = "sw_dataverify_million"
ROWS = 1_000_000


def test_rowdiff_one_million_rows_postgresql_to_mariadb() -> None:
    plant = planted(ROWS)
    load(TABLE, ROWS, plant)
    try:
        seen: list[tuple[str, int, int]] = []
        result = diff_tables(parse_db_url(PG_URL), parse_db_url(MY_URL), TableSpec(TABLE, ("id",), COLUMNS),
                             progress=lambda phase, done, total: seen.append((phase, done, total)))
    finally:
        drop(TABLE)
    assert result.source_rows == ROWS
    assert result.target_rows == ROWS
    assert {k[0] for k in result.missing} == plant.missing
    assert {k[0] for k in result.extra} == plant.extra
    assert {r.key[0]: [c.column for c in r.columns] for r in result.changed} == {
        k: [c] for k, c in plant.changed.items()}
    # the grouped pass reported progress on both sides up to every row
    checksum = [done for phase, done, _ in seen if phase == "checksum"]
    assert checksum and checksum[-1] == 2 * ROWS
    # it drilled into a few hundred buckets, not the table
    assert result.stats["rows_fetched"] < 0.2 * 2 * ROWS
