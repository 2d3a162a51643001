"""The state store in PostgreSQL (the plan's ``state: postgresql://...``): the same journal, lock,
flags and checkpoints as the SQLite file, shared by processes on different machines. Real
PostgreSQL; the last test runs a controller against it, kills it and rolls back from the CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchover.engine.state import fold
from switchover.engine.store import StateStore
from switchover.errors import UserError

from .conftest import PLAN, cli, split, start_run, wait_until, weights_moved

PG = "postgresql://postgres@127.0.0.1:5432/test"


def _drop(schema: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_url() -> Iterator[str]:
    # PostgreSQL is required (scripts/test.sh starts it): unreachable fails the test, never skips it.
    schema = f"sw_store_{uuid.uuid4().hex[:10]}"
    yield f"{PG}?schema={schema}"
    _drop(schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'journal.db'}"
    else:
        yield request.getfixturevalue("pg_url")


def test_journal_flags_checkpoints_and_lock_behave_the_same_in_both_stores(store_url: str) -> None:
    os.environ["SW_STORE_TEST_TOKEN"] = "hunter2-very-secret"
    from switchover import secrets

    secrets.resolve("env:SW_STORE_TEST_TOKEN")
    store = StateStore(store_url)
    try:
        first = store.append("run-1", "run_started", "alice@host", {"plan": "p"})
        second = store.append("run-1", "weight_set", "controller", {"weight": 10, "mirror": 0, "step": 0,
                                                                     "reason": "step", "url": "hunter2-very-secret"})
        store.append("run-2", "run_started", "bob@host", {"plan": "p"})
        assert (first.seq, second.seq) == (1, 2)
        assert store.latest_run() == "run-2"
        evs = store.events("run-1")
        assert [e.kind for e in evs] == ["run_started", "weight_set"]
        assert evs[1].payload["url"] != "hunter2-very-secret"  # secrets never reach the journal
        assert fold(evs).weight == 10
        assert store.events("run-1", after_seq=1)[0].seq == 2

        assert store.get_flag("dual_write", "unset") == "unset"
        store.set_flag("dual_write", True, "controller")
        store.set_flag("dual_write", False, "alice@host")
        assert store.get_flag("dual_write") is False
        store.set_checkpoint("backfill:orders", {"last_key": [41], "rows": 41})
        store.set_checkpoint("backfill:orders", {"last_key": [42], "rows": 42})
        assert store.get_checkpoint("backfill:orders") == {"last_key": [42], "rows": 42}

        assert store.acquire_lock("plan", "controller@a") is None
        assert store.acquire_lock("plan", "controller@a") is None  # the holder may take it again
        holder = store.lock_holder("plan")
        assert holder is not None and holder.pid == os.getpid()
        store.release_lock("plan")
        assert store.lock_holder("plan") is None
    finally:
        store.close()


def _append_many(url: str, run_id: str, count: int) -> None:
    store = StateStore(url)
    for i in range(count):
        store.append(run_id, "gate_evaluated", f"writer-{os.getpid()}", {"i": i})
    store.close()


def test_concurrent_writers_get_one_gapless_sequence(pg_url: str) -> None:
    StateStore(pg_url).close()  # tables exist before the writers race
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_append_many, args=(pg_url, "run-c", 40)) for _ in range(3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
        assert w.exitcode == 0
    store = StateStore(pg_url)
    try:
        assert [e.seq for e in store.events("run-c")] == list(range(1, 121))
    finally:
        store.close()


def test_a_live_lock_holder_elsewhere_is_named_and_kept(pg_url: str) -> None:
    import psycopg

    store = StateStore(pg_url)
    try:
        schema = pg_url.split("schema=")[1]
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(f'INSERT INTO "{schema}".locks VALUES (%s, %s, %s, %s, extract(epoch from now()), '
                         'extract(epoch from now()))', ("plan", "controller@other-host", 4242, "other-host"))
        holder = store.acquire_lock("plan", "controller@here")
        assert holder is not None and holder.holder == "controller@other-host" and holder.host == "other-host"
        # A heartbeat older than stale_after is replaced.
        assert store.acquire_lock("plan", "controller@here", stale_after=-1) is None
        taken = store.lock_holder("plan")
        assert taken is not None and taken.holder == "controller@here"
    finally:
        store.close()


def test_bad_store_urls_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="schema"):
        StateStore(f"{PG}?schema=Robert'); DROP")
    with pytest.raises(UserError, match=re.escape("cannot connect to postgresql://postgres:***@127.0.0.1:1/test")):
        StateStore("postgresql://postgres:pa55word-x@127.0.0.1:1/test")
    with pytest.raises(UserError, match="expected sqlite:///PATH or postgresql://"):
        StateStore("redis://127.0.0.1/0")


@pytest.mark.slow
def test_controller_killed_then_cli_rollback_with_the_journal_in_postgresql(  # type: ignore[no-untyped-def]
        make_stack, tmp_path: Path, pg_url: str) -> None:
    template = PLAN.replace('state: "sqlite:///{state}"', 'state: "{pg_state}"')
    s = make_stack(steps="[{canary: {weight: 10, hold: 60s}}]", min_requests=100000, plan_template=template,
                   pg_state=pg_url)
    store = StateStore(pg_url)

    def weight() -> int:
        return fold(store.events()).weight

    try:
        run = start_run(s.plan_path, tmp_path / "run.log")
        wait_until(lambda: weight() == 10, 40, "weight 10 in the PostgreSQL journal")
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
        done = cli("rollback", str(s.plan_path), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["routed"] and split(s) == (0, 0)
        status = json.loads(cli("status", str(s.plan_path), "--json").stdout)
        assert status["weight"] == 0 and status["rollback"]["actor"] != "controller"
        assert not (tmp_path / "journal.db").exists()  # nothing went to a SQLite file
        again = cli("run", str(s.plan_path))
        assert again.returncode == 1 and split(s) == (0, 0)
        assert weights_moved(store.events()) == [10]
    finally:
        store.close()
