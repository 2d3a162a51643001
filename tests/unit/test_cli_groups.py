"""The command loads only the modules of the group it runs (start-up time of short commands)."""

from __future__ import annotations

import subprocess
import sys

from switchover.cli import GROUP_MODULES, MODULES, _modules_for


def test_group_commands_load_their_group_and_others_load_everything() -> None:
    assert _modules_for(["data", "diff", "sqlite:///a", "sqlite:///b"]) == GROUP_MODULES["data"]
    assert _modules_for(["parity", "report", "--json"]) == GROUP_MODULES["parity"]
    assert _modules_for(["--help"]) == MODULES
    assert _modules_for(["rollback", "plan.yaml"]) == MODULES
    assert _modules_for([]) == MODULES


def test_data_diff_starts_without_the_proxy_controller_or_plan_models() -> None:
    code = ("import sys; sys.argv = ['switchover', 'data', 'diff', '--help']\n"
            "from switchover.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('switchover.plan', 'switchover.engine.controller', 'switchover.traffic.proxy.server',"
            " 'switchover.parity.diff') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "Exact row diff" in out  # the group's help is there
    assert "HEAVY []" in out
