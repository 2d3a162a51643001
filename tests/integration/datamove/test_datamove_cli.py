"""The data-movement commands as users run them: --plan, --status/--pause/--resume, --json, and bad
input (exit 2, a message naming what is wrong, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from switchover.data.move_tables import Side
from tests.integration.datamove.datamove_helpers import PG_ORDERS, assert_identical, fill_pg

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchover", "data", *args], capture_output=True, text=True,
                          timeout=90)


def test_datamove_backfill_from_plan_with_status_and_pause(pg_pair: tuple[str, str], tmp_path: Path) -> None:
    src, dst = pg_pair
    fill_pg(src, 3_000)
    Side.open(dst, autocommit=True).execute(PG_ORDERS)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"""
name: clitest
stable: {{url: "http://127.0.0.1:18081"}}
candidate: {{url: "http://127.0.0.1:18082"}}
state: "sqlite:///state.db"
data:
  source: "{src}"
  target: "{dst}"
  tables: [{{name: orders, key: [id]}}]
steps: [{{canary: {{weight: 10}}}}]
""")
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
