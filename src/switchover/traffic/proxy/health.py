"""Passive outlier ejection of the candidate and the retry budget. Time is passed in.

Ejection (as Envoy's outlier detection): after N consecutive failures the candidate gets no user
traffic for ``base_time`` (times the number of ejections in a row, capped), its share going to
stable. When that time is up, one request probes it: success brings it back, failure ejects it again.
"""

from __future__ import annotations


class Ejection:
    def __init__(self, consecutive_limit: int, base_time: float) -> None:
        self.consecutive_limit = consecutive_limit
        self.base_time = base_time
        self.consecutive_failures = 0
        self.ejections = 0
        self.ejected_until: float | None = None
        self._streak = 0  # ejections without a recovery between them
        self.probing = False

    def is_ejected(self) -> bool:
        return self.ejected_until is not None

    def admit(self, now: float) -> bool:
        """Whether a candidate-assigned request may go to the candidate now (False: serve it from stable)."""
        if self.ejected_until is None:
            return True
        if now < self.ejected_until or self.probing:
            return False
        self.probing = True  # this request is the probe
        return True

    def success(self) -> None:
        self.consecutive_failures = 0
        if self.ejected_until is not None:
            self.ejected_until = None
            self._streak = 0
        self.probing = False

    def failure(self, now: float) -> None:
        self.consecutive_failures += 1
        if self.ejected_until is not None:
            if self.probing:  # the probe failed: eject again, for longer
                self.probing = False
                self._eject(now)
            return
        if self.consecutive_failures >= self.consecutive_limit:
            self._eject(now)

    def _eject(self, now: float) -> None:
        self.ejections += 1
        self._streak += 1
        self.ejected_until = now + self.base_time * min(self._streak, 10)


class RetryBudget:
    """Envoy's retry budget: retries in flight stay under ``ratio`` of the requests in flight, with a floor
    (``min_concurrency``) so that a quiet service can still retry. A failing candidate under heavy load
    thus adds at most ``ratio`` extra requests to stable, never a retry storm."""

    def __init__(self, ratio: float, min_concurrency: int = 3) -> None:
        self.ratio = ratio
        self.min_concurrency = min_concurrency
        self.active = 0

    def try_retry(self, requests_in_flight: int) -> bool:
        if self.active + 1 > max(self.min_concurrency, self.ratio * requests_in_flight):
            return False
        self.active += 1
        return True

    def retry_done(self) -> None:
        self.active -= 1
