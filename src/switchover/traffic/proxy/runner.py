"""Start the proxy, serve until SIGTERM/SIGINT, drain, exit."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

from switchover.errors import UserError
from switchover.traffic.proxy.config import ProxyConfig
from switchover.traffic.proxy.routing import Split
from switchover.traffic.proxy.state import load_split, save_split

if TYPE_CHECKING:
    from switchover.plan import Plan
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
    except ModuleNotFoundError:
        return None
    sink: MirrorSink | None = make_sink(plan)
    return sink


def serve(config: ProxyConfig, plan: Plan | None = None) -> None:
    """Run the proxy in this process until SIGTERM or SIGINT; returns after draining."""
    split, overridden = initial_split(config)
    if overridden:
        print(f"switchover proxy: using the split saved in {config.state_file} "
              f"(candidate_weight={split.candidate_weight}, mirror_percent={split.mirror_percent}), "
              "not --weight/--mirror: a restart never moves users", file=sys.stderr)
    sink = make_parity_sink(plan)
    try:
        import uvloop

        uvloop.run(_main(config, split, sink))
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(_main(config, split, sink))
    finally:
        if sink is not None:
            sink.close()


async def _main(config: ProxyConfig, split: Split, sink: MirrorSink | None) -> None:
    from switchover.traffic.proxy.admin import Admin, AdminConn
    from switchover.traffic.proxy.dataplane import Proxy
    from switchover.traffic.proxy.server import ClientConn

    loop = asyncio.get_running_loop()
    proxy = Proxy(config, split, sink, loop)
    admin = Admin(proxy, config.admin_token, config.state_file)
    host, port = config.listen
    try:
        server = await loop.create_server(lambda: ClientConn(proxy), host, port, backlog=2048, reuse_address=True)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    ahost, aport = config.admin
    try:
        admin_server = await loop.create_server(lambda: AdminConn(admin), ahost, aport, reuse_address=True)
    except OSError as exc:
        server.close()
        raise UserError(f"cannot listen on the admin address {ahost}:{aport}: {exc.strerror}") from None
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listen_port = server.sockets[0].getsockname()[1]
    admin_port = admin_server.sockets[0].getsockname()[1]
    print(f"switchover proxy: app {config.app}: listening on http://{host}:{listen_port}, "
          f"admin on http://{ahost}:{admin_port}; stable {config.stable.url}, candidate {config.candidate.url}; "
          f"candidate_weight={split.candidate_weight} mirror_percent={split.mirror_percent}",
          file=sys.stderr, flush=True)

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            proxy.sweep()

    sweeping = loop.create_task(sweeper())
    await stop.wait()
    # Drain: stop accepting, let requests in flight finish, close keep-alive connections as they go idle.
    server.close()
    proxy.start_draining()
    deadline = loop.time() + config.drain_timeout
    while proxy.busy() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    left = sum(len(c.queue) for c in proxy.conns)
    print(f"switchover proxy: drained; {left} request(s) still in flight at the deadline" if left
          else "switchover proxy: drained, exiting", file=sys.stderr, flush=True)
    sweeping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeping
    admin_server.close()
    proxy.close()
