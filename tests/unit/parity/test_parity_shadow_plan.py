"""The shadow step's ``replay_loop`` in the plan: on by default with a replay file, an error without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchover.errors import UserError
from switchover.plan import load_plan

HEAD = """\
name: loop
stable: {url: "http://127.0.0.1:8001"}
candidate: {url: "http://127.0.0.1:8002"}
steps:
"""


def test_a_replay_file_is_looped_unless_the_plan_says_once(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(HEAD + "  - shadow: {percent: 10, replay: a.jsonl}\n"
                           "  - shadow: {percent: 10, replay: b.jsonl, replay_loop: false}\n")
    first, second = (s["shadow"] for s in load_plan(plan).steps)
    assert (first.replay_loop, second.replay_loop) == (True, False)


def test_replay_loop_without_a_replay_file_names_the_line_and_says_what_to_do(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(HEAD + "  - canary: {weight: 10}\n  - shadow: {percent: 10, replay_loop: false}\n")
    with pytest.raises(UserError) as err:
        load_plan(plan)
    assert f"{plan}:6: steps[1].shadow" in str(err.value)
    assert "replay_loop applies to a replay: file only" in str(err.value)
