"""Start the proxy, serve until SIGTERM/SIGINT, drain, exit."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from switchover.errors import UserError
from switchover.traffic.proxy.config import ProxyConfig
from switchover.traffic.proxy.routing import Split
from switchover.traffic.proxy.shared import Shared
from switchover.traffic.proxy.state import load_split, save_split

if TYPE_CHECKING:
    from switchover.plan import Plan
    from switchover.traffic.proxy.dataplane import Proxy
    from switchover.traffic.proxy.hooks import MirrorSink

SWEEP_INTERVAL = 0.2  # seconds between timeout sweeps (header, upstream answer, idle keep-alive)


def initial_split(config: ProxyConfig) -> tuple[Split, bool]:
    """The split to start with: the state file's when there is one (a restart never moves users)."""
    flags = Split(config.weight, config.mirror)
    saved = load_split(config.state_file) if config.state_file is not None else None
    if saved is not None:
        return saved, saved != flags
    if config.state_file is not None:
        try:
            save_split(config.state_file, flags, config.app)
        except OSError as exc:
            raise UserError(f"{config.state_file}: cannot write the proxy state file: {exc.strerror}") from None
    return flags, False


def make_parity_sink(plan: Plan | None) -> MirrorSink | None:
    """The parity area's sink when it exists in this build (switchover.parity.sink.make_sink)."""
    if plan is None:
        return None
    try:
        from switchover.parity.sink import make_sink  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError as exc:
        if exc.name not in ("switchover.parity", "switchover.parity.sink"):
            # Parity is in this build but cannot load (a dependency missing): say so, keep serving users.
            print(f"switchover proxy: parity diffing is off: {exc} (reinstall: pip install -e .)",
                  file=sys.stderr, flush=True)
        return None
    sink: MirrorSink | None = make_sink(plan)
    return sink


def serve(config: ProxyConfig, plan: Plan | None = None) -> None:
    """Run the proxy until SIGTERM or SIGINT; returns after draining."""
    split, overridden = initial_split(config)
    if overridden:
        print(f"switchover proxy: using the split saved in {config.state_file} "
              f"(candidate_weight={split.candidate_weight}, mirror_percent={split.mirror_percent}), "
              "not --weight/--mirror: a restart never moves users", file=sys.stderr)
    sink = make_parity_sink(plan)
    if config.workers > 1:
        if sink is not None:
            sink.close()
            raise UserError("parity diffing inside the proxy needs --workers 1 (each worker would hold its own "
                            "mirror pairs)")
        from switchover.traffic.proxy.workers import serve_workers

        serve_workers(config, split)
        return
    try:
        _run(_main(config, split, sink))
    finally:
        if sink is not None:
            sink.close()


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(coro)
        return
    uvloop.run(coro)


@dataclass
class Running:
    """A proxy serving in the current event loop (``start``); ``stop`` drains and closes it."""

    proxy: Proxy
    server: asyncio.Server
    admin_server: asyncio.Server | None
    listen_port: int
    admin_port: int
    sweeping: asyncio.Task[None]

    async def stop(self, drain_timeout: float) -> int:
        """Stop accepting, let requests in flight finish, close keep-alive connections as they go idle.
        Returns the number of requests still in flight at the deadline."""
        loop = asyncio.get_running_loop()
        self.server.close()
        proxy = self.proxy
        proxy.start_draining()
        deadline = loop.time() + drain_timeout
        while proxy.busy() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        left = sum(len(c.queue) for c in proxy.conns)
        self.sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sweeping
        if self.admin_server is not None:
            self.admin_server.close()
        proxy.close()
        return left


async def start(config: ProxyConfig, split: Split, sink: MirrorSink | None, *, shared: Shared | None = None,
                worker: int = 0, with_admin: bool = True, reuse_port: bool = False) -> Running:
    """Listen for users (and for the admin API unless ``with_admin`` is false); UserError when an address
    cannot be bound. A worker of several passes the ``shared`` state its parent created."""
    from switchover.traffic.proxy.dataplane import Proxy
    from switchover.traffic.proxy.server import ClientConn

    loop = asyncio.get_running_loop()
    if shared is None:  # one block more for a sink that sends the copies (its process counts them there)
        shared = Shared(1, helpers=1 if getattr(sink, "sends_copies", False) else 0)
        shared.set_split(split.candidate_weight, split.mirror_percent)
    proxy = Proxy(config, shared, worker, sink, loop)
    host, port = config.listen
    try:
        server = await loop.create_server(lambda: ClientConn(proxy), host, port, backlog=2048, reuse_address=True,
                                          reuse_port=reuse_port or None)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    admin_server = None
    admin_port = 0
    if with_admin:
        try:
            admin_server = await start_admin(config, shared, sink, time.time())
        except UserError:
            server.close()
            raise
        admin_port = admin_server.sockets[0].getsockname()[1]

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            proxy.sweep()

    proxy.stats.ready = 1
    return Running(proxy, server, admin_server, server.sockets[0].getsockname()[1], admin_port,
                   loop.create_task(sweeper()))


async def start_admin(config: ProxyConfig, shared: Shared, sink: MirrorSink | None,
                      started_at: float) -> asyncio.Server:
    from switchover.traffic.proxy.admin import Admin, AdminConn

    admin = Admin(shared, config.app, started_at, config.admin_token, config.state_file, sink)
    host, port = config.admin
    try:
        return await asyncio.get_running_loop().create_server(lambda: AdminConn(admin), host, port,
                                                              reuse_address=True)
    except OSError as exc:
        raise UserError(f"cannot listen on the admin address {host}:{port}: {exc.strerror}") from None


def ready_line(config: ProxyConfig, split: Split, listen_port: int, admin_port: int) -> str:
    return (f"switchover proxy: app {config.app}: listening on http://{config.listen[0]}:{listen_port}, "
            f"admin on http://{config.admin[0]}:{admin_port}; stable {config.stable.url}, "
            f"candidate {config.candidate.url}; candidate_weight={split.candidate_weight} "
            f"mirror_percent={split.mirror_percent}; workers={config.workers}")


async def _main(config: ProxyConfig, split: Split, sink: MirrorSink | None) -> None:
    loop = asyncio.get_running_loop()
    running = await start(config, split, sink)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(ready_line(config, split, running.listen_port, running.admin_port), file=sys.stderr, flush=True)
    await stop.wait()
    print("switchover proxy: draining (no new connections; requests in flight finish)", file=sys.stderr, flush=True)
    left = await running.stop(config.drain_timeout)
    print(f"switchover proxy: {left} request(s) still in flight at the drain deadline, exiting" if left
          else "switchover proxy: drained, exiting", file=sys.stderr, flush=True)
