"""The proxy's sink (what ``make_sink`` gives the proxy): most answers diffed on the proxy's loop,
the rest in another process.

The proxy hands pairs over as it holds them (``submit_raw``, ``hooks.RawPair``: bytes as parsed,
nothing decoded, no object built). Answers up to ``LOOP_MAX_BYTES`` (16 KiB; up to the copy cap,
64 KiB, while the worker is behind; not compressed, no noise call wanted) are diffed where they are, on
the proxy's event loop, a few milliseconds' worth at a time, recording only what the counts need
(``QuickDiff.keys_raw``: only the headers compared are decoded); the counts are summed and go to the
worker every 250 ms. The loop spends at most ``QUICK_SHARE`` of its time on it: beyond that, pairs
go to the worker process, as do the pairs of endpoints slow to diff, a differing pair whose sample
the store wants, and every pair the cheap path cannot settle (``triage.py``, ``ParitySink``: the
same cheap path, noise calls, full diff, samples, store writes; at the lowest CPU priority). With
``parity.diff_on: worker`` the loop diffs nothing: every pair goes to the worker (for a host with a
core to spare); with ``auto`` (the default) and 3 usable CPUs or more, every pair goes to the worker
while it keeps up, and the loop diffs what it leaves (the pipe full, the worker gone); with fewer,
as ``proxy``. With ``parity.copies_from: worker`` the worker also sends the copies (``copies.py``):
the proxy hands over each request, as the copy's bytes, with the user's stable answer, and never
touches the candidate.

Why the loop and not only the worker (measured, docs/performance-parity.md): on a machine whose
cores are busy, the worker's diff takes the same CPU from users' requests as the loop's, and more
of users' 99th percentile latency (it is preempted and preempts at random); and a thread would take
the GIL from the loop. Pairs for the worker are marshalled one by one as they come (their bytes are
still in the CPU's caches: ~1.5 us for two 2 KB answers), framed, and written every 20 ms with one
writev, as much as the pipe takes without blocking (the rest when it is writable again). When the
worker falls behind, the pipe fills, frames wait up to a cap, and further pairs are dropped and
counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import marshal
import multiprocessing
import os
import pickle
import signal
import struct
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from switchover.parity.compare import Comparer
from switchover.parity.cpus import usable_cpus
from switchover.parity.pipe import PipeReader
from switchover.parity.quick import Counts, QuickDiff
from switchover.parity.report import build_report, plan_budget
from switchover.parity.store import MismatchStore, store_path
from switchover.parity.triage import Picker
from switchover.traffic.proxy.hooks import CopyTarget, MirrorPair, RawCopy, RawPair, raw_from_pair

if TYPE_CHECKING:
    from switchover.parity.copies import CopySender
    from switchover.parity.triage import Triage
    from switchover.plan import Plan

log = logging.getLogger(__name__)

_SHIP_EVERY = 0.02  # seconds: frames for the worker are written this often
_MAX_UNSENT = 16 * 1024 * 1024  # bytes of frames waiting for the pipe before pairs are dropped
_PIPE_SIZE = 1024 * 1024  # asked of the kernel for the pipe (Linux; the default is 64 KiB)
try:  # parts per writev
    _IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX"))
except (ValueError, OSError):
    _IOV_MAX = 16  # POSIX's minimum
_COUNT_EVERY = 0.25  # seconds: counts summed on the loop reach the worker (and the store) this often
QUICK_SHARE = 0.25  # at most this share of the loop's time goes to the cheap diff (over _WINDOW)
_WINDOW = 0.1  # seconds
_SLOW_PAIR = 0.001  # seconds: an endpoint whose pairs take longer (moving average) goes to the worker
_SLOW_FORGIVEN = 60.0  # seconds until endpoints found slow are tried on the loop again
# Bodies above this are handed to the worker while it keeps up, not diffed on the loop: there, a pair
# costs the proxy more than marshalling it (50 KB answers, proxy CPU per pair: ~120 us diffed on the
# loop, ~40 us handed over; 16 KB: ~50 and ~40 us), and the worker's cheap path diffs it (quick.py).
# When the worker falls behind (the pipe is full: no core to spare) or is gone, the loop diffs them
# (up to quick.QUICK_MAX_BYTES, within its share) rather than let them be dropped.
LOOP_MAX_BYTES = 16 * 1024
# ``diff_on: auto`` hands every pair to the worker while it keeps up from this many usable CPUs (one
# for the proxy, one for the worker, one for the rest of the host; cpus.py), else diffs as ``proxy``.
AUTO_WORKER_CPUS = 3
_HOLD = 0.005  # seconds: pairs for the cheap path wait this long to be diffed together
_HOLD_MAX = 64  # or until this many wait
_SLICE = 0.0003  # seconds of diffing at a time, between turns of the loop

# Frames on the pipe: 4-byte length, one byte of kind, the message. A pair (``RawPair``: bytes, lists,
# tuples, numbers) goes as marshal, which the proxy writes in ~60% of pickle's time (no memo, no
# classes); the rest, and a pair marshal cannot write, as pickle, with _PICKLED in its kind.
_HEAD = struct.Struct("!IB")
_PICKLED = 0x80
_MARSHAL_VERSION = 2  # the last version without references (which cost a table of every object)
# A RawPair: for the worker's cheap path or full diff; for the full diff (a sample); for a noise call
# and the full diff. (dropped, skipped, Counts or None). The end. A RawCopy for the worker to send,
# then diff. Where to send them (a CopyTarget, once, before the first RawCopy).
PAIR, SAMPLE, NOISE, COUNTS, STOP, COPY, TARGET = 1, 2, 3, 4, 5, 6, 7


def _frame(kind: int, message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEAD.pack(len(data), kind | _PICKLED) + data


class ProcessSink:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        parity = plan.parity
        self.budget, self.min_compared = plan_budget(plan)
        self._held: list[RawPair] = []  # pairs for the cheap path, diffed together (_hold)
        self._failed: set[str] = set()  # endpoints whose diff raised here (logged once)
        # What the pipe has not taken yet: frames' parts as made (written with one writev, never
        # gathered into one growing buffer, whose reallocations cost page faults), and their bytes.
        self._out: list[bytes] = []
        self._unsent = 0
        self.submitted = 0
        self.dropped = 0
        self.quick = 0  # pairs diffed on the loop
        self.quick_seconds = 0.0  # and the time it took
        self.to_worker = 0
        self.skipped = 0  # answers above the copy cap, never buffered
        self._skipped: list[tuple[str, str, float, str]] = []  # and not yet sent
        self._unsent_dropped = 0
        self._counts = Counts()
        self._counts_due = 0.0
        self._ship_at: float | None = None  # loop time of the next planned ship
        self._ship_soon = False  # and it comes within _SHIP_EVERY: a pair for the worker need not plan one
        self._writer_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._gone = False  # the worker process died: see _write
        self._lock = threading.Lock()  # only for close() racing a late submit from another thread
        self.sends_copies = parity.copies_from == "worker"  # hooks.CopyingSink: the worker sends the copies
        diff_on: str = parity.diff_on
        if diff_on == "auto":
            diff_on = "auto-worker" if usable_cpus() >= AUTO_WORKER_CPUS else "proxy"
        self.diff_on = diff_on  # as resolved: proxy, worker, or auto-worker (the loop takes what it leaves)
        # diff_on: worker, or copies sent by the worker: every pair goes to the worker (a core to spare).
        self._on_loop = diff_on != "worker" and not self.sends_copies
        # Bodies up to this are diffed on the loop while the worker keeps up; all up to the copy cap
        # when it is behind or gone (submit_raw).
        self._loop_max = LOOP_MAX_BYTES if diff_on == "proxy" else -1
        self._quick = QuickDiff(Comparer(parity))
        self._pick = Picker(parity)
        self._noise = bool(parity.stable_secondary or parity.learn_noise)  # a second call to stable, at times
        self._window = float("-inf")  # when the current window of the loop's time began
        self._spent = 0.0  # and what the cheap diff spent of it
        self._cost: dict[str, float] = {}  # per endpoint: moving average of the seconds a pair took
        self._slow: set[str] = set()  # endpoints whose pairs go to the worker (slow to diff here)
        self._slow_until = 0.0
        # spawn, not fork: the proxy runs an event loop and threads that a fork would copy half-way.
        ctx = multiprocessing.get_context("spawn")
        receiver, self._conn = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=_work, args=(plan, receiver), name="switchover-parity", daemon=True)
        with _stops_ignored():
            self._process.start()
        receiver.close()
        self._fd = self._conn.fileno()
        with contextlib.suppress(OSError, AttributeError):  # not Linux, or above pipe-max-size: the default
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        os.set_blocking(self._fd, False)
        self.store = MismatchStore(store_path(plan), plan.parity.samples)

    # ------------------------------------------------------------ on the proxy's loop

    def submit_raw(self, raw: RawPair) -> None:
        """Diffed here when small (within the loop's share), else framed for the worker, or a counted
        drop when the worker is too far behind. Never blocks."""
        self.submitted += 1
        if self._closed:
            self._drop()
            return
        if self._noise and self._pick.wants_noise(raw[0]):
            self._to_worker(raw, NOISE)
        elif self._on_loop and not raw[9] and max(len(raw[7]), len(raw[12])) <= (
                self._loop_max if self._writer_loop is None and not self._gone else self._quick.max_bytes):
            held = self._held
            held.append(raw)
            if len(held) == 1 or len(held) >= _HOLD_MAX:
                self._hold_more(len(held))
        else:
            self._to_worker(raw, PAIR)

    def submit(self, pair: MirrorPair) -> None:
        """The same for a caller that holds a ``MirrorPair``."""
        self.submit_raw(raw_from_pair(pair))

    def send_copies_to(self, target: CopyTarget) -> None:
        """Where the worker sends the copies (``parity.copies_from: worker``), from the proxy's own settings."""
        self._queue_frame(TARGET, target)
        self._schedule(0.0)

    def submit_copy(self, copy: RawCopy) -> None:
        """A request to copy and the user's stable answer: for the worker to send, then diff."""
        self.submitted += 1
        if self._closed:
            self._drop()
            return
        self._to_worker(copy, COPY)

    def _to_worker(self, raw: RawPair | RawCopy, kind: int) -> None:
        if self._gone or self._unsent > _MAX_UNSENT:
            self._drop()
            return
        self.to_worker += 1
        # Written down now, while its bytes are still in the CPU's caches; sent with the next ship.
        try:
            data = marshal.dumps(raw, _MARSHAL_VERSION)
        except ValueError:  # a type of a caller's own (a subclass): pickle writes it
            data = pickle.dumps(raw, protocol=pickle.HIGHEST_PROTOCOL)
            kind |= _PICKLED
        self._out += (_HEAD.pack(len(data), kind), data)
        self._unsent += _HEAD.size + len(data)
        if not self._ship_soon:
            self._schedule(_SHIP_EVERY)

    def skip(self, method: str, path: str, at: float, reason: str) -> None:
        """A pair the proxy did not buffer (an answer above the copy cap): counted, never compared."""
        self.skipped += 1
        self._skipped.append((method, path, at, reason))
        self._schedule(_COUNT_EVERY)

    def _hold_more(self, held: int) -> None:
        """Pairs for the cheap path wait a few milliseconds and are diffed together (``submit_raw``
        holds them): one after the other, the diff's code and data stay in the CPU's caches
        (measured: ~35% less time per pair than each diffed as it comes, between users' requests),
        and the collector is paused once. The first held plans the diff, ``_HOLD_MAX`` held run it."""
        if held >= _HOLD_MAX:
            self._diff_held()
            return
        try:
            asyncio.get_running_loop().call_later(_HOLD, self._diff_held)
        except RuntimeError:  # no loop (a caller outside the proxy): now
            self._diff_held()

    def _diff_held(self) -> None:
        """The cheap path (quick.py) for the pairs held, one after the other; what it leaves goes to
        the worker. The clock is read once per pair: what a pair took is the time since the last."""
        held, self._held = self._held, []
        if not held:
            return
        # Parsing makes containers, all freed (no cycles) before the diff returns; with the collector
        # on, they trigger collections that walk the proxy's own young objects (~3 us per user
        # request at mirror 20%, benchmarks/parity/sink_cost.py).
        collecting = gc.isenabled()
        gc.disable()
        clock = time.perf_counter
        last = clock()
        until = last + _SLICE
        if last - self._window >= _WINDOW:
            self._window, self._spent = last, 0.0
            if last >= self._slow_until:
                self._slow.clear()  # endpoints found slow are tried again after a while
                self._cost.clear()
                self._slow_until = last + _SLOW_FORGIVEN
        quick, counts, cost, slow, pick = self._quick, self._counts, self._cost, self._slow, self._pick
        keys_raw, endpoint_raw, add = quick.keys_raw, quick.endpoint_raw, counts.add
        room = QUICK_SHARE * _WINDOW - self._spent  # of the loop's share of this window
        took = 0.0
        compared = done = 0
        try:
            for raw in held:
                done += 1
                kind = PAIR  # unless settled here
                if took < room or not (took or self._spent):  # else the loop has given parity its share
                    endpoint = endpoint_raw(raw[0], raw[1])
                    if endpoint not in slow:
                        try:
                            keys = keys_raw(raw)
                        except Exception:  # an odd answer (nested beyond the parsers' depth...) never reaches users
                            self._diff_failed(raw, endpoint)
                            keys = None
                        now = clock()
                        spent, last = now - last, now
                        took += spent
                        # Answers that take long to diff (long unordered arrays, reorderings) are the
                        # worker's job. A moving average, so that a pair that only waited for the CPU
                        # (wall time) does not count.
                        average = cost.get(endpoint, 0.0)
                        average += (spent - average) / 16
                        cost[endpoint] = average
                        if average > _SLOW_PAIR:
                            slow.add(endpoint)
                        if keys is not None:
                            if keys and pick.wants_sample(endpoint):
                                kind = SAMPLE  # the worker diffs it in full and keeps it as a sample
                            else:
                                add(endpoint, raw[4], keys)
                                compared += 1
                                kind = 0
                if kind:
                    self._to_worker(raw, kind)
                if last >= until:
                    break  # users' requests wait no longer than a slice: the rest in the next turn
        finally:
            if collecting:
                gc.enable()
            self._spent += took
            self.quick_seconds += took
            self.quick += compared
        if compared and self._ship_at is None:  # a ship planned already comes within _COUNT_EVERY
            self._schedule(_COUNT_EVERY)
        if done < len(held):
            self._held[:0] = held[done:]
            try:
                asyncio.get_running_loop().call_soon(self._diff_held)
            except RuntimeError:
                self._diff_held()

    def _diff_failed(self, raw: RawPair, endpoint: str) -> None:
        """The worker takes the pair (its full diff says what it makes of it); said once per endpoint."""
        if endpoint not in self._failed:
            self._failed.add(endpoint)
            log.exception("parity: the proxy's diff failed for %s; such pairs go to the worker", endpoint)

    def _drop(self) -> None:
        self.dropped += 1
        self._unsent_dropped += 1
        self._schedule(_COUNT_EVERY)

    def _schedule(self, delay: float) -> None:
        """Ship within ``delay`` seconds (an earlier ship already planned will do)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a caller outside the proxy): ship now, counts too
            self._ship(everything=True)
            return
        due = loop.time() + delay
        if self._ship_at is not None and self._ship_at <= due:
            self._ship_soon = self._ship_soon or delay <= _SHIP_EVERY
            return
        self._ship_at = due
        self._ship_soon = delay <= _SHIP_EVERY
        loop.call_at(due, self._ship_timer, due)

    def _ship_timer(self, due: float) -> None:
        if self._ship_at == due:  # not replaced by an earlier one
            self._ship_at = None
            self._ship_soon = False
            self._ship()

    def _ship(self, everything: bool = False) -> None:
        counts: Counts | None = None
        now = time.monotonic()
        if self._counts and (everything or now >= self._counts_due):
            counts, self._counts = self._counts, Counts()
            self._counts_due = now + _COUNT_EVERY
            self._pick.new_window()
        elif self._counts:  # the counts follow with a later ship
            self._schedule(_COUNT_EVERY)
        skipped, self._skipped = self._skipped, []
        dropped, self._unsent_dropped = self._unsent_dropped, 0
        if self._gone:
            self._record_here(counts or Counts(), dropped, skipped)
        elif dropped or skipped or counts:
            self._queue_frame(COUNTS, (dropped, skipped, counts))
        if self._out and self._writer_loop is None:  # else the pipe is full: written when it drains
            self._write()

    def _queue_frame(self, kind: int, message: object) -> None:
        frame = _frame(kind, message)
        self._out.append(frame)
        self._unsent += len(frame)

    def _write_some(self) -> None:
        """One writev of what waits (raises as os.writev does); what it took is forgotten."""
        out = self._out
        n = os.writev(self._fd, out[:_IOV_MAX])
        self._unsent -= n
        done = 0
        while done < len(out) and n >= len(out[done]):
            n -= len(out[done])
            done += 1
        del out[:done]
        if n:  # a part taken in part (the pipe filled up)
            out[0] = out[0][n:]

    def _write(self) -> None:
        try:
            while self._out:
                self._write_some()
        except BlockingIOError:
            self._want_writable(True)
            return
        except OSError as exc:
            # Said once. The loop's own counts still reach the store (written from here); pairs it
            # would hand over (samples, noise, what it cannot settle) are dropped and counted.
            log.error("parity: the diff worker is gone (%s): %d bytes of pairs and counts lost; the proxy now "
                      "writes its counts itself and drops the pairs the worker would diff", exc, self._unsent)
            self._gone = True
            self._out.clear()
            self._unsent = 0
        self._want_writable(False)

    def _record_here(self, counts: Counts, dropped: int, skipped: list[tuple[str, str, float, str]]) -> None:
        """With the worker gone: what the frame would carry, written to the store from the loop."""
        for method, path, at, reason in skipped:
            counts.skip(self._quick.endpoint(method, path), at, reason)
        try:
            if counts:
                self.store.record_counts(counts, {"dropped": dropped})
            elif dropped:
                self.store.record([], {"dropped": dropped})
        except Exception:  # never into the proxy's data path
            log.exception("parity: could not write counts to %s", self.store.path)

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
                          "skipped_too_large": self.skipped,
                          "unsent_bytes": self._unsent, "worker_alive": self._process.is_alive(),
                          "diff": self._where()}}
        return build_report(self.store, self.plan.parity, self.budget, self.min_compared, extra=extra).to_json()

    def _where(self) -> str:
        if self.sends_copies:
            return "process, which sends the copies too (parity.copies_from: worker)"
        if self.diff_on == "worker":
            return "process (parity.diff_on: worker)"
        if self.diff_on == "auto-worker":
            return "process, the proxy loop for what it cannot keep up with (parity.diff_on: auto)"
        return "proxy loop (answers up to 16 KiB, 64 KiB while the worker is behind) + process"

    # ------------------------------------------------------------ after the loop has ended

    def close(self) -> None:
        """Hand what is left to the worker, let it finish, stop it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        while self._held:  # slices: with a loop still running, the rest would wait for its next turn
            self._diff_held()
        counts, self._counts = self._counts, Counts()
        if self._gone:
            self._record_here(counts, self._unsent_dropped, self._skipped)
            self._conn.close()
            self.store.close()
            return
        self._queue_frame(COUNTS, (self._unsent_dropped, self._skipped, counts or None))
        self._queue_frame(STOP, None)
        self._skipped = []
        os.set_blocking(self._fd, True)
        with contextlib.suppress(OSError):
            while self._out:
                self._write_some()
        self._conn.close()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.terminate()
        self.store.close()


@contextlib.contextmanager
def _stops_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored while the worker is started: it starts so (ignored signals stay
    ignored across exec), else a Ctrl-C or a SIGTERM to the process group in its first second, before
    ``_work`` ignores them, would kill it with the pairs the proxy still has to hand over."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def _work(plan: Plan, conn: Connection) -> None:
    """The worker process: read frames, diff the pairs, until told to stop (or the proxy is gone)."""
    from switchover.parity.sink import ParitySink
    from switchover.parity.triage import Triage

    # Ctrl-C or a SIGTERM to the proxy's process group reaches this process too: the proxy decides
    # when parity stops (it drains, then sends the last pairs and a stop); EOF ends it if the proxy dies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Users first: where the proxy and parity want the same core, the proxy gets it, and parity falls
    # behind and drops (counted) rather than slowing users' requests.
    with contextlib.suppress(OSError):
        os.nice(19)
    sink = ParitySink(plan)
    triage = Triage(sink)
    if plan.parity.copies_from == "worker":
        from switchover.parity.copies import serve_copies

        try:
            serve_copies(conn, triage, _take_frames)
        finally:
            triage.flush(force=True)
            sink.close()
        return
    fd = conn.fileno()
    buffer = bytearray()
    read = PipeReader(fd, _PIPE_SIZE)
    try:
        wait = triage.flush()
        while True:
            if conn.poll(wait):
                if not read.into(buffer):
                    break  # the proxy is gone
                # Unpickling and diffing make containers, all freed (no cycles) once a pair is done:
                # collections in the middle of a chunk would only walk them.
                gc.disable()
                try:
                    if _take_frames(buffer, triage):
                        break
                finally:
                    gc.enable()
            wait = triage.flush()
    finally:
        triage.flush(force=True)
        sink.close()


def _take_frames(buffer: bytearray, triage: Triage, copies: CopySender | None = None) -> bool:
    """Hand the whole frames at the start of ``buffer`` to ``triage`` (copies to ``copies``) and remove
    them; True at STOP."""
    at, end = 0, len(buffer)
    view = memoryview(buffer)
    try:
        while end - at >= _HEAD.size:
            size, kind = _HEAD.unpack_from(view, at)
            if end - at - _HEAD.size < size:
                break
            start = at + _HEAD.size
            at = start + size
            if kind & _PICKLED:
                message = pickle.loads(view[start:at])
                kind &= ~_PICKLED
            else:
                message = marshal.loads(view[start:at])
            if kind == STOP:
                return True
            if kind == PAIR:
                triage.pair(message)
            elif kind == SAMPLE:
                triage.full_diff(message)
            elif kind == NOISE:
                triage.noise(message)
            elif kind == COPY and copies is not None:
                copies.send(message)
            elif kind == TARGET and copies is not None:
                copies.target(message)
            else:
                triage.counted(*message)
    finally:
        view.release()
        del buffer[:at]
    return False
