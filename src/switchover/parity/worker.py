"""The proxy's sink with the diff in another process (what ``make_sink`` gives the proxy).

Measured (docs/performance-parity.md): diffing in a thread of the proxy's process takes the GIL
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
import logging
import multiprocessing
import os
import pickle
import struct
import threading
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from switchover.parity.report import build_report, plan_budget
from switchover.parity.store import MismatchStore, store_path
from switchover.traffic.proxy.hooks import Answer, MirrorPair

if TYPE_CHECKING:
    from switchover.plan import Plan

log = logging.getLogger(__name__)

_SHIP_EVERY = 0.02  # seconds: pairs are pickled and written in batches this often
_MAX_UNSENT = 16 * 1024 * 1024  # bytes of frames waiting for the pipe before pairs are dropped


# Pairs cross the pipe as plain tuples: pickling the frozen dataclasses costs ~7x more (34 us
# against 5 us for a pair of 2 KB answers), and that time is taken on the proxy's loop.
WirePair = tuple[str, str, tuple[tuple[str, str], ...], bytes, tuple[Any, ...], tuple[Any, ...], float]


def to_wire(p: MirrorPair) -> WirePair:
    s, c = p.stable, p.candidate
    return (p.method, p.path, p.headers, p.body, (s.status, s.headers, s.body, s.latency, s.error),
            (c.status, c.headers, c.body, c.latency, c.error), p.at)


def from_wire(w: WirePair) -> MirrorPair:
    return MirrorPair(w[0], w[1], w[2], w[3], Answer(*w[4]), Answer(*w[5]), w[6])


def _frame(message: object) -> bytes:
    """One message as ``multiprocessing.Connection.recv_bytes`` reads it (4-byte length, then data)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return struct.pack("!i", len(data)) + data


class ProcessSink:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.limit = plan.parity.queue
        self.budget, self.min_compared = plan_budget(plan)
        self._pending: list[WirePair] = []
        self._out = bytearray()  # framed batches the pipe has not taken yet
        self.submitted = 0
        self.dropped = 0
        self._unsent_dropped = 0
        self._scheduled = False
        self._writer_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._lock = threading.Lock()  # only for close() racing a late submit from another thread
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
        """An append, or a counted drop when the worker is too far behind. Never blocks."""
        self.submitted += 1
        if self._closed or len(self._pending) >= self.limit or len(self._out) > _MAX_UNSENT:
            self.dropped += 1
            self._unsent_dropped += 1
            return
        self._pending.append(to_wire(pair))
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a caller outside the proxy): ship now
                self._ship()
                return
            self._scheduled = True
            loop.call_later(_SHIP_EVERY, self._ship)

    def _ship(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        dropped, self._unsent_dropped = self._unsent_dropped, 0
        if batch or dropped:
            self._out += _frame((dropped, batch))
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
        extra = {"sink": {"submitted": self.submitted, "dropped": self.dropped, "pending": len(self._pending),
                          "unsent_bytes": len(self._out), "worker_alive": self._process.is_alive(),
                          "diff": "process"}}
        return build_report(self.store, self.plan.parity, self.budget, self.min_compared, extra=extra).to_json()

    # ------------------------------------------------------------ after the loop has ended

    def close(self) -> None:
        """Hand what is left to the worker, let it finish, stop it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        batch, self._pending = self._pending, []
        self._out += _frame((self._unsent_dropped, batch)) + _frame(None)
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
            dropped, batch = message
            if dropped:
                sink.store.record([], {"dropped": dropped})
            for wire in batch:
                pair = from_wire(wire)
                if sink.fetches_noise:
                    sink.submit(pair)  # the second stable is called first, from the sink's pool
                else:
                    sink.submit_exchange(pair, None, block=True)  # the pipe, not this queue, drops
    finally:
        sink.close()
