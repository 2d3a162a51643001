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
    """Retries allowed while they stay under ``ratio`` of requests in the recent past (plus a floor of a few,
    so that a quiet service can still retry). Counts decay by halves every ``period`` seconds."""

    def __init__(self, ratio: float, period: float = 10.0, floor: int = 3) -> None:
        self.ratio = ratio
        self.period = period
        self.floor = floor
        self.requests = 0.0
        self.retries = 0.0
        self._since = 0.0

    def _decay(self, now: float) -> None:
        if now - self._since >= self.period:
            steps = min(int((now - self._since) / self.period), 30)
            factor = 0.5**steps
            self.requests *= factor
            self.retries *= factor
            self._since = now

    def on_request(self, now: float) -> None:
        self._decay(now)
        self.requests += 1

    def try_retry(self, now: float) -> bool:
        self._decay(now)
        if self.retries + 1 > self.ratio * self.requests + self.floor:
            return False
        self.retries += 1
        return True
