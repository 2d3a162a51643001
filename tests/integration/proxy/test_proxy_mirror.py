"""Mirroring: copies go to the candidate, never delay users, are bounded, and reach the parity sink."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from switchover.cli.proxy import build_config
from switchover.traffic.proxy.hooks import MirrorPair
from switchover.traffic.proxy.routing import Split
from switchover.traffic.proxy.runner import start
from tests.integration.proxy.conftest import Upstream, write_plan


def _wait_for(check: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_users_get_answers_while_their_mirrored_copies_are_still_in_flight(stable: Upstream, upstreams,
                                                                             start_proxy) -> None:
    slow_candidate = upstreams("candidate", "--shadow-delay", "2")
    proxy = start_proxy(stable.url, slow_candidate.url, "--weight", "0", "--mirror", "100")
    with httpx.Client() as client:
        answers = [client.get(proxy.url + f"/echo?i={i}") for i in range(5)]
        posted = client.post(proxy.url + "/echo", content=b"x")
    assert [a.json()["upstream"] for a in answers] == ["stable"] * 5
    assert posted.status_code == 200
    stats = proxy.stats()
    # All five users have their answers, and none of the five copies has come back yet.
    assert stats["mirror"]["sent"] == 5 and stats["mirror"]["completed"] == 0
    assert stats["roles"]["shadow"]["requests"] == 0
    _wait_for(lambda: proxy.stats()["roles"]["shadow"]["requests"] == 5)
    _wait_for(lambda: proxy.stats()["mirror"]["in_flight"] == 0)  # a gauge, refreshed every 0.2 s
    stats = proxy.stats()
    assert stats["roles"]["shadow"]["status"] == {"200": 5}
    assert stats["mirror"] == {"sent": 5, "completed": 5, "dropped": 0, "failed": 0, "in_flight": 0,
                               "retried": 0}
    assert stats["roles"]["canary"]["requests"] == 0  # copies never count towards the canary
    assert stats["roles"]["stable"]["requests"] == 6  # the POST was not mirrored (no --mirror-writes)


def test_mirrors_are_bounded_and_dropped_when_full(stable: Upstream, upstreams, start_proxy, tmp_path: Path) -> None:
    slow_candidate = upstreams("candidate", "--shadow-delay", "2")
    plan = write_plan(tmp_path, stable.url, slow_candidate.url, {"limits": {"max_mirrors_in_flight": 2}})
    proxy = start_proxy(None, None, "--plan", str(plan), "--mirror", "100", "--mirror-writes")
    with httpx.Client() as client:
        assert all(client.post(proxy.url + "/echo", content=b"w").status_code == 200 for _ in range(5))
    mirror = proxy.stats()["mirror"]
    assert (mirror["sent"], mirror["dropped"]) == (2, 3)


class _Sink:
    def __init__(self) -> None:
        self.pairs: list[MirrorPair] = []

        self.skipped: list[tuple[str, str]] = []

    def submit(self, pair: MirrorPair) -> None:
        self.pairs.append(pair)

    def skip(self, method: str, path: str, at: float, reason: str) -> None:
        self.skipped.append((path, reason))

    def report(self) -> dict[str, Any]:
        return {"enabled": True, "pairs": len(self.pairs)}

    def close(self) -> None:
        pass


def test_mirrored_pairs_reach_the_parity_sink(stable: Upstream, candidate: Upstream, tmp_path: Path) -> None:
    config, _ = build_config(
        plan_path=None, listen="127.0.0.1:0", admin="127.0.0.1:0", stable=stable.url, candidate=candidate.url,
        app_name="sw_proxy_sink", weight=0, mirror=100, mirror_writes=False, sticky_header=None, sticky_cookie=None,
        state_file=tmp_path / "s.json", admin_token=None, workers=None)
    sink = _Sink()

    async def scenario() -> dict[str, Any]:
        running = await start(config, Split(0, 100), sink)
        base = f"http://127.0.0.1:{running.listen_port}"
        async with httpx.AsyncClient() as client:
            user = await client.get(base + "/echo?x=1", headers={"x-user": "u1"})
            assert user.json()["upstream"] == "stable"
            for _ in range(200):
                if sink.pairs:
                    break
                await asyncio.sleep(0.02)
            report = (await client.get(f"http://127.0.0.1:{running.admin_port}/api/v1/parity")).json()
        await running.stop(5)
        return dict(report)

    report = asyncio.run(scenario())
    assert report == {"enabled": True, "pairs": 1}
    pair = sink.pairs[0]
    assert (pair.method, pair.path) == ("GET", "/echo?x=1")
    assert ("x-user", "u1") in pair.headers
    assert pair.stable.status == pair.candidate.status == 200
    assert b'"upstream": "stable"' in pair.stable.body
    assert b'"upstream": "candidate"' in pair.candidate.body
    assert b'"x-switchover-shadow": "1"' in pair.candidate.body
    assert dict(pair.stable.headers)["x-upstream"] == "stable"


def test_answers_above_the_copy_cap_are_counted_as_skipped_not_buffered(stable: Upstream, candidate: Upstream,
                                                                       tmp_path: Path) -> None:
    config, _ = build_config(
        plan_path=None, listen="127.0.0.1:0", admin="127.0.0.1:0", stable=stable.url, candidate=candidate.url,
        app_name="sw_proxy_sink", weight=0, mirror=100, mirror_writes=False, sticky_header=None, sticky_cookie=None,
        state_file=tmp_path / "s.json", admin_token=None, workers=None)
    sink = _Sink()

    async def scenario() -> None:
        running = await start(config, Split(0, 100), sink)
        base = f"http://127.0.0.1:{running.listen_port}"
        async with httpx.AsyncClient() as client:
            big = await client.get(base + "/big?n=200000")
            assert big.status_code == 200 and len(big.content) == 200_000  # the user gets it all
            await client.get(base + "/echo")
            for _ in range(200):
                if sink.pairs:
                    break
                await asyncio.sleep(0.02)
        await running.stop(5)

    asyncio.run(scenario())
    assert sink.skipped == [("/big?n=200000", "too_large")]
    assert [p.path for p in sink.pairs] == ["/echo"]


def test_mirror_failures_are_counted_and_never_reach_users(stable: Upstream, upstreams, start_proxy) -> None:
    # A candidate that drops every connection's second request: pipelined copies after the first fail.
    flaky = upstreams("candidate", "--close-second")
    proxy = start_proxy(stable.url, flaky.url, "--mirror", "100")
    results: list[int] = []

    def user() -> None:
        with httpx.Client() as client:
            results.extend(client.get(proxy.url + "/echo").status_code for _ in range(25))

    users = [threading.Thread(target=user) for _ in range(4)]
    for t in users:
        t.start()
    for t in users:
        t.join(60)
    assert results == [200] * 100
    _wait_for(lambda: proxy.stats()["mirror"]["completed"] + proxy.stats()["mirror"]["failed"] == 100)
    mirror = proxy.stats()["mirror"]
    assert mirror["sent"] == 100 and mirror["dropped"] == 0
    assert mirror["completed"] + mirror["failed"] == 100
    assert mirror["completed"] > 0
    stats = proxy.stats()
    assert stats["roles"]["shadow"]["requests"] == 100
    assert stats["roles"]["stable"]["errors"] == 0


def test_copies_left_unanswered_when_the_candidate_closes_a_pipeline_are_sent_again(
        stable: Upstream, upstreams, tmp_path: Path) -> None:
    # As nginx's keepalive_requests: every third answer on a connection closes it, and the copies
    # pipelined behind it were never read. They are not the candidate's errors: a parity report must
    # not charge the candidate for them (0.08% of copies at nginx's default of 1000, most of a 0.1% budget).
    limited = upstreams("candidate", "--max-requests", "3")
    config, _ = build_config(
        plan_path=None, listen="127.0.0.1:0", admin="127.0.0.1:0", stable=stable.url, candidate=limited.url,
        app_name="sw_proxy_sink", weight=0, mirror=100, mirror_writes=False, sticky_header=None, sticky_cookie=None,
        state_file=tmp_path / "s.json", admin_token=None, workers=None)
    sink = _Sink()

    async def scenario() -> tuple[list[int], dict[str, Any]]:
        running = await start(config, Split(0, 100), sink)
        base = f"http://127.0.0.1:{running.listen_port}"
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(limits=limits) as client:
            async def user(n: int) -> list[int]:
                return [(await client.get(base + f"/echo?u={n}&i={i}")).status_code for i in range(10)]

            statuses = [s for batch in await asyncio.gather(*(user(n) for n in range(32))) for s in batch]
            for _ in range(500):
                if len(sink.pairs) >= 320:
                    break
                await asyncio.sleep(0.02)
            stats = (await client.get(f"http://127.0.0.1:{running.admin_port}/api/v1/stats")).json()
        await running.stop(5)
        return statuses, stats

    statuses, stats = asyncio.run(scenario())
    assert statuses == [200] * 320
    assert len(sink.pairs) == 320
    assert [p.path for p in sink.pairs if p.candidate.error or p.candidate.status != 200] == []
    assert all(b'"upstream": "candidate"' in p.candidate.body for p in sink.pairs)
    mirror = stats["mirror"]
    assert (mirror["completed"], mirror["failed"]) == (320, 0)
    assert mirror["retried"] > 0  # pipelines were cut, and what they left unanswered went again


async def _until(check: Any) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def _waiting_a_minute(stable: str, candidate_port: int, tmp_path: Path) -> Any:
    """A proxy's config, mirror 100%, whose copies wait up to a minute for company (mirror_batch_wait)."""
    config, _ = build_config(
        plan_path=None, listen="127.0.0.1:0", admin="127.0.0.1:0", stable=stable,
        candidate=f"http://127.0.0.1:{candidate_port}", app_name="sw_proxy_batch", weight=0, mirror=100,
        mirror_writes=False, sticky_header=None, sticky_cookie=None, state_file=tmp_path / "s.json",
        admin_token=None, workers=None)
    return dataclasses.replace(config, limits=config.limits.model_copy(update={"mirror_batch_wait": 60.0}))


