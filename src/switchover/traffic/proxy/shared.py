"""State shared by the proxy's worker processes: the split and every counter, in one shared memory
map created before the workers are forked.

Each worker writes only its own block of 64-bit counters (no locks needed); the admin API sums the
blocks when it is read. The split is one 64-bit word (weight | mirror << 8), written in one store,
so a worker never sees half of a change. A helper process the proxy spawns (the parity worker, when
it sends the copies: ``parity.copies_from: worker``) gets a block of its own: on Linux the map is a
memfd, which the helper maps again through ``/proc/<proxy>/fd/<fd>`` (``attach``), so its copies
count in the proxy's ``shadow`` role and mirror counters as the proxy's own would.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

from switchover.metrics.base import LATENCY_BOUNDS, ROLES

# A role's block: requests, errors, latency sum (ns), status 100..599 (one slot each), latency buckets.
REQUESTS, ERRORS, LATENCY_SUM_NS, STATUS = 0, 1, 2, 3
STATUS_SLOTS = 500  # codes 100-599; anything else is counted as 599's neighbour slot "other" (index 499)
LATENCY = STATUS + STATUS_SLOTS
ROLE_SIZE = LATENCY + len(LATENCY_BOUNDS) + 1

# Scalar counters after the roles, in each worker's block.
SCALARS = ("retries_attempted", "retries_succeeded", "retries_budget_exhausted", "ejections", "ejected",
           "consecutive_failures", "mirror_sent", "mirror_completed", "mirror_dropped", "mirror_failed",
           "mirror_in_flight", "mirror_retried", "overload_rejected", "in_flight_stable", "in_flight_canary", "ready")
SCALAR = {name: len(ROLES) * ROLE_SIZE + i for i, name in enumerate(SCALARS)}
WORKER_SIZE = len(ROLES) * ROLE_SIZE + len(SCALARS)
HEADER = 8  # word 0: the split


def pack_split(weight: int, mirror: int) -> int:
    return weight | (mirror << 8)


def unpack_split(word: int) -> tuple[int, int]:
    return word & 0xFF, (word >> 8) & 0xFF


@dataclass(frozen=True)
class HelperBlock:
    """Where a helper process finds its block: the proxy's pid and the memfd's number there, the
    map's shape and the block's index."""

    pid: int
    fd: int
    workers: int
    helpers: int
    index: int


class Shared:
    def __init__(self, workers: int, helpers: int = 0, *, _fd: int | None = None) -> None:
        """``workers`` blocks for the proxy's workers, ``helpers`` more for processes it spawns."""
        self.workers = workers
        self.helpers = helpers
        self.blocks = workers + helpers
        size = (HEADER + self.blocks * WORKER_SIZE) * 8
        self._fd: int | None = None
        if _fd is not None:  # attach: another process's map
            self._map = mmap.mmap(_fd, size)
        elif helpers and hasattr(os, "memfd_create"):
            self._fd = os.memfd_create("switchover-proxy-counters", os.MFD_CLOEXEC)
            os.ftruncate(self._fd, size)
            self._map = mmap.mmap(self._fd, size)  # MAP_SHARED: forked workers and helpers see one map
        else:
            self._map = mmap.mmap(-1, size)  # MAP_SHARED|MAP_ANONYMOUS
        self.words = memoryview(self._map).cast("q")

    def helper_block(self, index: int = 0) -> HelperBlock | None:
        """How helper ``index`` attaches to this map (None: not possible here, not Linux)."""
        if self._fd is None or not 0 <= index < self.helpers:
            return None
        return HelperBlock(os.getpid(), self._fd, self.workers, self.helpers, self.workers + index)

    @classmethod
    def attach(cls, block: HelperBlock) -> Shared:
        """The proxy's map, from a helper process (raises OSError when it cannot be opened)."""
        fd = os.open(f"/proc/{block.pid}/fd/{block.fd}", os.O_RDWR)
        try:
            return cls(block.workers, block.helpers, _fd=fd)
        finally:
            os.close(fd)

    def base(self, worker: int) -> int:
        return HEADER + worker * WORKER_SIZE

    def set_split(self, weight: int, mirror: int) -> None:
        self.words[0] = pack_split(weight, mirror)

    def split(self) -> tuple[int, int]:
        return unpack_split(self.words[0])

    def total(self, offset: int) -> int:
        """A counter summed over the blocks, workers' and helpers' (offset within a block)."""
        words = self.words
        return sum(words[HEADER + w * WORKER_SIZE + offset] for w in range(self.blocks))

    def totals(self, offset: int, length: int) -> list[int]:
        out = [0] * length
        words = self.words
        for w in range(self.blocks):
            start = HEADER + w * WORKER_SIZE + offset
            for i, value in enumerate(words[start:start + length]):
                out[i] += value
        return out

    def scalar(self, name: str) -> int:
        return self.total(SCALAR[name])

    def scalar_max(self, name: str) -> int:
        words = self.words
        return max(words[HEADER + w * WORKER_SIZE + SCALAR[name]] for w in range(self.blocks))
