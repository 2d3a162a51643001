"""Where the proxy's CPU goes with a parity sink: the same proxy, in-process, with different sinks.

    flock /tmp/bench.lock .venv/bin/python benchmarks/parity/sink_cost.py [--rounds 5] [--kb 2] [--sinks none,sink]
    flock /tmp/bench.lock .venv/bin/python benchmarks/parity/sink_cost.py --instructions 2000 --rounds 1 --sinks off,none,sink
    ... --instructions 2000 --rounds 1 --sinks take,sink --keep-profiles /tmp/prof   # then callgrind_annotate

Our own nginx serves the two answers (as ``proxy_mirror.py``); for each sink in turn a child
process runs the proxy (mirror 20%) and wrk drives it; the child reports its CPU time per user
request. With ``--instructions N`` the child runs under valgrind's callgrind instead and gets
exactly N requests (after 400 of warm-up): it reports the instructions it ran per user request,
which the machine's load does not change (user space only; the mirror sample is seeded and the
loop's time limits on the diff are lifted, so every run diffs the same pairs on the loop). Sinks:
``off`` (mirror 0%: the reference for the target), ``none`` (no sink: nothing buffered), ``take`` (both answers buffered and handed
over as the proxy holds them, ``submit_raw``, then thrown away), ``take-pair`` (the same handed over
as a decoded ``MirrorPair``, as sinks without ``submit_raw`` get them), ``parse`` (and both parsed with orjson), ``diff`` (the proxy's cheap diff,
``QuickDiff.keys``, with the collector paused as ``ProcessSink`` runs it), ``diff-gc`` (the same
with the collector on), ``sink`` (the sink the proxy gets with ``--plan``: ``worker.ProcessSink``,
cheap-path pairs diffed a few milliseconds' worth together) and ``sink-each`` (the same sink diffing
each pair as it comes), ``sink-worker`` (the same sink with ``parity.diff_on: worker``: every
pair handed to the worker process, whose instructions are not counted) and ``sink-copies`` (with
``parity.copies_from: worker``: the worker sends the copies too; the proxy hands over each request
with the stable answer). Rounds alternate the sinks; medians. ``--sinks a,b`` runs some of them (the
first is the reference).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SINKS = ("off", "none", "take", "take-pair", "parse", "diff", "diff-gc", "sink", "sink-each", "sink-worker",
         "sink-copies")


class _TakePair:
    def submit(self, pair: Any) -> None:
        pass

    def skip(self, *args: Any) -> None:
        pass

    def report(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class _Take(_TakePair):
    def submit_raw(self, raw: Any) -> None:
        pass


class _Parse(_TakePair):
    def submit(self, pair: Any) -> None:
        import orjson

        gc.disable()
        try:
            orjson.loads(pair.stable.body)
            orjson.loads(pair.candidate.body)
        finally:
            gc.enable()


class _Diff(_TakePair):
    def __init__(self, pause_gc: bool) -> None:
        from switchover.parity.compare import Comparer
        from switchover.parity.quick import QuickDiff
        from switchover.plan.parity import Parity

        self.quick = QuickDiff(Comparer(Parity(ignore=["$.generated_at"])))
        self.pause_gc = pause_gc

    def submit(self, pair: Any) -> None:
        if self.pause_gc:
            gc.disable()
        try:
            self.quick.keys(pair.stable, pair.candidate)
        finally:
            gc.enable()


def _sink(tmp: Path, stable: str, candidate: str, hold: bool = True, loop: bool = True, copies: bool = False) -> Any:
    """The sink the proxy gets with ``--plan`` (worker.ProcessSink); ``hold=False``: each pair
    diffed as it comes instead of a few milliseconds' worth together; ``loop=False``: every pair
    handed to the worker process (``parity.diff_on: worker``); ``copies``: the worker sends the
    copies too (``parity.copies_from: worker``)."""
    from switchover.parity import worker
    from switchover.plan import plan_from_dict

    if not hold:
        worker._HOLD_MAX = 1
    if os.environ.get("SW_SINK_COST_UNTIMED"):
        # Under callgrind the proxy runs ~50x slower: the loop's time limits on the diff would send
        # the pairs to the worker process, which is not what they measure. Every pair on the loop.
        worker.QUICK_SHARE, worker._SLOW_PAIR, worker._SLICE = 1.0, float("inf"), 1.0
        # And its timers run that much slower, so that as many pairs wait for each (diffed together,
        # shipped together) as at full speed: otherwise each would cost a timer of its own.
        scale = float(os.environ.get("SW_SINK_COST_TIMER_SCALE", "1"))
        worker._HOLD, worker._SHIP_EVERY, worker._COUNT_EVERY = (
            worker._HOLD * scale, worker._SHIP_EVERY * scale, worker._COUNT_EVERY * scale)
    plan = plan_from_dict({"name": f"sw_sink_cost_{os.getpid()}", "stable": {"url": stable},
                           "candidate": {"url": candidate}, "parity": {"ignore": ["$.generated_at"], "diff_on": "proxy" if loop else "worker",
                                                                       "copies_from": "worker" if copies else "proxy"}},
                          filename=str(tmp / "plan.yaml"))
    return worker.ProcessSink(plan)


def child(sink_name: str, stable: str, candidate: str, port: int, tmp: Path) -> None:
    import uvloop

    from switchover.cli.proxy import build_config
    from switchover.traffic.proxy.routing import Split
    from switchover.traffic.proxy.runner import start

    sinks = {"off": lambda: None, "none": lambda: None, "take": _Take, "take-pair": _TakePair, "parse": _Parse, "diff": lambda: _Diff(True),
             "diff-gc": lambda: _Diff(False), "sink": lambda: _sink(tmp, stable, candidate),
             "sink-each": lambda: _sink(tmp, stable, candidate, hold=False),
             "sink-worker": lambda: _sink(tmp, stable, candidate, loop=False),
             "sink-copies": lambda: _sink(tmp, stable, candidate, loop=False, copies=True)}
    sink = sinks[sink_name]()
    if os.environ.get("SW_SINK_COST_UNTIMED"):
        import random

        random.seed(4)  # the same requests mirrored in every run: instruction counts compare exactly

    def cpu() -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        print(f"cpu {ru.ru_utime + ru.ru_stime:.4f}", flush=True)

    async def main() -> None:
        config, _ = build_config(
            plan_path=None, listen=f"127.0.0.1:{port}", admin="127.0.0.1:0", stable=stable, candidate=candidate,
            app_name="sw_sink_cost", weight=0, mirror=20, mirror_writes=False, sticky_header=None,
            sticky_cookie=None, state_file=tmp / f"split-{port}.json", admin_token=None, workers=None)
        if os.environ.get("SW_SINK_COST_UNTIMED"):  # copies wait as many times longer for company (see _sink)
            scale = float(os.environ.get("SW_SINK_COST_TIMER_SCALE", "1"))
            limits = config.limits.model_copy(update={"mirror_batch_wait": config.limits.mirror_batch_wait * scale})
            config = dataclasses.replace(config, limits=limits)
        running = await start(config, Split(0, 0 if sink_name == "off" else 20), sink)  # type: ignore[arg-type]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, stop.set)
        loop.add_signal_handler(signal.SIGUSR2, cpu)
        print("ready", flush=True)
        await stop.wait()
        cpu()
        print(f"sink {getattr(sink, 'quick', 0)} {getattr(sink, 'to_worker', 0)}", flush=True)
        await running.stop(1)
        if sink is not None:
            sink.close()  # ProcessSink: its worker process ends

    uvloop.run(main())


def _wrk(url: str, seconds: int) -> int:
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", url], capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    match = re.search(r"(\d+) requests in", out)
    if match is None:
        raise SystemExit(f"wrk gave no count:\n{out}")
    return int(match.group(1))


def _drive(port: int, requests: int, connections: int = 8) -> None:
    """Exactly ``requests`` GETs over ``connections`` keep-alive connections (wrk runs for a time,
    not a count; instruction counts want a count)."""

    async def one(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(n):
            writer.write(b"GET /orders/1 HTTP/1.1\r\nHost: bench\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
        writer.close()

    async def all_of_them() -> None:
        await asyncio.gather(*(one(requests // connections) for _ in range(connections)))

    asyncio.run(all_of_them())


def _one(args: argparse.Namespace, name: str, stable: str, candidate: str, tmp: Path) -> float:
    """One round of one sink: CPU microseconds (wrk) or thousands of instructions (callgrind) of
    the proxy per user request."""
    from switchover.demo.runner import free_port

    port = free_port()
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={_CALLGRIND_DIR}/callgrind.out.%p",
                "--dump-instr=no", "--collect-systime=no"] if args.instructions else []
    env = ({**os.environ, "SW_SINK_COST_UNTIMED": "1", "SW_SINK_COST_TIMER_SCALE": str(args.timer_scale)}
           if args.instructions else None)
    proc = subprocess.Popen([*valgrind, sys.executable, __file__, "--child", name, stable, candidate, str(port),
                             str(tmp)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"the proxy with sink {name} did not start")
    url = f"http://127.0.0.1:{port}/orders/1"
    try:
        if args.instructions:
            _drive(port, 400)  # warm up
            _instructions(proc.pid)
            start = time.monotonic()
            _drive(port, args.instructions)
            print(f"{name}: {args.instructions / (time.monotonic() - start):.0f} requests/s under callgrind")
            counted = _instructions(proc.pid) / 1000 / args.instructions
            if args.keep_profiles:
                print(f"{name}: profile {_CALLGRIND_DIR}/callgrind.out.{proc.pid}.2 (the measured requests)")
            return counted
        _wrk(url, 1)  # warm up
        proc.send_signal(signal.SIGUSR2)
        before = float(proc.stdout.readline().split()[1])
        served = _wrk(url, args.seconds)
        proc.send_signal(signal.SIGUSR2)
        after = float(proc.stdout.readline().split()[1])
        return 1e6 * (after - before) / served
    finally:
        proc.send_signal(signal.SIGUSR1)
        out, _ = proc.communicate(timeout=120)
        to_worker = re.search(r"^sink \d+ (\d+)$", out, re.M)
        if args.instructions and to_worker and int(to_worker.group(1)):
            print(f"note: {name}: {to_worker.group(1)} pairs went to the worker process (not counted here)")


def _instructions(pid: int) -> int:
    """Instructions the proxy ran since the last zeroing (callgrind's dump of the running process)."""
    out = subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"callgrind_control failed: {out.stderr}")
    dumps = sorted(Path(_CALLGRIND_DIR).glob(f"callgrind.out.{pid}.*"), key=lambda f: f.stat().st_mtime)
    text = dumps[-1].read_text(errors="replace")
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if match is None:
        raise SystemExit(f"no total in {dumps[-1]}")
    return int(match.group(1))


