"""The proxy's mirror sink (``traffic/proxy/hooks.py``): the built-in proxy diffs in place.

``submit`` runs on the proxy's event loop and only appends to a bounded queue (full: the pair is
dropped and counted). A worker thread diffs and writes batches to the mismatch store, so users'
requests never wait for parity. When the plan names a second stable (or asks to learn noise), the
extra stable call is made from a small thread pool, never from the proxy's loop.
"""

from __future__ import annotations

import functools
import logging
import queue
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from switchover.parity.compare import Comparer, Comparison, Request, is_read
from switchover.parity.quick import Counts
from switchover.parity.report import build_report, plan_budget
from switchover.parity.store import MismatchStore
from switchover.parity.upstream import HOP_BY_HOP, SHADOW_HEADER
from switchover.traffic.proxy.hooks import Answer, MirrorPair, MirrorSink

if TYPE_CHECKING:
    from switchover.plan import Plan

log = logging.getLogger(__name__)

_BATCH = 256  # comparisons per store transaction
_FLUSH_EVERY = 0.25  # seconds: counts reach the store (and the gate) this soon


class ParitySink:
    """Queue + diff thread + store. Also used by ``parity serve`` and ``replay`` (``submit_exchange``)."""

    def __init__(self, plan: Plan, store: MismatchStore | None = None, *, fetch_noise: bool = True) -> None:
        self.plan = plan
        self.parity = plan.parity
        self.comparer = Comparer(plan.parity)
        self.store = store or MismatchStore.for_plan(plan)
        self.budget, self.min_compared = plan_budget(plan)
        # A pair (and the noise answer) to diff; None tells the worker to stop.
        self._queue: queue.Queue[tuple[MirrorPair, Answer | None] | None] = queue.Queue(plan.parity.queue)
        self._lock = threading.Lock()
        self.submitted = 0
        self.dropped = 0
        self.compared = 0
        self._unsaved_dropped = 0
        self._stopping = False
        self._noise_url = plan.parity.stable_secondary or (plan.stable.url if plan.parity.learn_noise else None)
        self._pool: ThreadPoolExecutor | None = None
        self._client: httpx.Client | None = None
        self._noise_inflight = 0
        self._sampled: dict[str, int] = {}  # samples written per endpoint by this sink
        if fetch_noise and self._noise_url:
            self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="parity-noise")
            self._client = httpx.Client(timeout=plan.timeouts.server, follow_redirects=False)
        self._thread = threading.Thread(target=self._run, name="parity-diff", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ MirrorSink

    def submit(self, pair: MirrorPair) -> None:
        """Called on the proxy's loop: never blocks."""
        self.submitted += 1
        if self._pool is not None and self._wants_noise(pair.method):
            self.submit_noise(pair)
            return
        self.submit_exchange(pair, None)

    def submit_noise(self, pair: MirrorPair) -> None:
        """Call stable a second time (from the pool), then queue the pair with that answer."""
        if self._pool is None:
            self.submit_exchange(pair, None)
            return
        with self._lock:
            full = self._noise_inflight >= self.parity.queue
            if not full:
                self._noise_inflight += 1
        if full:
            self._drop()
            return
        fut = self._pool.submit(self._fetch_noise, pair)
        fut.add_done_callback(functools.partial(self._noise_done, pair))

    def skip(self, method: str, path: str, at: float, reason: str) -> None:
        """A pair never compared (``too_large``): counted in the store at once (rare)."""
        counts = Counts()
        counts.skip(self.comparer.endpoint(method, path), at, reason)
        self.store.record_counts(counts)

    @property
    def fetches_noise(self) -> bool:
        return self._pool is not None

    def submit_exchange(self, pair: MirrorPair, secondary: Answer | None, *, block: bool = False) -> None:
        """Queue a pair (and the noise answer); ``block`` waits for room instead of dropping (replay)."""
        try:
            self._queue.put((pair, secondary), block=block)
        except queue.Full:
            self._drop()

    def report(self) -> dict[str, Any]:
        result = build_report(self.store, self.parity, self.budget, self.min_compared, extra=self.stats())
        return result.to_json()

    def close(self) -> None:
        """Diff what is queued, write it, stop."""
        if self._stopping:
            return
        self._stopping = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._queue.put(None)
        self._thread.join(timeout=60)
        if self._client is not None:
            self._client.close()

    def stats(self) -> dict[str, Any]:
        return {"sink": {"submitted": self.submitted, "dropped": self.dropped, "compared": self.compared,
                         "queued": self._queue.qsize()}}

    # ------------------------------------------------------------ internals

    def _drop(self) -> None:
        with self._lock:
            self.dropped += 1
            self._unsaved_dropped += 1

    def _wants_noise(self, method: str) -> bool:
        if not is_read(method):
            return False  # never send a write to stable twice
        if self.parity.stable_secondary:
            return True
        return random.random() < self.parity.learn_noise

    def _fetch_noise(self, pair: MirrorPair) -> Answer:
        assert self._client is not None and self._noise_url is not None
        headers = [(k, v) for k, v in pair.headers if k.lower() not in HOP_BY_HOP]
        headers.append((SHADOW_HEADER, "1"))
        start = time.monotonic()
        try:
            r = self._client.request(pair.method, self._noise_url + pair.path, headers=headers, content=pair.body)
        except httpx.TimeoutException:
            return Answer(0, (), b"", time.monotonic() - start, "timeout")
        except httpx.HTTPError:
            return Answer(0, (), b"", time.monotonic() - start, "connect")
        return Answer(r.status_code, tuple((k.lower(), v) for k, v in r.headers.multi_items()), r.content,
                      time.monotonic() - start)

    def _noise_done(self, pair: MirrorPair, fut: Future[Answer]) -> None:
        with self._lock:
            self._noise_inflight -= 1
        try:
            secondary: Answer | None = fut.result()
        except Exception:  # a failed noise call only loses the noise comparison
            secondary = None
        self.submit_exchange(pair, secondary)

    def _compare(self, pair: MirrorPair, secondary: Answer | None) -> tuple[Comparison, MirrorPair]:
        request = Request(pair.method, pair.path, pair.headers, pair.body)
        return self.comparer.compare(request, pair.stable, pair.candidate, secondary, pair.at), pair

    def _with_samples(self, batch: list[tuple[Comparison, MirrorPair]]) -> list[Comparison]:
        """Samples only for the differing answers the store keeps: the last N per endpoint."""
        wanted: set[int] = set()
        seen: dict[str, int] = {}
        for i in range(len(batch) - 1, -1, -1):
            c = batch[i][0]
            # Until an endpoint has its N samples, take all; then one per flush keeps them fresh
            # without redacting big bodies for every differing answer.
            room = max(1, self.parity.samples - self._sampled.get(c.endpoint, 0)) if self.parity.samples else 0
            if c.differences and seen.get(c.endpoint, 0) < room:
                seen[c.endpoint] = seen.get(c.endpoint, 0) + 1
                wanted.add(i)
        for ep, n in seen.items():
            self._sampled[ep] = self._sampled.get(ep, 0) + n
        out = []
        for i, (c, pair) in enumerate(batch):
            if i in wanted:
                request = Request(pair.method, pair.path, pair.headers, pair.body)
                c = self.comparer.with_sample(c, request, pair.stable, pair.candidate)
            out.append(c)
        return out

    def _run(self) -> None:
        batch: list[tuple[Comparison, MirrorPair]] = []
        last = time.monotonic()
        done = False
        while not done:
            try:
                item = self._queue.get(timeout=_FLUSH_EVERY)
            except queue.Empty:
                pass  # nothing new: maybe time to flush
            else:
                if item is None:
                    done = True
                else:
                    try:
                        batch.append(self._compare(*item))
                    except Exception:  # one odd answer must not stop parity for everyone
                        log.exception("parity: diff failed for %s %s", item[0].method, item[0].path)
            now = time.monotonic()
            due = done or now - last >= _FLUSH_EVERY
            if (batch and (due or len(batch) >= _BATCH)) or (self._unsaved_dropped and due):
                self._flush(batch)
                batch = []
                last = now

    def _flush(self, pairs: list[tuple[Comparison, MirrorPair]]) -> None:
        with self._lock:
            dropped, self._unsaved_dropped = self._unsaved_dropped, 0
        batch = self._with_samples(pairs)
        try:
            self.store.record(batch, {"dropped": dropped, "compared": sum(1 for c in batch if c.compared)})
        except Exception:
            log.exception("parity: could not write %d comparisons to %s", len(batch), self.store.path)
            return
        self.compared += sum(1 for c in batch if c.compared)


def make_sink(plan: Plan) -> MirrorSink | None:
    """What the built-in proxy calls when it runs with ``--plan``: the diff runs in a worker
    process so that it never takes the GIL from the proxy's event loop (see ``worker.py``)."""
    from switchover.parity.worker import ProcessSink

    return ProcessSink(plan)
