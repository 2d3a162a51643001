"""The command router: real processes, argv only (no shell), {weight}/{mirror} substituted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from switchover.errors import UserError
from switchover.plan import Plan, plan_from_dict
from switchover.traffic.base import router_for

SCRIPT = """
import sys, pathlib
state = pathlib.Path(sys.argv[1])
if sys.argv[2] == "set":
    state.write_text(sys.argv[3] + " " + sys.argv[4])
else:
    print(state.read_text() if state.exists() else "0")
"""


def command_plan(tmp_path: Path, set_extra: list[str] | None = None) -> Plan:
    script = tmp_path / "router.py"
    script.write_text(SCRIPT)
    state = tmp_path / "weight"
    return plan_from_dict({
        "name": "orders", "stable": {"url": "http://127.0.0.1:8081"}, "candidate": {"url": "http://127.0.0.1:8082"},
        "traffic": {"driver": "command", "command": {
            "set_weight": [sys.executable, str(script), str(state), "set", "{weight}", "{mirror}", *(set_extra or [])],
            "get_weight": [sys.executable, str(script), str(state), "get"]}},
    })


def test_set_and_read_back(tmp_path: Path) -> None:
    router = router_for(command_plan(tmp_path))
    assert router.is_online()
    assert router.get_routes() == (0, 0)
    router.set_routes(25, 10)
    assert (tmp_path / "weight").read_text() == "25 10"
    assert router.get_routes() == (25, 10)


def test_no_shell_interpretation(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    plan = command_plan(tmp_path, [f"; touch {marker}"])
    router_for(plan).set_routes(5, 0)
    assert not marker.exists()
    assert router_for(plan).get_routes() == (5, 0)


def test_failing_and_garbage_commands_are_clear_errors(tmp_path: Path) -> None:
    plan = command_plan(tmp_path)
    (tmp_path / "weight").write_text("lots")
    with pytest.raises(UserError, match=r"get_weight.*printed 'lots'"):
        router_for(plan).get_routes()
    assert not router_for(plan).is_online()
    broken = plan.model_copy(update={"traffic": plan.traffic.model_copy(update={
        "command": plan.traffic.command.model_copy(update={"set_weight": ["/no/such/router"]})})})  # type: ignore[union-attr]
    with pytest.raises(UserError, match="command not found: /no/such/router"):
        router_for(broken).set_routes(10, 0)
