"""The proxy's sink with the diff in another process (what ``make_sink`` gives the proxy).

Measured (docs/performance-parity.md): diffing in a thread of the proxy's process takes the GIL
from the event loop and costs users about half the throughput at mirror 20%. Here the proxy's side
only appends each pair to a bounded buffer (``submit``, on the loop); a sender thread ships batches
to a worker process over a pipe; the worker diffs (``ParitySink``: noise calls, store writes).
When the worker falls behind the pipe fills, the buffer fills, and further pairs are dropped and
counted, never queued without bound.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import threading
from collections import deque
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from switchover.parity.report import build_report, plan_budget
from switchover.parity.store import MismatchStore, store_path
from switchover.traffic.proxy.hooks import MirrorPair

if TYPE_CHECKING:
    from switchover.plan import Plan

log = logging.getLogger(__name__)

_SEND_EVERY = 0.02  # seconds between batches shipped to the worker


class ProcessSink:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.limit = plan.parity.queue
        self.budget, self.min_compared = plan_budget(plan)
        self._buffer: deque[MirrorPair] = deque()
        self.submitted = 0
        self.dropped = 0
        self._unsent_dropped = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # spawn, not fork: the proxy runs an event loop and threads that a fork would copy half-way.
        ctx = multiprocessing.get_context("spawn")
        receiver, self._conn = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=_work, args=(plan, receiver), name="switchover-parity", daemon=True)
        self._process.start()
        receiver.close()
        self.store = MismatchStore(store_path(plan), plan.parity.samples)
        self._sender = threading.Thread(target=self._send_loop, name="parity-send", daemon=True)
        self._sender.start()

    def submit(self, pair: MirrorPair) -> None:
        """On the proxy's loop: an append, or a counted drop when the buffer is full."""
        self.submitted += 1
        if len(self._buffer) >= self.limit:
            with self._lock:
                self.dropped += 1
                self._unsent_dropped += 1
            return
        self._buffer.append(pair)

    def _send_loop(self) -> None:
        while True:
            stopping = self._stop.wait(_SEND_EVERY)
            batch = []
            while self._buffer:
                batch.append(self._buffer.popleft())
            with self._lock:
                dropped, self._unsent_dropped = self._unsent_dropped, 0
            if batch or dropped:
                try:
                    # Blocks when the worker is behind: then the buffer fills and submit() drops.
                    self._conn.send_bytes(pickle.dumps((dropped, batch), protocol=pickle.HIGHEST_PROTOCOL))
                except (OSError, EOFError):
                    log.error("parity: the diff worker is gone; %d pairs lost", len(batch))
                    return
            if stopping:
                return

    def report(self) -> dict[str, Any]:
        extra = {"sink": {"submitted": self.submitted, "dropped": self.dropped, "buffered": len(self._buffer),
                          "worker_alive": self._process.is_alive(), "diff": "process"}}
        return build_report(self.store, self.plan.parity, self.budget, self.min_compared, extra=extra).to_json()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._sender.join(timeout=10)
        with contextlib.suppress(OSError, EOFError):
            self._conn.send_bytes(pickle.dumps(None))
        self._conn.close()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.terminate()
        self.store.close()


def _work(plan: Plan, conn: Connection) -> None:
    """The worker process: receive batches, diff them with a ParitySink, until told to stop."""
    import os

    from switchover.parity.sink import ParitySink

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
            for pair in batch:
                if sink.fetches_noise:
                    sink.submit(pair)  # the second stable is called first, from the sink's pool
                else:
                    sink.submit_exchange(pair, None, block=True)  # the pipe, not this queue, drops
    finally:
        sink.close()
