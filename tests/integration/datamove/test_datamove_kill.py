"""kill -9 in the middle of a backfill and of a CDC stream (the real CLI, as a subprocess): the rerun
resumes where it was and the target ends identical, with no duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from switchover.data.move_tables import Side
from switchover.engine.store import StateStore
from tests.integration.datamove.datamove_helpers import PG_ORDERS, Writer, assert_identical, fill_pg, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "switchover", "data", *args]


def _checkpoint(state: Path, key: str) -> dict | None:  # type: ignore[type-arg]
    if not state.exists():
        return None
    store = StateStore(f"sqlite:///{state}")
    try:
        return store.get_checkpoint(key)
    finally:
        store.close()


def test_datamove_kill9_mid_backfill_resumes_without_duplicates(pg_pair: tuple[str, str], tmp_path: Path) -> None:
    src, dst = pg_pair
    fill_pg(src, 120_000)
    target = Side.open(dst, autocommit=True)
    target.execute(PG_ORDERS)
    target.close()
    state = tmp_path / "state.db"
    argv = _cli("backfill", src, dst, "--table", "orders", "--chunk-time", "0.05s", "--state",
                f"sqlite:///{state}", "--json")
    key = f"backfill:{dst}:orders"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (_checkpoint(state, key) or {}).get("rows", 0) >= 10_000, 60, "the first chunks")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = _checkpoint(state, key)
    assert killed_at is not None and killed_at["state"] == "running" and killed_at["rows"] < 120_000

    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["state"] == "done"
    assert summary["rows"] >= 120_000  # counts the rows of both runs
    store = StateStore(f"sqlite:///{state}")
    starts = [e for e in store.events("backfill:orders") if e.kind == "backfill_started"]
    assert starts[-1].payload["resumed_from"] is not None, "the rerun must resume, not start over"
    assert int(starts[-1].payload["resumed_from"][0]) >= 10_000
    assert_identical(src, dst)


def test_datamove_kill9_mid_cdc_resumes_exactly_once(pg_pair: tuple[str, str], tmp_path: Path) -> None:
    src, dst = pg_pair
    fill_pg(src, 2_000)
    target = Side.open(dst, autocommit=True)
    target.execute(PG_ORDERS)
    target.close()
    # Copy the rows first (CDC captures from its own start), then stream changes.
    assert subprocess.run(_cli("cdc", src, dst, "--table", "orders", "--prepare-only"), timeout=60).returncode == 0
    assert subprocess.run(_cli("backfill", src, dst, "--table", "orders", "--state", f"sqlite:///{tmp_path}/s.db",
                               "--json"), capture_output=True, timeout=60).returncode == 0
    cdc_argv = _cli("cdc", src, dst, "--table", "orders", "--json")
    writer = Writer(src, 2_000, pause=0.003, limit=3_000).start()
    proc = subprocess.Popen(cdc_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    side = Side.open(dst, autocommit=True)

    def applied() -> int:  # rows the writer inserted or updated that CDC has carried over
        rows = side.execute("SELECT count(*) FROM orders WHERE status IN ('live', 'changed')")
        return int(rows[0][0])

    try:
        wait_for(lambda: applied() >= 150, 60, "CDC to apply some changes")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    # Changes keep arriving while CDC is down (counted, not timed: a faster apply reaches 150 sooner).
    down_at = writer.done
    wait_for(lambda: writer.done >= max(301, down_at + 50), 60, "writes while CDC is down")
    proc2 = subprocess.Popen(cdc_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        writes = writer.stop()
        assert writes > 300
        source = Side.open(src, autocommit=True)
        source.execute("INSERT INTO orders (id, customer, status) VALUES (999999999, 0, 'sentinel')")
        source.close()
        wait_for(lambda: bool(side.execute("SELECT 1 FROM orders WHERE id = 999999999")), 60, "the sentinel")
    finally:
        proc2.send_signal(signal.SIGTERM)
        out, errs = proc2.communicate(timeout=30)
    assert proc2.returncode == 0, errs
    assert json.loads(out)["state"] == "stopped"
    side.close()
    assert_identical(src, dst)
