"""The controller as a process: kill -9 and resume, rollback with the controller dead or alive,
operator commands through the controller API."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from .conftest import cli, events, split, start_run, state, wait_until, weights_moved

LONG = "[{canary: {weight: 10, hold: 2s}}, {canary: {weight: 25, hold: 6s}}, {canary: {weight: 100, hold: 1s}}]"


@pytest.mark.slow
def test_kill_9_mid_hold_then_restart_resumes_same_step_and_weight(make_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from switchover.demo.load import LoadGenerator

    s = make_stack(steps=LONG)
    load = LoadGenerator("127.0.0.1", s.ports["listen"], rate=200, duration=60, workers=3)
    load.start()
    try:
        first = start_run(s.plan_path, tmp_path / "run1.log")
        wait_until(lambda: state(s).weight == 25, 40, "weight 25")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert split(s) == (25, 0)  # users stay where they were
        before = state(s)
        second = start_run(s.plan_path, tmp_path / "run2.log")
        assert second.wait(60) == 0, (tmp_path / "run2.log").read_text()
    finally:
        result = load.stop()
    evs = events(s)
    assert weights_moved(evs) == [10, 25, 100]  # no extra traffic change because of the restart
    restarted = [e for e in evs if e.kind == "controller_started"]
    assert [e.payload["resumed"] for e in restarted] == [False, True]
    assert restarted[1].payload["step"] == before.step_index and restarted[1].payload["weight"] == 25
    reasserted = [e.payload for e in evs if e.kind == "weight_set" and e.payload["reason"] != "step"]
    assert [p["weight"] for p in reasserted] == [25]
    assert len({e.run_id for e in evs}) == 1 and state(s).outcome == "promoted"
    assert result.total_failed == 0


@pytest.mark.slow
def test_rollback_with_the_controller_dead_is_idempotent(make_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = make_stack(steps="[{canary: {weight: 10, hold: 60s}}]", min_requests=100000)
    run = start_run(s.plan_path, tmp_path / "run.log")
    wait_until(lambda: state(s).weight == 10, 40, "weight 10")
    os.kill(run.pid, signal.SIGKILL)
    run.wait(10)
    done = cli("rollback", str(s.plan_path), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["routed"] and not report["repeat"]
    assert split(s) == (0, 0)
    again = cli("rollback", str(s.plan_path), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["repeat"] is True
    assert (tmp_path / "hook.log").read_text().count("rolled-back") == 1  # hooks ran once
    status = json.loads(cli("status", str(s.plan_path), "--json").stdout)
    assert status["weight"] == 0 and status["rollback"]["actor"] != "controller"
    # A controller started again sees the recorded rollback and moves nothing.
    third = cli("run", str(s.plan_path))
    assert third.returncode == 1 and split(s) == (0, 0)
    assert weights_moved(events(s)) == [10]


@pytest.mark.slow
def test_live_controller_sees_a_cli_rollback_and_stops(make_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = make_stack(steps="[{canary: {weight: 10, hold: 60s}}, {canary: {weight: 100, hold: 1s}}]",
                   min_requests=100000)
    run = start_run(s.plan_path, tmp_path / "run.log")
    wait_until(lambda: state(s).weight == 10, 40, "weight 10")
    assert cli("rollback", str(s.plan_path), "--reason", "on-call says no").returncode == 0
    assert run.wait(30) == 1
    final = state(s)
    assert final.outcome == "rolled_back" and "on-call says no" in final.finish_reason
    assert weights_moved(events(s)) == [10] and split(s) == (0, 0)


@pytest.mark.slow
def test_operator_pause_promote_and_abort_through_the_api(make_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = make_stack(steps="[{manual: {prompt: 'on-call paged'}}, {canary: {weight: 10, hold: 600s}}, "
                         "{pause: {}}, {canary: {weight: 100, hold: 600s}}]", min_requests=100000,
                   inconclusive_limit=1000)
    run = start_run(s.plan_path, tmp_path / "run.log")
    wait_until(lambda: state(s).step_kind == "manual", 40, "the manual step")
    assert cli("confirm", str(s.plan_path)).returncode == 0
    wait_until(lambda: state(s).weight == 10, 20, "weight 10 after the manual step")
    exported = httpx.get(f"http://127.0.0.1:{s.ports['api']}/metrics", timeout=5).text
    assert 'switchover_run_weight_percent{plan="sw-controller-it"} 10.0' in exported
    assert cli("pause", str(s.plan_path)).returncode == 0
    wait_until(lambda: state(s).paused, 10, "paused")
    refused = cli("confirm", str(s.plan_path))
    assert refused.returncode == 2 and "not a manual step" in refused.stderr
    assert cli("promote", str(s.plan_path)).returncode == 0  # ends the 600 s hold
    wait_until(lambda: state(s).step_kind == "pause", 20, "the pause step")
    assert state(s).weight == 10
    assert cli("abort", str(s.plan_path)).returncode == 0
    assert run.wait(30) == 1
    final = state(s)
    assert final.outcome == "aborted" and split(s) == (0, 0)
    assert weights_moved(events(s)) == [10]
    metrics = cli("status", str(s.plan_path), "--json")
    assert json.loads(metrics.stdout)["status"] == "aborted"
