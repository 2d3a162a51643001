"""A controller killed after its `cdc` step restarts the CDC stream when it resumes: changes written
while no controller ran still reach the target (the stream resumes from the position stored there)."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest

from .conftest import cli, events, start_run, state, wait_until

SCHEMA = "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)"


def _has(db: Path, key: int) -> bool:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT 1 FROM orders WHERE id = ?", (key,)).fetchone() is not None


@pytest.mark.slow
def test_cdc_stream_resumes_after_kill_9(make_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, dst = tmp_path / "v1-data.db", tmp_path / "v2-data.db"
    for db in (src, dst):
        with sqlite3.connect(db) as conn:
            conn.execute(SCHEMA)
    s = make_stack(steps="[{cdc: {tables: [orders], max_lag: 2s}}, {canary: {weight: 10, hold: 120s}}]",
                   min_requests=100000, inconclusive_limit=1000)
    with open(s.plan_path, "a") as plan:
        plan.write(f'\ndata:\n  source: "sqlite:///{src}"\n  target: "sqlite:///{dst}"\n'
                   "  tables: [{name: orders, key: [id]}]\n")
    first = start_run(s.plan_path, tmp_path / "run1.log")
    second = None
    try:
        wait_until(lambda: state(s).weight == 10, 60, "weight 10")
        with sqlite3.connect(src) as conn:
            conn.execute("INSERT INTO orders VALUES (1, 'while the controller ran')")
        wait_until(lambda: _has(dst, 1), 30, "row 1 streamed")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        with sqlite3.connect(src) as conn:
            conn.execute("INSERT INTO orders VALUES (2, 'while no controller ran')")
        second = start_run(s.plan_path, tmp_path / "run2.log")
        wait_until(lambda: _has(dst, 2), 60, "row 2 streamed after the restart")
        assert [e.payload["kind"] for e in events(s) if e.kind == "background_resumed"] == ["cdc"]
    finally:
        done = cli("rollback", str(s.plan_path))
        assert done.returncode == 0, done.stderr
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.wait(30)
