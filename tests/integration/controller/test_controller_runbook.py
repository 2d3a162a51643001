"""Runbook steps inside a real run: command and webhook pass on success, a failing one rolls back
before any traffic moved."""

from __future__ import annotations

from pathlib import Path

from .conftest import cli, events, split, state, weights_moved


def test_command_and_webhook_steps_then_a_failing_command_rolls_back(make_stack, notifications,  # type: ignore[no-untyped-def]
                                                                      tmp_path: Path) -> None:
    marker = tmp_path / "prewarmed"
    steps = (f'[{{command: {{argv: ["sh", "-c", "echo ok > {marker}"]}}}}, '
             '{webhook: {url: "env:SW_CONTROLLER_NOTIFY_URL", body: {change: "orders-v2"}}}, '
             '{command: {argv: ["sh", "-c", "echo scale failed >&2; exit 3"]}}, '
             '{canary: {weight: 10, hold: 1s}}]')
    s = make_stack(steps=steps)
    done = cli("run", str(s.plan_path))
    assert done.returncode == 1, done.stderr
    assert "step 3 (command) failed" in done.stderr and "exit 3" in done.stderr
    assert marker.read_text().strip() == "ok"
    assert {"path": "/hooks/SECRET-TOKEN-123", "change": "orders-v2"} in notifications.bodies
    evs = events(s)
    results = [e.payload for e in evs if e.kind == "command_result"]
    assert [r["ok"] for r in results] == [True, False] and "scale failed" in results[1]["output"]
    webhook = next(e.payload for e in evs if e.kind == "webhook_result")
    assert webhook["ok"] and "SECRET-TOKEN-123" not in str(webhook)
    assert weights_moved(evs) == [] and split(s) == (0, 0) and state(s).outcome == "rolled_back"
