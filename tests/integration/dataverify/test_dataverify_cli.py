"""The commands as users run them: exit codes, --json, --plan, clear errors, redacted passwords."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.dataverify.conftest import MY_URL, PG_URL, base_rows

pytestmark = [pytest.mark.postgres, pytest.mark.mariadb]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchover", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, check=False)


@pytest.fixture
def orders(tables: Any) -> tuple[str, str]:
    rows = base_rows(50)
    target = [list(r) for r in rows if r[0] != 7]
    target[0][1] = "changed"  # key 1
    tables.make("postgresql", "sw_dataverify_cli_orders", rows)
    tables.make("mysql", "sw_dataverify_cli_orders", target)
    tables.make("mysql", "sw_dataverify_cli_same", rows)
    return PG_URL, MY_URL


def test_cli_diff_reports_differences_with_exit_1_and_json(orders: tuple[str, str]) -> None:
    src, dst = orders
    out = run("data", "diff", src, dst, "--table", "sw_dataverify_cli_orders", "--json")
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert doc["equal"] is False
    table = doc["tables"][0]
    assert table["missing"] == [[7]] and table["extra"] == []
    assert table["changed"][0]["key"] == [1]
    assert set(table["changed"][0]["columns"]) == {"name"}

    text = run("data", "diff", src, dst, "-t", "sw_dataverify_cli_orders")
    assert text.returncode == 1
    assert "missing in target: (id) = (7)" in text.stdout
    assert "changed: (id) = (1): name:" in text.stdout


def test_cli_diff_equal_exit_0_and_column_choice(orders: tuple[str, str]) -> None:
    src, dst = orders
    same = run("data", "diff", src, dst, "-t", "sw_dataverify_cli_orders", "--target-table", "sw_dataverify_cli_same")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "equal" in same.stdout
    # comparing only `amount` hides the changed name, not the missing row
    only = run("data", "diff", src, dst, "-t", "sw_dataverify_cli_orders", "-c", "amount", "--json")
    assert only.returncode == 1
    assert json.loads(only.stdout)["tables"][0]["changed"] == []


def test_cli_bad_input_and_unreachable_exit_2_without_traceback(orders: tuple[str, str]) -> None:
    src, dst = orders
    missing = run("data", "diff", src, dst, "-t", "sw_dataverify_no_such")
    assert missing.returncode == 2
    assert "table sw_dataverify_no_such not found" in missing.stderr and "Traceback" not in missing.stderr
    bad_url = run("data", "diff", "oracle://x/y", dst, "-t", "t")
    assert bad_url.returncode == 2 and "unsupported database" in bad_url.stderr
    bad_where = run("data", "diff", src, dst, "-t", "sw_dataverify_cli_orders", "--where", "nonsense ((")
    assert bad_where.returncode == 2 and "query failed" in bad_where.stderr and "Traceback" not in bad_where.stderr
    down = run("data", "diff", "mysql://root:env:SW_DV_PW@127.0.0.1:1/x", dst, "-t", "t",
               env={"SW_DV_PW": "s3cret-pass-42"})
    assert down.returncode == 2 and "cannot connect to mysql://root:***@127.0.0.1:1/x" in down.stderr
    assert "s3cret-pass-42" not in down.stderr + down.stdout
    no_args = run("data", "diff", "-t", "t")
    assert no_args.returncode == 2 and "SRC_URL DST_URL" in no_args.stderr


def test_cli_check_aggregates_drift_and_tolerance(orders: tuple[str, str]) -> None:
    src, dst = orders
    same = run("data", "check", src, dst, "-t", "sw_dataverify_cli_orders", "--target-table", "sw_dataverify_cli_same",
               "--check", "count", "--check", "sum:amount", "--check", "max:created", "--json")
    assert same.returncode == 0, same.stdout + same.stderr
    assert [c["ok"] for c in json.loads(same.stdout)["tables"][0]["checks"]] == [True, True, True]
    drift = run("data", "check", src, dst, "-t", "sw_dataverify_cli_orders", "--json")
    assert drift.returncode == 1
    count = json.loads(drift.stdout)["tables"][0]["checks"][0]
    assert (count["check"], count["source"], count["target"]) == ("count", 50, 49)
    assert count["drift"] == pytest.approx(0.02)
    tolerant = run("data", "check", src, dst, "-t", "sw_dataverify_cli_orders", "--tolerance", "0.05")
    assert tolerant.returncode == 0, tolerant.stdout
    bad = run("data", "check", src, dst, "-t", "sw_dataverify_cli_orders", "--check", "median:x")
    assert bad.returncode == 2 and "unknown check 'median:x'" in bad.stderr


def test_cli_plan_mode(orders: tuple[str, str], tmp_path: Path) -> None:
    src, dst = orders
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"""name: orders
stable: {{url: "http://127.0.0.1:8081"}}
candidate: {{url: "http://127.0.0.1:8082"}}
data:
  source: "{src}"
  target: {{url: "{dst}"}}
  tables:
    - {{name: sw_dataverify_cli_orders, key: [id], checks: [count, "sum:amount"]}}
    - {{name: sw_dataverify_cli_orders, target_name: sw_dataverify_cli_same, key: [id]}}
""")
    diff = run("data", "diff", "--plan", str(plan), "--json")
    assert diff.returncode == 1, diff.stderr
    doc = json.loads(diff.stdout)
    assert [t["equal"] for t in doc["tables"]] == [False, True]
    check = run("data", "check", "--plan", str(plan), "--json")
    assert check.returncode == 1
    assert [c["check"] for c in json.loads(check.stdout)["tables"][0]["checks"]] == ["count", "sum:amount"]
    unknown = run("data", "diff", "--plan", str(plan), "-t", "nope")
    assert unknown.returncode == 2 and "nope not in the plan's data.tables" in unknown.stderr
