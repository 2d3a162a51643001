from __future__ import annotations

import pytest

from switchover.experiment import Experiment, ExperimentResult


def test_datamove_control_result_returned_and_mismatch_published() -> None:
    seen: list[ExperimentResult] = []
    exp: Experiment[int] = Experiment("orders.count", publish=seen.append)
    assert exp.run(lambda: 3, lambda: 4) == 3
    assert [r.matched for r in seen] == [False]
    assert (seen[0].control, seen[0].candidate) == (3, 4)
    assert exp.counters.mismatched == 1


def test_datamove_candidate_exception_recorded_not_raised() -> None:
    seen: list[ExperimentResult] = []
    exp: Experiment[int] = Experiment("x", publish=seen.append)

    def boom() -> int:
        raise RuntimeError("v2 broke")

    assert exp.run(lambda: 1, boom) == 1
    assert seen[0].candidate_error == "RuntimeError: v2 broke" and not seen[0].matched
    assert exp.counters.candidate_errors == 1


def test_datamove_control_exception_still_raised_after_candidate_ran() -> None:
    ran: list[bool] = []
    exp: Experiment[int] = Experiment("x")

    def control() -> int:
        raise KeyError("gone")

    with pytest.raises(KeyError):
        exp.run(control, lambda: ran.append(True) or 1)  # type: ignore[func-returns-value]
    assert ran == [True]


def test_datamove_sampling_by_percent() -> None:
    values = iter([0.05, 0.5, 0.09, 0.95])
    calls: list[int] = []
    exp: Experiment[int] = Experiment("x", percent=10, sample=lambda: next(values))
    for _ in range(4):
        exp.run(lambda: 1, lambda: calls.append(1) or 1)  # type: ignore[func-returns-value]
    assert len(calls) == 2 and exp.counters.compared == 2 and exp.counters.calls == 4
