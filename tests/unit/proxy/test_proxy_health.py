"""Passive ejection and the retry budget (time passed in)."""

from __future__ import annotations

from switchover.traffic.proxy.health import Ejection, RetryBudget


def test_ejection_after_n_consecutive_failures_and_recovery_by_probe() -> None:
    ejection = Ejection(consecutive_limit=3, base_time=30)
    ejection.failure(0)
    ejection.failure(1)
    ejection.success()  # a success resets the streak
    ejection.failure(2)
    ejection.failure(3)
    assert not ejection.is_ejected()
    ejection.failure(4)
    assert ejection.is_ejected() and ejection.ejections == 1
    assert not ejection.admit(20)  # still within the ejection time: traffic goes to stable
    assert ejection.admit(34.5)  # time is up: this request is the probe
    assert not ejection.admit(34.6)  # one probe at a time
    ejection.success()
    assert not ejection.is_ejected() and ejection.admit(35)


def test_a_failed_probe_ejects_again_for_longer() -> None:
    ejection = Ejection(consecutive_limit=1, base_time=10)
    ejection.failure(0)
    assert ejection.ejected_until == 10
    assert ejection.admit(10)
    ejection.failure(10)
    assert ejection.ejections == 2 and ejection.ejected_until == 30  # 2 x base time
    assert not ejection.admit(29)


def test_retry_budget_bounds_retries_in_flight() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrency=3)
    # Quiet service: the floor allows a few retries at once.
    assert [budget.try_retry(requests_in_flight=1) for _ in range(4)] == [True, True, True, False]
    budget.retry_done()
    assert budget.try_retry(1)
    # Busy service: 20% of 100 requests in flight.
    busy = RetryBudget(ratio=0.2, min_concurrency=3)
    granted = sum(busy.try_retry(requests_in_flight=100) for _ in range(50))
    assert granted == 20