def test_copies_wait_for_company_and_leave_together_on_one_connection(stable: Upstream, tmp_path: Path) -> None:
    # limits.mirror_batch_wait: a copy waits up to that long for others, and they leave in one write,
    # pipelined on one connection (fewer writes and reads for the proxy); the 16th of a batch sends
    # them all at once, and copies still waiting when the proxy drains leave then. The wait here is a
    # minute, far longer than the test: whatever reached the candidate went for one of those reasons.
    reads: list[bytes] = []  # what the candidate read, read by read
    connections = 0

    class Candidate(asyncio.Protocol):  # reads recorded as they come (a reset loses none)
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            nonlocal connections
            connections += 1
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            reads.append(data)
            answers = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" * data.count(b"\r\n\r\n")
            self.transport.write(answers)  # type: ignore[attr-defined]

    def copies() -> int:
        return sum(r.count(b"x-switchover-shadow: 1") for r in reads)

    async def scenario() -> tuple[list[int], list[int], int]:
        server = await asyncio.get_running_loop().create_server(Candidate, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        running = await start(_waiting_a_minute(stable.url, port, tmp_path), Split(0, 100), None)
        base = f"http://127.0.0.1:{running.listen_port}"
        async with httpx.AsyncClient() as client:
            waiting = [(await client.get(base + f"/echo?i={i}")).status_code for i in range(15)]
            assert copies() == 0  # 15 users answered, their copies still waiting for company
            waiting.append((await client.get(base + "/echo?i=15")).status_code)
            await _until(lambda: copies() == 16)
            first_read = reads[0].count(b"x-switchover-shadow: 1")
            late = [(await client.get(base + "/echo?i=16")).status_code]
            assert copies() == 16
        await running.stop(5)  # draining: the 17th leaves without waiting out its minute
        await _until(lambda: copies() == 17)
        server.close()
        return waiting, late, first_read

    waiting, late, first_read = asyncio.run(scenario())
    assert waiting + late == [200] * 17
    assert first_read == 16  # the 16 copies came in the candidate's first read: one write
    assert connections <= 2  # the batch on one connection, the last copy on it or on a new one


def test_copies_to_a_slow_candidate_leave_at_once_each_on_its_own_connection(stable: Upstream, tmp_path: Path) -> None:
    # A server answers pipelined requests one after the other: once the candidate is seen to take
    # longer than 10 ms, copies no longer wait for company (the wait here is a minute) and each goes
    # on a connection of its own, so that the candidate works on them side by side.
    working: set[int] = set()  # connections with a request the candidate is working on
    most_at_once = 0
    answered = 0

    class SlowCandidate(asyncio.Protocol):  # answers each request 0.3 s after it came
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            nonlocal most_at_once
            working.add(id(self))
            most_at_once = max(most_at_once, len(working))
            for _ in range(data.count(b"\r\n\r\n")):
                asyncio.get_running_loop().call_later(0.3, self.answer)

        def answer(self) -> None:
            nonlocal answered
            answered += 1
            working.discard(id(self))
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")  # type: ignore[attr-defined]

    async def scenario() -> list[int]:
        server = await asyncio.get_running_loop().create_server(SlowCandidate, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        running = await start(_waiting_a_minute(stable.url, port, tmp_path), Split(0, 100), None)
        base = f"http://127.0.0.1:{running.listen_port}"
        async with httpx.AsyncClient() as client:
            statuses = [(await client.get(base + "/echo?i=0")).status_code]
            running.proxy.mirror.flush()  # the first copy: sent, answered in 0.3 s
            await _until(lambda: answered == 1)
            statuses += [(await client.get(base + f"/echo?i={i}")).status_code for i in range(1, 9)]
            await _until(lambda: answered == 9)  # without waiting out the minute
        await running.stop(5)
        server.close()
        return statuses

    assert asyncio.run(scenario()) == [200] * 9
    assert most_at_once > 1  # the candidate worked on several copies at once


def test_a_copy_still_connecting_when_the_proxy_stops_is_skipped_not_failed(stable: Upstream, tmp_path: Path) -> None:
    # A candidate that takes no new connection (its accept queue is full): the copy is still waiting
    # for its connection when the proxy stops. It is given up and counted as skipped ("stopped"),
    # never as the candidate's error.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port))  # the one connection the queue holds
    config = _waiting_a_minute(stable.url, port, tmp_path)
    config = dataclasses.replace(config, limits=config.limits.model_copy(update={"connect_timeout": 60.0}))
    sink = _Sink()

    async def scenario() -> int:
        running = await start(config, Split(0, 100), sink)
        async with httpx.AsyncClient() as client:
            status = (await client.get(f"http://127.0.0.1:{running.listen_port}/echo")).status_code
        running.proxy.mirror.flush()  # the copy leaves: a connection is being opened for it
        await asyncio.sleep(0.1)
        assert running.proxy.mirror.pool.in_flight == 1
        await running.stop(5)
        return status

    try:
        assert asyncio.run(scenario()) == 200
    finally:
        queued.close()
        full.close()
    assert sink.pairs == []
    assert sink.skipped == [("/echo", "stopped")]
