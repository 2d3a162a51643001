"""The proxy's sink (what ``make_sink`` gives the proxy): most answers diffed on the proxy's loop,
the rest in another process.

Answers up to the copy cap (``quick.py``: 64 KiB, not compressed, no noise call wanted) are diffed
where they are, on the proxy's event loop, a few milliseconds' worth at a time, recording only what
the counts need; the counts are summed and go to the worker every 250 ms. This costs a fraction of handing the pair over (measured in
docs/performance-parity.md), and the loop spends at most ``QUICK_SHARE`` of its time on it: beyond
that, pairs are dropped and counted. A differing pair whose sample the store wants, and every pair
the cheap path cannot settle, goes to the worker as before.

Why a process and not a thread for those (measured, docs/performance-parity.md): diffing in a thread of the proxy's process takes the GIL
from the event loop and costs users about half the throughput at mirror 20%; so does a thread
that only ships pairs to another process (the GIL convoy: the loop waits for the switch interval
each time it wants the GIL back). So everything on the proxy's side runs on its event loop, in
small pieces: ``submit`` appends the pair; every 20 ms a callback pickles the batch into one frame
and writes what the pipe takes without blocking (the rest when the pipe is writable again). A
worker process diffs (``ParitySink``: noise calls, store writes) at low priority. When it falls
behind, the pipe fills, the frames wait up to a cap, and further pairs are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import pickle
import random
import struct
import threading
import time
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from switchover.parity.compare import Comparer, is_read
from switchover.parity.quick import Counts, QuickDiff
from switchover.parity.report import build_report, plan_budget
from switchover.parity.store import MismatchStore, store_path
from switchover.traffic.proxy.hooks import Answer, MirrorPair

if TYPE_CHECKING:
    from switchover.plan import Plan

log = logging.getLogger(__name__)

_SHIP_EVERY = 0.02  # seconds: pairs are pickled and written in batches this often
_MAX_UNSENT = 16 * 1024 * 1024  # bytes of frames waiting for the pipe before pairs are dropped
_COUNT_EVERY = 0.25  # seconds: counts summed on the loop reach the worker (and the store) this often
QUICK_SHARE = 0.25  # at most this share of the loop's time goes to the cheap diff (over _WINDOW)
_WINDOW = 0.1  # seconds
_SLOW_PAIR = 0.001  # seconds: an endpoint whose pairs take longer (moving average) goes to the worker
_SLOW_FORGIVEN = 60.0  # seconds until endpoints found slow are tried on the loop again
_HOLD = 0.005  # seconds: pairs for the cheap path wait this long to be diffed together
_HOLD_MAX = 64  # or until this many wait
_SLICE = 0.0003  # seconds of diffing at a time, between turns of the loop


# Pairs cross the pipe as plain tuples: pickling the frozen dataclasses costs ~7x more (34 us
# against 5 us for a pair of 2 KB answers), and that time is taken on the proxy's loop.
# The last element says whether the worker calls stable a second time (noise) for this pair.
WirePair = tuple[str, str, tuple[tuple[str, str], ...], bytes, tuple[Any, ...], tuple[Any, ...], float, bool]


def to_wire(p: MirrorPair, noise: bool = False) -> WirePair:
    s, c = p.stable, p.candidate
    return (p.method, p.path, p.headers, p.body, (s.status, s.headers, s.body, s.latency, s.error),
            (c.status, c.headers, c.body, c.latency, c.error), p.at, noise)


def from_wire(w: WirePair) -> MirrorPair:
    return MirrorPair(w[0], w[1], w[2], w[3], Answer(*w[4]), Answer(*w[5]), w[6])


def _frame(message: object) -> bytes:
    """One message as ``multiprocessing.Connection.recv_bytes`` reads it (4-byte length, then data)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return struct.pack("!i", len(data)) + data


