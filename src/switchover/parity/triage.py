"""Which pairs get which diff (``Picker``, on the proxy's loop and in the worker), and what the
parity worker process does with the pairs the proxy hands over (``Triage``).

Counting needs only each differing field's key and the endpoint, so most pairs take the cheap
path (``quick.py``: the same walk recording only keys) and are summed into ``Counts``, which reach
the store every 250 ms. A pair goes to the full diff (``ParitySink``: differences with values,
samples with redaction, its own thread) when the store wants it as a sample, when the cheap path
cannot settle it (an error, a status that differs, a compressed or large body), or when stable is
to be called a second time for noise (``stable_secondary``, ``learn_noise``).
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING

from switchover.parity.compare import is_read
from switchover.parity.quick import Counts, QuickDiff
from switchover.traffic.proxy.hooks import RawPair, pair_from_raw

if TYPE_CHECKING:
    from switchover.parity.sink import ParitySink
    from switchover.plan.parity import Parity

log = logging.getLogger(__name__)

COUNT_EVERY = 0.25  # seconds: summed counts reach the store (and the gate) this often


class Picker:
    """Which pairs the full diff gets besides those the cheap path cannot settle: noise calls and
    samples (as ``ParitySink`` picks them)."""

    def __init__(self, parity: Parity) -> None:
        self._noise_always = bool(parity.stable_secondary)
        self._learn_noise = parity.learn_noise
        self._samples = parity.samples
        self._sampled: dict[str, int] = {}  # differing pairs sent to the full diff for samples, per endpoint
        self._sampled_now: set[str] = set()  # endpoints that sent one since the counts were last written

    def new_window(self) -> None:
        """The counts were written: each endpoint may send a fresh sample."""
        self._sampled_now.clear()

    def wants_noise(self, method: bytes) -> bool:
        """Whether stable is called a second time for this pair."""
        if not (self._noise_always or self._learn_noise) or not is_read(method.decode("latin-1")):
            return False  # never send a write to stable twice
        return self._noise_always or random.random() < self._learn_noise

    def wants_sample(self, endpoint: str) -> bool:
        """The store keeps the last N differing answers per endpoint: all until it has N, then one
        per ``COUNT_EVERY`` keeps them fresh."""
        if not self._samples:
            return False
        sent = self._sampled.get(endpoint, 0)
        if sent >= self._samples and endpoint in self._sampled_now:
            return False
        self._sampled[endpoint] = sent + 1
        self._sampled_now.add(endpoint)
        return True


class Triage:
    def __init__(self, sink: ParitySink) -> None:
        self.sink = sink
        self.pick = Picker(sink.parity)
        self.quick = QuickDiff(sink.comparer)
        self.counts = Counts()
        self.dropped = 0  # by the proxy, not yet in the store
        self.counters: dict[str, int] = {}  # other named counters (the copies the worker sent), not yet in the store
        self.due = time.monotonic() + COUNT_EVERY
        self.counted_here = 0  # pairs settled by the cheap path
        self.full = 0  # pairs given to the full diff
        self._failed: set[str] = set()  # endpoints whose cheap diff raised (logged once)

    def counted(self, dropped: int, skipped: list[tuple[str, str, float, str]], counts: Counts | None) -> None:
        """What the proxy settled itself: pairs it dropped, pairs it did not buffer, counts it summed."""
        self.dropped += dropped
        for method, path, at, reason in skipped:
            self.counts.skip(self.quick.endpoint(method, path), at, reason)
        if counts:
            self.counts.merge(counts)

    def full_diff(self, raw: RawPair) -> None:
        """A pair for the full diff (the proxy diffed it, the store wants it as a sample)."""
        self.full += 1
        self.sink.submit_exchange(pair_from_raw(raw), None, block=True)  # the proxy's pipe, not this queue, drops

    def noise(self, raw: RawPair) -> None:
        """A pair for which stable is called a second time, then the full diff."""
        self.full += 1
        self.sink.submit_noise(pair_from_raw(raw))  # the second stable is called from the sink's pool

    def pair(self, raw: RawPair) -> None:
        """A pair the proxy did not settle: the cheap path if it can, else the full diff."""
        endpoint = self.quick.endpoint_raw(raw[0], raw[1])
        try:
            keys = self.quick.keys_raw(raw)
        except Exception:  # an odd answer: the full diff says what it makes of it
            keys = None
            if endpoint not in self._failed:
                self._failed.add(endpoint)
                log.exception("parity: the cheap diff failed for %s; such pairs get the full diff", endpoint)
        if keys is not None and not (keys and self.pick.wants_sample(endpoint)):
            self.counts.add(endpoint, raw[4], keys)
            self.counted_here += 1
            return
        self.full_diff(raw)

    def flush(self, force: bool = False) -> float:
        """Write the counts when due (or now with ``force``); seconds until the next are due."""
        now = time.monotonic()
        if not force and now < self.due:
            return self.due - now
        counts, self.counts = self.counts, Counts()
        counters = {"dropped": self.dropped, **self.counters}
        self.dropped, self.counters = 0, {}
        self.pick.new_window()
        self.due = now + COUNT_EVERY
        if counts:
            self.sink.store.record_counts(counts, counters)
        elif any(counters.values()):
            self.sink.store.record([], counters)
        return COUNT_EVERY
