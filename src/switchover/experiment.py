"""Scientist-style read comparisons: ``from switchover.experiment import Experiment``.

::

    exp = Experiment("orders.list", percent=10, publish=my_publisher)
    orders = exp.run(control=lambda: v1.list_orders(user), candidate=lambda: v2.list_orders(user))

The control's result (or exception) is what the caller gets, always. For a sampled call the
candidate also runs; its result is compared with the control's (``compare``, equality by default), its
exceptions are recorded and never raised, and an ``ExperimentResult`` is published. Counters say how
many calls were compared, matched, mismatched and how many times the candidate raised.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("switchover.experiment")


@dataclass(frozen=True)
class ExperimentResult:
    name: str
    matched: bool
    control: Any
    candidate: Any
    candidate_error: str | None
    control_ms: float
    candidate_ms: float


@dataclass
class ExperimentCounters:
    calls: int = 0
    compared: int = 0
    matched: int = 0
    mismatched: int = 0
    candidate_errors: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Experiment(Generic[T]):
    name: str
    percent: float = 100.0  # share of calls where the candidate also runs
    publish: Callable[[ExperimentResult], None] | None = None
    compare: Callable[[T, T], bool] = lambda a, b: a == b
    sample: Callable[[], float] = random.random  # in [0, 1); replaceable for tests
    clock: Callable[[], float] = time.perf_counter
    counters: ExperimentCounters = field(default_factory=ExperimentCounters)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def run(self, control: Callable[[], T], candidate: Callable[[], T]) -> T:
        with self._lock:
            self.counters.calls += 1
        if self.sample() * 100.0 >= self.percent:
            return control()
        t0 = self.clock()
        control_error: BaseException | None = None
        control_value: Any = None
        try:
            control_value = control()
        except BaseException as exc:  # re-raised below, after the candidate had its turn
            control_error = exc
        t1 = self.clock()
        candidate_value: Any = None
        candidate_error: str | None = None
        try:
            candidate_value = candidate()
        except Exception as exc:
            candidate_error = f"{type(exc).__name__}: {exc}"
        t2 = self.clock()
        if control_error is not None:
            matched = candidate_error is not None
        else:
            try:
                matched = candidate_error is None and bool(self.compare(control_value, candidate_value))
            except Exception as exc:  # a broken comparator is a mismatch, never the user's problem
                candidate_error = f"compare failed: {type(exc).__name__}: {exc}"
                matched = False
        with self._lock:
            self.counters.compared += 1
            self.counters.matched += matched
            self.counters.mismatched += not matched
            self.counters.candidate_errors += candidate_error is not None
        result = ExperimentResult(self.name, matched, control_value, candidate_value, candidate_error,
                                  (t1 - t0) * 1000.0, (t2 - t1) * 1000.0)
        if self.publish is not None:
            try:
                self.publish(result)
            except Exception:  # publishing must never break the caller's read
                log.exception("experiment %s: publish failed", self.name)
        if control_error is not None:
            raise control_error
        return control_value  # type: ignore[no-any-return]