class ProcessSink:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        parity = plan.parity
        self.limit = parity.queue
        self.budget, self.min_compared = plan_budget(plan)
        self._pending: list[WirePair] = []
        self._held: list[MirrorPair] = []  # pairs for the cheap path, diffed together (_hold)
        self._failed: set[str] = set()  # endpoints whose diff raised here (logged once)
        self._out = bytearray()  # framed batches the pipe has not taken yet
        self.submitted = 0
        self.dropped = 0
        self.quick = 0  # pairs diffed on the loop
        self.quick_seconds = 0.0  # and the time it took
        self.to_worker = 0
        self.skipped = 0  # answers above the copy cap, never buffered
        self._unsent_dropped = 0
        self._counts = Counts()
        self._counts_due = 0.0
        self._ship_at: float | None = None  # loop time of the next planned ship
        self._writer_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._lock = threading.Lock()  # only for close() racing a late submit from another thread
        self._quick = QuickDiff(Comparer(parity))
        self._noise_always = bool(parity.stable_secondary)
        self._learn_noise = parity.learn_noise
        self._samples = parity.samples
        self._sampled: dict[str, int] = {}  # differing pairs sent to the worker for samples, per endpoint
        self._sampled_now: set[str] = set()  # endpoints that sent one since the counts last left
        self._window = float("-inf")  # when the current window of the loop's time began
        self._spent = 0.0  # and what the cheap diff spent of it
        self._cost: dict[str, float] = {}  # per endpoint: moving average of the seconds a pair took
        self._slow: set[str] = set()  # endpoints whose pairs go to the worker (slow to diff here)
        self._slow_until = 0.0
        # spawn, not fork: the proxy runs an event loop and threads that a fork would copy half-way.
        ctx = multiprocessing.get_context("spawn")
        receiver, self._conn = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=_work, args=(plan, receiver), name="switchover-parity", daemon=True)
        self._process.start()
        receiver.close()
        self._fd = self._conn.fileno()
        os.set_blocking(self._fd, False)
        self.store = MismatchStore(store_path(plan), plan.parity.samples)

    # ------------------------------------------------------------ on the proxy's loop

    def submit(self, pair: MirrorPair) -> None:
        """Diffed here when small (within the loop's share), else an append to the worker's batch, or
        a counted drop when the worker is too far behind. Never blocks."""
        self.submitted += 1
        if self._closed:
            self._drop()
            return
        noise = self._wants_noise(pair.method)
        if not noise and self._quick.may_take(pair.stable, pair.candidate):
            self._hold(pair)
            return
        self._to_worker(pair, noise)

    def _to_worker(self, pair: MirrorPair, noise: bool) -> None:
        if len(self._pending) >= self.limit or len(self._out) > _MAX_UNSENT:
            self._drop()
            return
        self.to_worker += 1
        self._pending.append(to_wire(pair, noise))
        self._schedule(_SHIP_EVERY)

    def skip(self, method: str, path: str, at: float, reason: str) -> None:
        """A pair the proxy did not buffer (an answer above the copy cap): counted, never compared."""
        self.skipped += 1
        self._counts.skip(self._quick.endpoint(method, path), at, reason)
        self._schedule(_COUNT_EVERY)

    def _hold(self, pair: MirrorPair) -> None:
        """Pairs for the cheap path wait a few milliseconds and are diffed together: one after the
        other, the diff's code and data stay in the CPU's caches (measured: ~35% less time per pair
        than each diffed as it comes, between users' requests), and the collector is paused once."""
        held = self._held
        held.append(pair)
        if len(held) >= _HOLD_MAX:
            self._diff_held()
        elif len(held) == 1:
            try:
                asyncio.get_running_loop().call_later(_HOLD, self._diff_held)
            except RuntimeError:  # no loop (a caller outside the proxy): now
                self._diff_held()

    def _diff_held(self) -> None:
        held, self._held = self._held, []
        if not held:
            return
        # Parsing makes containers, all freed (no cycles) before the diff returns; with the collector
        # on, they trigger collections that walk the proxy's own young objects (~3 us per user
        # request at mirror 20%, benchmarks/parity/sink_cost.py).
        collecting = gc.isenabled()
        gc.disable()
        until = time.perf_counter() + _SLICE
        done = 0
        try:
            for pair in held:
                done += 1
                try:
                    here = self._diff_here(pair)
                except Exception:  # an odd answer (nested beyond the parsers' depth...) never reaches users
                    self._diff_failed(pair)
                    here = False
                if not here:
                    self._to_worker(pair, False)
                if time.perf_counter() >= until:
                    break  # users' requests wait no longer than a slice: the rest in the next turn
        finally:
            if collecting:
                gc.enable()
        if done < len(held):
            self._held[:0] = held[done:]
            try:
                asyncio.get_running_loop().call_soon(self._diff_held)
            except RuntimeError:
                self._diff_held()

    def _diff_failed(self, pair: MirrorPair) -> None:
        """The worker takes the pair (its full diff says what it makes of it); said once per endpoint."""
        endpoint = self._quick.endpoint(pair.method, pair.path)
        if endpoint not in self._failed:
            self._failed.add(endpoint)
            log.exception("parity: the proxy's diff failed for %s; such pairs go to the worker", endpoint)

    def _diff_here(self, pair: MirrorPair) -> bool:
        """The cheap path (quick.py); False when the worker must take the pair."""
        start = time.perf_counter()
        if start - self._window >= _WINDOW:
            self._window, self._spent = start, 0.0
            if start >= self._slow_until:
                self._slow.clear()  # endpoints found slow are tried again after a while
                self._cost.clear()
                self._slow_until = start + _SLOW_FORGIVEN
        elif self._spent >= QUICK_SHARE * _WINDOW:
            self._drop()  # the loop has given parity its share: users first
            return True
        endpoint = self._quick.endpoint(pair.method, pair.path)
        if endpoint in self._slow:
            return False
        keys = self._quick.keys(pair.stable, pair.candidate)
        spent = time.perf_counter() - start
        self._spent += spent
        self.quick_seconds += spent
        # Answers that take long to diff (long unordered arrays, reorderings) are the worker's job.
        # A moving average, so that a pair that only waited for the CPU (wall time) does not count.
        cost = self._cost.get(endpoint, 0.0)
        cost += (spent - cost) / 16
        self._cost[endpoint] = cost
        if cost > _SLOW_PAIR:
            self._slow.add(endpoint)
        if keys is None:
            return False
        if keys and self._wants_sample(endpoint):
            return False  # the worker diffs it in full and keeps it as a sample
        self._counts.add(endpoint, pair.at, keys)
        self.quick += 1
        if self._ship_at is None:  # a ship planned already comes within _COUNT_EVERY
            self._schedule(_COUNT_EVERY)
        return True

    def _wants_noise(self, method: str) -> bool:
        """Whether the worker calls stable a second time for this pair (as ``ParitySink.submit`` decides)."""
        if not (self._noise_always or self._learn_noise) or not is_read(method):
            return False  # never send a write to stable twice
        return self._noise_always or random.random() < self._learn_noise

    def _wants_sample(self, endpoint: str) -> bool:
        """The store keeps the last N differing answers per endpoint: all until it has N, then one
        per ``_COUNT_EVERY`` keeps them fresh (as ``ParitySink`` picks them)."""
        if not self._samples:
            return False
        sent = self._sampled.get(endpoint, 0)
        if sent >= self._samples and endpoint in self._sampled_now:
            return False
        self._sampled[endpoint] = sent + 1
        self._sampled_now.add(endpoint)
        return True

    def _drop(self) -> None:
        self.dropped += 1
        self._unsent_dropped += 1
        self._schedule(_COUNT_EVERY)

    def _schedule(self, delay: float) -> None:
        """Ship within ``delay`` seconds (an earlier ship already planned will do)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a caller outside the proxy): ship now
            self._ship()
            return
        due = loop.time() + delay
        if self._ship_at is not None and self._ship_at <= due:
            return
        self._ship_at = due
        loop.call_at(due, self._ship_timer, due)

    def _ship_timer(self, due: float) -> None:
        if self._ship_at == due:  # not replaced by an earlier one
            self._ship_at = None
            self._ship()

    def _ship(self) -> None:
        batch, self._pending = self._pending, []
        counts: Counts | None = None
        now = time.monotonic()
        if self._counts and (now >= self._counts_due or not batch):
            counts, self._counts = self._counts, Counts()
            self._counts_due = now + _COUNT_EVERY
            self._sampled_now.clear()
        elif self._counts:  # pairs left now; the counts follow with a later frame
            self._schedule(_COUNT_EVERY)
        dropped, self._unsent_dropped = self._unsent_dropped, 0
        if batch or dropped or counts:
            self._out += _frame((dropped, batch, counts))
            self._write()

    def _write(self) -> None:
        try:
            while self._out:
                n = os.write(self._fd, self._out)
                del self._out[:n]
        except BlockingIOError:
            self._want_writable(True)
            return
        except OSError as exc:
            log.error("parity: the diff worker is gone (%s); %d bytes of pairs lost", exc, len(self._out))
            self._out.clear()
        self._want_writable(False)

    def _want_writable(self, want: bool) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if want and self._writer_loop is None:
            loop.add_writer(self._fd, self._write)
            self._writer_loop = loop
        elif not want and self._writer_loop is not None:
            self._writer_loop.remove_writer(self._fd)
            self._writer_loop = None

    def report(self) -> dict[str, Any]:
        extra = {"sink": {"submitted": self.submitted, "dropped": self.dropped, "diffed_in_proxy": self.quick,
                          "diff_seconds_in_proxy": round(self.quick_seconds, 6),
                          "to_worker": self.to_worker,
                          "skipped_too_large": self.skipped, "pending": len(self._pending),
                          "unsent_bytes": len(self._out), "worker_alive": self._process.is_alive(),
                          "diff": "proxy loop (answers up to 64 KiB) + process"}}
        return build_report(self.store, self.plan.parity, self.budget, self.min_compared, extra=extra).to_json()

    # ------------------------------------------------------------ after the loop has ended

    def close(self) -> None:
        """Hand what is left to the worker, let it finish, stop it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        while self._held:  # slices: with a loop still running, the rest would wait for its next turn
            self._diff_held()
        batch, self._pending = self._pending, []
        counts, self._counts = self._counts, Counts()
        self._out += _frame((self._unsent_dropped, batch, counts or None)) + _frame(None)
        os.set_blocking(self._fd, True)
        with contextlib.suppress(OSError):
            while self._out:
                n = os.write(self._fd, self._out)
                del self._out[:n]
        self._conn.close()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.terminate()
        self.store.close()


def _work(plan: Plan, conn: Connection) -> None:
    """The worker process: receive batches, diff them with a ParitySink, until told to stop."""
    import signal

    from switchover.parity.sink import ParitySink

    # Ctrl-C or a SIGTERM to the proxy's process group reaches this process too: the proxy decides
    # when parity stops (it drains, then sends the last pairs and a stop); EOF ends it if the proxy dies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Users first: on a busy machine the proxy gets the CPU, and parity falls behind and drops
    # (counted) rather than slowing the proxy down.
    with contextlib.suppress(OSError):
        os.nice(19)
    sink = ParitySink(plan)
    try:
        while True:
            try:
                message = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            if message is None:
                break
            dropped, batch, counts = message
            if counts:
                sink.store.record_counts(counts, {"dropped": dropped})
            elif dropped:
                sink.store.record([], {"dropped": dropped})
            for wire in batch:
                pair = from_wire(wire)
                if wire[7] and sink.fetches_noise:
                    sink.submit_noise(pair)  # the second stable is called first, from the sink's pool
                else:
                    sink.submit_exchange(pair, None, block=True)  # the pipe, not this queue, drops
    finally:
        sink.close()
