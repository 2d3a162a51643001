from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from switchover.engine.state import fold
from switchover.engine.store import Event, StateStore
from switchover.metrics.base import LATENCY_BOUNDS, Window
from switchover.metrics.builtin import delta, parse_stats


def ev(seq: int, kind: str, payload: dict | None = None, actor: str = "controller") -> Event:  # type: ignore[type-arg]
    return Event("r1", seq, float(seq), kind, actor, payload or {})


def test_fold_tracks_step_weight_verdicts_and_rollback() -> None:
    events = [
        ev(1, "run_started", {"plan": "orders", "steps": ["canary", "canary"]}, actor="ann@h"),
        ev(2, "step_entered", {"index": 0, "kind": "canary"}),
        ev(3, "weight_set", {"weight": 10, "mirror": 0}),
        ev(4, "gate_evaluated", {"outcome": "pass", "verdicts": [{"gate": "slo.p95", "outcome": "pass"}]}),
        ev(5, "gate_evaluated", {"outcome": "fail", "reason": "errors"}),
        ev(6, "operator_command", {"command": "pause", "step_index": 0}, actor="bob@h"),
    ]
    s = fold(events)
    assert (s.step_index, s.weight, s.paused, len(s.intervals)) == (0, 10, True, 2)
    assert s.status == "paused"
    s = fold([ev(7, "rollback", {"reason": "manual"}, actor="bob@h"), ev(8, "rollback", {"reason": "again"})], s)
    assert s.weight == 0 and s.rollback_reason == "manual" and s.rollback_actor == "bob@h"
    s = fold([ev(9, "run_finished", {"outcome": "rolled_back", "reason": "manual"})], s)
    assert s.finished and s.status == "rolled_back"


def test_resume_clears_streaks_and_step_entry_resets_intervals() -> None:
    s = fold([ev(1, "run_started"), ev(2, "step_entered", {"index": 0}),
              ev(3, "gate_evaluated", {"outcome": "inconclusive"}), ev(4, "paused", {"reason": "x"}),
              ev(5, "operator_command", {"command": "resume"})])
    assert not s.paused and s.intervals == ()
    s = fold([ev(6, "gate_evaluated", {"outcome": "pass"}), ev(7, "step_entered", {"index": 1})], s)
    assert s.intervals == () and s.step_index == 1


@given(st.lists(st.integers(0, 100), min_size=1, max_size=20))
def test_weight_is_the_last_weight_set(weights: list[int]) -> None:
    events = [ev(1, "run_started")] + [ev(i + 2, "weight_set", {"weight": w, "mirror": 0}) for i, w in enumerate(weights)]
    assert fold(events).weight == weights[-1]


def test_fold_of_a_stored_journal_equals_the_fold_of_its_events(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path}/j.db")
    store.append("r9", "run_started", "a@b", {"plan": "p", "steps": ["canary"]})
    store.append("r9", "weight_set", "controller", {"weight": 25, "mirror": 5})
    assert fold(store.events()).weight == 25 and fold(store.events()).mirror == 5


def _stats(started: float, canary: tuple[int, int, int], stable: tuple[int, int, int], ejected: bool = False) -> dict:  # type: ignore[type-arg]
    def role(req: int, err: int, fast: int) -> dict:  # type: ignore[type-arg]
        counts = [0] * (len(LATENCY_BOUNDS) + 1)
        counts[10] = fast
        counts[20] = req - fast
        return {"requests": req, "errors": err, "status": {"200": req - err}, "latency_counts": counts,
                "latency_sum": 0.01 * req}
    return {"app": "t", "started_at": started, "now": started + 1, "split": {"candidate_weight": 10, "mirror_percent": 0},
            "latency_bounds": list(LATENCY_BOUNDS), "roles": {"stable": role(*stable), "canary": role(*canary)},
            "candidate": {"ejected": ejected, "ejections": 0, "consecutive_failures": 0}}


def test_builtin_delta_between_two_snapshots() -> None:
    a = parse_stats(_stats(100.0, (10, 1, 5), (90, 0, 50)))
    b = parse_stats(_stats(100.0, (40, 4, 20), (390, 1, 200), ejected=True))
    w = Window(0, 1)
    c = delta("canary", w, a, b)
    s = delta("stable", w, a, b)
    assert c is not None and (c.requests, c.errors, c.ejected) == (30, 3, True)
    assert c.histogram is not None and c.histogram.count == 30
    assert s is not None and (s.requests, s.errors, s.ejected) == (300, 1, False)


def test_builtin_delta_across_a_proxy_restart_is_inconclusive() -> None:
    a = parse_stats(_stats(100.0, (40, 4, 20), (390, 1, 200)))
    restarted = parse_stats(_stats(200.0, (5, 0, 5), (50, 0, 50)))
    went_down = parse_stats(_stats(100.0, (5, 0, 5), (50, 0, 50)))
    assert delta("canary", Window(0, 1), a, restarted) is None
    assert delta("canary", Window(0, 1), a, went_down) is None
