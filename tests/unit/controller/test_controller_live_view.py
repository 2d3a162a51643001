from __future__ import annotations

from rich.console import Console

from switchover.engine.state import fold
from switchover.engine.store import Event
from switchover.ui.live import LiveView, render


def ev(seq: int, kind: str, payload: dict, actor: str = "controller") -> Event:  # type: ignore[type-arg]
    return Event("r1", seq, 1_700_000_000.0 + seq, kind, actor, payload)


STATE = fold([
    ev(1, "run_started", {"plan": "orders", "steps": ["canary", "canary"]}, actor="ann@h"),
    ev(2, "step_entered", {"index": 0, "kind": "canary"}),
    ev(3, "weight_set", {"weight": 10, "mirror": 0, "reason": "step"}),
    ev(4, "gate_evaluated", {"outcome": "fail", "reason": "errors", "verdicts": [
        {"gate": "slo.error_rate", "outcome": "fail", "reason": "candidate error rate 9.00% (9/100) above 0.50%"}]}),
])


def test_live_view_shows_step_weight_hold_verdicts_and_journal() -> None:
    console = Console(record=True, width=140)
    console.print(render(STATE, {"saturation_source": False, "canary": {"requests": 100, "errors": 9},
                                 "stable": {"requests": 900, "errors": 0}}, hold_left=42))
    text = console.export_text()
    for expected in ("1/2 canary", "10% to the candidate", "42s", "slo.error_rate", "9.00% (9/100)",
                     "no source configured", "weight_set", "candidate 100 req / 9 err"):
        assert expected in text, expected


def test_without_a_terminal_it_prints_one_line_per_event() -> None:
    console = Console(record=True, width=140, force_terminal=False)
    view = LiveView(console)
    view.update(STATE, {})
    view.update(STATE, {})  # nothing new: nothing printed twice
    lines = [line for line in console.export_text().splitlines() if line.strip()]
    assert len(lines) == 4 and "weight 10%" in lines[2] and "fail: errors" in lines[3]


def test_a_shadow_step_says_what_it_mirrors_and_what_it_found() -> None:
    state = fold([
        ev(1, "run_started", {"plan": "orders", "steps": ["shadow"]}),
        ev(2, "shadow_started", {"percent": 20, "budget": 0.001, "min_compared": 1000, "source": "mirror"}),
        ev(3, "shadow_result", {"outcome": "fail", "summary": "12 of 2000 compared answers regressed (0.6000%)"}),
        ev(4, "shadow_started", {"percent": 0, "budget": 0.01, "min_compared": 50, "source": "replay rec.jsonl"}),
    ])
    console = Console(record=True, width=160, force_terminal=False)
    LiveView(console).update(state, {})
    lines = [line for line in console.export_text().splitlines() if line.strip()]
    assert "mirror 20%, budget 0.10%, at least 1000 compared" in lines[1]
    assert "fail: 12 of 2000 compared answers regressed" in lines[2]
    assert "replay rec.jsonl, budget 1.00%, at least 50 compared" in lines[3]
