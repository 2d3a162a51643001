"""The data-movement commands as users run them: --plan, --status/--pause/--resume, --json, and bad
input (exit 2, a message naming what is wrong, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from switchover.data.move_tables import Side
from tests.integration.datamove.datamove_helpers import PG_ORDERS, assert_identical, fill_pg, write_data_plan

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchover", "data", *args], capture_output=True, text=True,
                          timeout=90)


def test_datamove_backfill_from_plan_with_status_and_pause(pg_pair: tuple[str, str], tmp_path: Path) -> None:
    src, dst = pg_pair
    fill_pg(src, 3_000)
    Side.open(dst, autocommit=True).execute(PG_ORDERS)
    # A relative state: resolved beside the plan, whatever the working directory.
    plan = write_data_plan(tmp_path, "clitest", src, dst, ("canary: {weight: 10}",), state="sqlite:///state.db")
    paused = _run("backfill", "--plan", str(plan), "--pause", "--json")
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["command"] == "paused"
    # The flag lives in the plan's store; a running copy (the controller's too) reads it before every
    # chunk (test_datamove_steps shows a paused copy waiting).
    assert json.loads(_run("backfill", "--plan", str(plan), "--resume", "--json").stdout)["command"] == "resumed"
    done = _run("backfill", "--plan", str(plan), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 3_000
    status = _run("backfill", "--plan", str(plan), "--status", "--json")
    assert json.loads(status.stdout)["state"] == "done" and json.loads(status.stdout)["paused"] is False
    assert (tmp_path / "state.db").exists()  # the plan's store, relative to the plan's folder
    assert_identical(src, dst)


@pytest.mark.parametrize(("args", "message"), [
    (["backfill"], "give SRC_URL DST_URL --table T"),
    (["backfill", "postgresql://postgres@127.0.0.1:5432/nope_sw_datamove", "sqlite:///x.db", "--table", "t"],
     "cannot connect to postgresql://postgres@127.0.0.1:5432/nope_sw_datamove"),
    (["backfill", "nosuch://x", "sqlite:///x.db", "--table", "t"], "SRC_URL: unsupported database"),
    (["cdc", "postgresql://postgres@127.0.0.1:5432/postgres", "sqlite:///x.db", "--table", "t", "--target-table",
      "u", "--table", "v"], "--target-table applies to a single --table"),
    (["backfill", "postgresql://postgres@127.0.0.1:5432/postgres", "sqlite:///x.db", "--table", "t",
      "--chunk-time", "fast"], "--chunk-time: not a duration"),
])
def test_datamove_bad_input_exits_2_with_a_clear_message(args: list[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "switchover", "data", *args], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_datamove_backfill_missing_table_names_it(pg_pair: tuple[str, str], tmp_path: Path) -> None:
    src, dst = pg_pair
    done = subprocess.run([sys.executable, "-m", "switchover", "data", "backfill", src, dst, "--table", "ghost",
                           "--state", f"sqlite:///{tmp_path}/s.db"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "table 'ghost' not found" in done.stderr


def test_datamove_target_refusing_rows_stops_with_exit_2_and_keeps_checkpoint(pg_pair: tuple[str, str],
                                                                               tmp_path: Path) -> None:
    src, dst = pg_pair
    fill_pg(src, 1_000)
    Side.open(dst, autocommit=True).execute(PG_ORDERS.replace("note text", "note varchar(3)"))
    done = _run("backfill", src, dst, "--table", "orders", "--state", f"sqlite:///{tmp_path}/s.db")
    assert done.returncode == 2
    assert "backfill of orders stopped" in done.stderr and "value too long" in done.stderr
    assert "Traceback" not in done.stderr
    status = json.loads(_run("backfill", src, dst, "--table", "orders", "--state", f"sqlite:///{tmp_path}/s.db",
                             "--status", "--json").stdout)
    assert status["state"] == "failed"


def test_datamove_debezium_out_then_in_reproduces_the_changes(pg_pair: tuple[str, str], tmp_path: Path) -> None:
    """`data cdc --debezium-out` writes the applied changes as Debezium JSON lines; `--debezium-in`
    applies them to another target, which then matches the source."""
    import signal
    import time

    from tests.integration.datamove.datamove_helpers import SQLITE_ORDERS, wait_for

    src, _ = pg_pair
    fill_pg(src, 200)
    targets = [tmp_path / "a.db", tmp_path / "b.db"]
    for t in targets:
        Side.open(f"sqlite:///{t}").execute(SQLITE_ORDERS)
    a, b = (f"sqlite:///{t}" for t in targets)
    assert _run("cdc", src, a, "--table", "orders", "--prepare-only").returncode == 0
    for t in (a, b):
        assert _run("backfill", src, t, "--table", "orders", "--state", f"sqlite:///{tmp_path}/s.db",
                    "--json").returncode == 0
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "switchover", "data", "cdc", src, a, "--table", "orders",
                             "--debezium-out", str(events)], stderr=subprocess.PIPE, text=True)
    try:
        s = Side.open(src, autocommit=True)
        s.execute("INSERT INTO orders (id, customer, amount, status) VALUES (1001, 5, 3.25, 'new')")
        s.execute("UPDATE orders SET status = 'paid', amount = 12.5 WHERE id = 10")
        s.execute("UPDATE orders SET id = 2002 WHERE id = 11")
        s.execute("DELETE FROM orders WHERE id = 12")
        s.execute("INSERT INTO orders (id, customer, amount, status) VALUES (999999, 0, 0, 'sentinel')")
        s.close()
        wait_for(lambda: bool(Side.open(a).execute("SELECT 1 FROM orders WHERE id = 999999")), 60, "the sentinel")
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["op"] for e in lines] == ["c", "u", "u", "d", "c"]
    assert lines[2]["before"] == {"id": "11"} and lines[2]["after"]["id"] == "2002"
    assert lines[0]["source"]["table"] == "orders" and lines[0]["source"]["pos"]
    applied = _run("cdc", src, b, "--table", "orders", "--debezium-in", str(events), "--duration", "2s", "--json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["changes"] == 5
    assert_identical(src, b)


def test_datamove_cdc_serves_lag_metrics(pg_pair: tuple[str, str], tmp_path: Path) -> None:
    import signal
    import socket

    import httpx

    from tests.integration.datamove.datamove_helpers import wait_for

    src, dst = pg_pair
    fill_pg(src, 10)
    Side.open(dst, autocommit=True).execute(PG_ORDERS)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "switchover", "data", "cdc", src, dst, "--table", "orders",
                             "--metrics", f"127.0.0.1:{port}", "--duration", "60s"], stderr=subprocess.PIPE, text=True)
    try:
        def applied() -> bool:
            try:
                Side.open(src, autocommit=True).execute(
                    "INSERT INTO orders (id, customer) VALUES ((SELECT max(id) + 1 FROM orders), 1)")
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except (httpx.HTTPError, OSError):
                return False
            return "switchover_cdc_applied_changes_total" in body and 'switchover_cdc_lag_seconds{stream=' in body

        wait_for(applied, 60, "lag and change counters on /metrics")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