_CALLGRIND_DIR = tempfile.gettempdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--kb", type=int, default=2)
    parser.add_argument("--sinks", default=",".join(SINKS), help=f"which of {', '.join(SINKS)}")
    parser.add_argument("--instructions", type=int, default=0, metavar="N",
                        help="instead of wrk: N requests with the proxy under valgrind's callgrind, which counts "
                             "the instructions the proxy ran per user request (repeatable, whatever the load)")
    parser.add_argument("--timer-scale", type=float, default=40.0, metavar="X",
                        help="with --instructions: the sink's timers (pairs held, shipped) and the copies' wait for "
                             "company (limits.mirror_batch_wait) run X times slower, as "
                             "callgrind runs the proxy (measured here: ~400 requests/s against ~16,000 with wrk), so "
                             "that as many pairs share each timer as at full speed; 1: the timers as they are")
    parser.add_argument("--keep-profiles", type=Path, metavar="DIR",
                        help="with --instructions: keep callgrind's dumps in DIR (callgrind_annotate reads them)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, stable, candidate, port, tmp = args.child
        child(name, stable, candidate, int(port), Path(tmp))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from proxy_mirror import serve_orders

    from switchover.demo.runner import Processes, free_port

    global _CALLGRIND_DIR
    sinks = [s for s in args.sinks.split(",") if s]
    if unknown := set(sinks) - set(SINKS):
        parser.error(f"--sinks: unknown {', '.join(sorted(unknown))}")
    cost: dict[str, list[float]] = {s: [] for s in sinks}
    with tempfile.TemporaryDirectory(prefix="sw-sink-cost-") as tmp_name, \
            open(Path(tmp_name) / "processes.log", "ab") as log:
        tmp = Path(tmp_name)
        _CALLGRIND_DIR = tmp_name
        if args.keep_profiles:
            args.keep_profiles.mkdir(parents=True, exist_ok=True)
            _CALLGRIND_DIR = str(args.keep_profiles.resolve())
        procs = Processes(log)  # type: ignore[arg-type]
        try:
            ports = {k: free_port() for k in ("stable", "candidate")}
            stable, candidate = serve_orders(procs, tmp, args.kb, ports)
            for _ in range(args.rounds):
                for name in sinks:
                    cost[name].append(_one(args, name, stable, candidate, tmp))
        finally:
            procs.stop()
    if args.instructions:
        print(f"answers: {args.kb} KB JSON; mirror 20% ('off': 0%); {args.rounds} rounds of {args.instructions} "
              "requests under callgrind; thousands of instructions the proxy ran per user request (medians)")
    else:
        print(f"answers: {args.kb} KB JSON; mirror 20% ('off': 0%); wrk -c16, {args.rounds} rounds of "
              f"{args.seconds}s; proxy CPU per user request (medians)")
    base = statistics.median(cost[sinks[0]])
    for name in sinks:
        m = statistics.median(cost[name])
        unit = "k instr" if args.instructions else "us"
        print(f"{name:9} {m:6.1f} {unit}  (+{m - base:4.1f})   rounds: {', '.join(f'{c:.1f}' for c in cost[name])}")


if __name__ == "__main__":
    main()
