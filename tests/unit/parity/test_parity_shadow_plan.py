"""The shadow step's ``replay_loop`` and ``replay_rate`` in the plan: for a replay file, an error without one."""

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


@pytest.mark.parametrize("key", ["replay_loop: false", "replay_rate: 50"])
def test_replay_options_without_a_replay_file_name_the_line_and_say_what_to_do(tmp_path: Path, key: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(HEAD + f"  - canary: {{weight: 10}}\n  - shadow: {{percent: 10, {key}}}\n")
    with pytest.raises(UserError) as err:
        load_plan(plan)
    assert f"{plan}:6: steps[1].shadow" in str(err.value)
    assert f"{key.split(':')[0]} applies to a replay: file only" in str(err.value)


def test_a_replay_rate_must_be_positive(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(HEAD + "  - shadow: {percent: 10, replay: a.jsonl, replay_rate: 0}\n")
    with pytest.raises(UserError) as err:
        load_plan(plan)
    assert f"{plan}:5: steps[0].shadow.replay_rate" in str(err.value) and "greater than 0" in str(err.value)
