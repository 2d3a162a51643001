"""``--workers N``: N forked processes serve users on one port (SO_REUSEPORT: the kernel spreads
connections among them), the parent serves the admin API. One split and one set of counters for
all, in shared memory (shared.py): a PUT to the admin API reaches every worker's next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import sys
import time
import traceback

from switchover.errors import UserError
from switchover.traffic.proxy.config import ProxyConfig
from switchover.traffic.proxy.routing import Split
from switchover.traffic.proxy.runner import _run, ready_line, start, start_admin
from switchover.traffic.proxy.shared import SCALAR, Shared

START_TIMEOUT = 20.0


def serve_workers(config: ProxyConfig, split: Split) -> None:
    shared = Shared(config.workers)
    shared.set_split(split.candidate_weight, split.mirror_percent)
    host, port = config.listen
    # Hold the port (bound, not listening, so it takes no connections) until the workers listen on it;
    # with port 0 this is also how the workers learn which port to share.
    reserve = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reserve.bind((host, port))
    except OSError as exc:
        reserve.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    config = dataclasses.replace(config, listen=(host, reserve.getsockname()[1]))
    pids: list[int] = []
    parent = os.getpid()
    for index in range(config.workers):
        pid = os.fork()
        if pid == 0:  # the worker
            reserve.close()
            _follow_parent(parent)
            os._exit(_worker_process(config, shared, index))
        pids.append(pid)
    try:
        _wait_ready(shared, pids)
    except BaseException:
        _terminate(pids, signal.SIGKILL)
        raise
    finally:
        reserve.close()
    _run(_parent(config, split, shared, pids))


def _follow_parent(parent: int) -> None:
    """A worker drains and exits when its parent dies, even by SIGKILL: never an orphan holding the port."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):  # not Linux: the parent's SIGTERM still stops the workers
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_process(config: ProxyConfig, shared: Shared, index: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the workers
    try:
        _run(_worker(config, shared, index))
        return 0
    except UserError as exc:
        print(f"switchover proxy: worker {index}: {exc}", file=sys.stderr, flush=True)
        return 2
    except BaseException:
        traceback.print_exc()
        return 1


async def _worker(config: ProxyConfig, shared: Shared, index: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    running = await start(config, Split(*shared.split()), None, shared=shared, worker=index, with_admin=False,
                          reuse_port=True)
    await stop.wait()
    await running.stop(config.drain_timeout)


def _wait_ready(shared: Shared, pids: list[int]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if all(shared.words[shared.base(i) + SCALAR["ready"]] for i in range(len(pids))):
            return
        for pid in pids:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                raise UserError(f"a worker could not start (exit code {os.waitstatus_to_exitcode(status)}; "
                                "its message is above)")
        if time.monotonic() > deadline:
            raise UserError(f"the workers did not start within {START_TIMEOUT:.0f} s")
        time.sleep(0.02)


def _terminate(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


async def _parent(config: ProxyConfig, split: Split, shared: Shared, pids: list[int]) -> None:
    loop = asyncio.get_running_loop()
    try:
        admin_server = await start_admin(config, shared, None, time.time())
    except UserError:
        _terminate(pids, signal.SIGTERM)
        raise
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(ready_line(config, split, config.listen[1], admin_server.sockets[0].getsockname()[1]),
          file=sys.stderr, flush=True)
    alive = set(pids)
    while not stop.is_set() and alive:
        _reap(alive, unexpected=True)
        with_timeout = asyncio.ensure_future(stop.wait())
        await asyncio.wait([with_timeout], timeout=0.5)
        with_timeout.cancel()
    print("switchover proxy: draining (no new connections; requests in flight finish)", file=sys.stderr, flush=True)
    for pid in alive:
        os.kill(pid, signal.SIGTERM)
    deadline = loop.time() + config.drain_timeout + 5
    while alive and loop.time() < deadline:
        _reap(alive, unexpected=False)
        await asyncio.sleep(0.05)
    if alive:
        _terminate(list(alive), signal.SIGKILL)
    admin_server.close()
    print("switchover proxy: drained, exiting", file=sys.stderr, flush=True)


def _reap(alive: set[int], unexpected: bool) -> None:
    for pid in list(alive):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            alive.discard(pid)
            if unexpected:
                print(f"switchover proxy: worker {pid} exited (code {os.waitstatus_to_exitcode(status)}); "
                      f"{len(alive)} worker(s) still serving", file=sys.stderr, flush=True)
