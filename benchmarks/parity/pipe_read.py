"""How the parity worker reads the proxy's pipe: ``PipeReader`` (one buffer used again) against
``os.read`` of up to 1 MiB (a new bytes object per read, kept until the next read, as the worker
did before session 9), the reference, in one run. How much the old way costs depends on the C
library's allocator: glibc gives such a bytes object memory the kernel must fault in afresh when
the last one is still alive (here: ~3x the time); freed at once, it reuses it.

    .venv/bin/python benchmarks/parity/pipe_read.py [--kb 300] [--reads 3000] [--rounds 3]

The proxy writes its frames for the worker every 20 ms (~300 KB at 15,000 pairs/s of 2 KB answers);
each round writes ``--kb`` KB into a pipe and reads it back, ``--reads`` times, both ways in turn,
each in a process of its own (the allocator's state is part of what is measured).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import statistics
import subprocess
import sys
import time

from switchover.parity.pipe import PipeReader

_SIZE = 1024 * 1024  # what the worker asks of the kernel for the pipe, and reads at most


def _round(way: str, r: int, w: int, data: bytes, reads: int) -> float:
    """Seconds per write + read."""
    buffer = bytearray()
    reader = PipeReader(r, _SIZE)
    chunk = b""
    start = time.perf_counter()
    for _ in range(reads):
        os.write(w, data)
        if way == "os.read":
            chunk = os.read(r, _SIZE)  # alive until the next read, as in the worker's loop
            buffer += chunk
        else:
            reader.into(buffer)
        del buffer[:]
    del chunk
    return (time.perf_counter() - start) / reads


def _child(way: str, kb: int, reads: int) -> None:
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _SIZE)
    print(_round(way, r, w, b"x" * (kb * 1024), reads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kb", type=int, default=300)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.kb, args.reads)
        return
    times: dict[str, list[float]] = {"os.read": [], "PipeReader": []}
    for _ in range(args.rounds):
        for way in times:
            out = subprocess.run([sys.executable, __file__, "--child", way, "--kb", str(args.kb), "--reads",
                                  str(args.reads)], capture_output=True, text=True, check=True).stdout
            times[way].append(float(out))
    ref = statistics.median(times["os.read"])
    print(f"{args.kb} KB written and read back, {args.reads} times a round, {args.rounds} rounds (medians)")
    for way, spent in times.items():
        t = statistics.median(spent)
        print(f"{way:<11} {t * 1e6:8.1f} us per read   {ref / t:5.2f}x the reference")


if __name__ == "__main__":
    main()
