"""Full runs against the real proxy: promotion under load, automatic rollback, readiness, bad plans."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from switchover.demo.load import LoadGenerator
from switchover.engine.controller import Controller, metrics_for
from switchover.engine.store import StateStore
from switchover.plan import load_plan
from switchover.traffic.base import router_for

from .conftest import cli, events, split, state, wait_until, weights_moved


def _controller(plan_path: Path) -> Controller:
    plan = load_plan(plan_path)
    return Controller(plan, StateStore(plan.state_url(), plan.base_dir()), router_for(plan), metrics_for(plan))


@pytest.mark.slow
def test_full_cutover_under_load_promotes_with_zero_failed_requests(make_stack) -> None:  # type: ignore[no-untyped-def]
    s = make_stack()
    load = LoadGenerator("127.0.0.1", s.ports["listen"], rate=250, duration=60, workers=4)
    load.start()
    try:
        outcome = _controller(s.plan_path).run()
    finally:
        result = load.stop()
    assert outcome == "promoted"
    assert split(s) == (100, 0)  # the proxy keeps serving at 100% after the controller is gone
    assert result.total > 1000 and result.total_failed == 0, result.failures[:5]
    assert result.by_version.get("v2", 0) > 0 and result.by_version.get("v1", 0) > 0
    evs = events(s)
    assert weights_moved(evs) == [10, 50, 100]
    assert [e.payload["outcome"] for e in evs if e.kind == "run_finished"] == ["promoted"]
    assert any(e.kind == "gate_evaluated" and e.payload["outcome"] == "pass" for e in evs)
    # A new run would start from 0% and send the users now on v2 back to v1: refused, nothing moved.
    again = cli("run", str(s.plan_path))
    assert again.returncode == 2 and "already sends 100%" in again.stderr and split(s) == (100, 0)


@pytest.mark.slow
def test_ten_percent_5xx_rolls_back_within_failure_limit_plus_one(make_stack, notifications, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = make_stack(v2_args=("--error-rate", "0.1"),
                   steps="[{canary: {weight: 10, hold: 60s}}, {canary: {weight: 100, hold: 2s}}]")
    load = LoadGenerator("127.0.0.1", s.ports["listen"], rate=300, duration=60, workers=4)
    load.start()
    try:
        outcome = _controller(s.plan_path).run()
    finally:
        load.stop()
    assert outcome == "rolled_back"
    assert split(s) == (0, 0)
    evs = events(s)
    judged = [e for e in evs if e.kind == "gate_evaluated" and e.payload["weight"] == 10]
    # Rolled back at the first moment the rule allows (failure_limit 3 consecutive fails, or the
    # breach outlasting max_breach), never later. A window with too few requests on a loaded machine
    # is inconclusive (never a pass) and breaks a streak; with ~30 candidate requests per interval,
    # one interval in 25 sees none of the 10% errors and passes, which restarts the count.
    outcomes = [e.payload["outcome"] for e in judged]
    shown = [(o, e.payload.get("reason", "")[:160]) for o, e in zip(outcomes, judged, strict=True)]
    rollback_reason = next(e for e in evs if e.kind == "rollback").payload["reason"]
    if "breach" not in rollback_reason:
        assert outcomes[-3:] == ["fail"] * 3, shown
    assert "fail,fail,fail" not in ",".join(outcomes[:-1]), shown  # no earlier streak went unheeded
    assert outcomes.count("pass") <= 2, shown  # a 10% error rate is seen as such
    rollback = next(e for e in evs if e.kind == "rollback")
    assert "error" in rollback.payload["reason"] and rollback.actor == "controller"
    assert (tmp_path / "hook.log").read_text().count("rolled-back") == 1
    # The notifier's URL carries a token: it never reaches the journal.
    assert "SECRET-TOKEN-123" not in str([e.payload for e in evs])
    events_sent = [b["event"] for b in notifications.bodies]
    assert events_sent == ["step_entered", "rollback", "run_finished"]
    assert "error" in notifications.bodies[1]["text"]
    assert weights_moved(evs) == [10]


def test_candidate_not_ready_moves_nothing(make_stack) -> None:  # type: ignore[no-untyped-def]
    s = make_stack(ready="/not-there")
    done = cli("run", str(s.plan_path))
    assert done.returncode == 1, done.stderr
    # The readiness probe, or the preflight checks when installed, name the failing path.
    assert "/not-there" in done.stderr and ("not ready" in done.stderr or "preflight failed" in done.stderr)
    assert split(s) == (0, 0)
    evs = events(s)
    assert weights_moved(evs) == [] and state(s).outcome == "aborted"


def test_bad_plan_exits_2_naming_file_line_and_field(tmp_path: Path) -> None:
    plan = tmp_path / "bad.yaml"
    plan.write_text("name: x\nstable: {url: 'http://127.0.0.1:1'}\ncandidate: {url: 'http://127.0.0.1:2'}\n"
                    "analysis:\n  intervall: 5s\nsteps:\n  - canary: {weight: 140}\n")
    done = cli("run", str(plan))
    assert done.returncode == 2
    assert f"{plan}:5: analysis.intervall: unknown key" in done.stderr
    assert f"{plan}:7: steps[0].canary.weight" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_metrics_are_inconclusive_then_the_plans_action(make_stack) -> None:  # type: ignore[no-untyped-def]
    s = make_stack(inconclusive_limit=2, on_inconclusive="rollback",
                   steps="[{canary: {weight: 10, hold: 30s}}]")
    plan = load_plan(s.plan_path)
    controller = Controller(plan, StateStore(plan.state_url(), plan.base_dir()), router_for(plan), metrics_for(plan))
    outcome: list[str] = []
    load = LoadGenerator("127.0.0.1", s.ports["listen"], rate=250, duration=60, workers=4)
    load.start()
    thread = threading.Thread(target=lambda: outcome.append(controller.run()), daemon=True)
    thread.start()
    wait_until(lambda: state(s).weight == 10, 30, "weight 10")
    # From now on the provider reads a dead admin address (as if the metrics source went away).
    dead = plan.model_copy(update={"traffic": plan.traffic.model_copy(update={"admin": "127.0.0.1:9"})})
    controller.metrics = metrics_for(dead)
    thread.join(60)
    load.stop()
    assert outcome == ["rolled_back"]
    evs = events(s)
    judged = [e.payload for e in evs if e.kind == "gate_evaluated"]
    assert judged[-2:] and all(p["outcome"] == "inconclusive" for p in judged[-2:])
    assert "no data" in judged[-1]["reason"]
    assert "inconclusive_limit" in next(e for e in evs if e.kind == "rollback").payload["reason"]
    assert split(s) == (0, 0)
