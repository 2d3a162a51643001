"""Reading the pipe from the proxy in the parity worker (``worker.py``, ``copies.py``)."""

from __future__ import annotations

import os


class PipeReader:
    """Reads from a pipe into one buffer kept for the purpose: ``os.read(fd, n)`` makes a new bytes
    object of ``n`` bytes each time, whose fresh pages (n = 1 MiB here) cost the kernel page faults
    as it copies into them: ~8% of the worker's time (py-spy), gone with a buffer used again."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.view = memoryview(bytearray(size))

    def into(self, buffer: bytearray) -> bool:
        """Append what the pipe holds to ``buffer``; False at its end (raises BlockingIOError when
        it is non-blocking and holds nothing)."""
        n = os.readv(self.fd, [self.view])
        buffer += self.view[:n]
        return n > 0
