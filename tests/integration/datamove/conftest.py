"""Real PostgreSQL and MariaDB for the data-movement tests, in databases of our own (sw_datamove_*)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from switchover.data.move_tables import Side

PG = "postgresql://postgres@127.0.0.1:5432/"
MY = "mysql://root@127.0.0.1:3306/"


def _pg_db(name: str) -> str:
    admin = Side.open(PG + "postgres", autocommit=True)
    try:
        # Leftover slots from an interrupted run would hold the database open and its WAL.
        for (slot,) in admin.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)):
            admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    return PG + name


def _drop_pg_db(name: str) -> None:
    admin = Side.open(PG + "postgres", autocommit=True)
    try:
        for (slot,) in admin.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)):
            admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture
def pg_pair(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Two fresh PostgreSQL databases (source, target) for one test."""
    base = "sw_datamove_" + request.node.name.lower().replace("[", "_").replace("]", "")[:30]
    names = (base + "_s", base + "_t")
    urls = tuple(_pg_db(n) for n in names)
    yield urls[0], urls[1]
    for n in names:
        _drop_pg_db(n)


@pytest.fixture
def my_db(request: pytest.FixtureRequest) -> Iterator[str]:
    name = "sw_datamove_" + request.node.name.lower()[:40]
    admin = Side.open(MY + "mysql", autocommit=True)
    admin.execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.execute(f"CREATE DATABASE `{name}`")
    yield MY + name
    admin.execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.close()


@pytest.fixture(autouse=True)
def _drop_apply_origins() -> Iterator[None]:
    """Replication origins of our appliers (sw_apply_*) left by a killed stream: each takes a state slot."""
    yield
    admin = Side.open(PG + "postgres", autocommit=True)
    try:
        for (name,) in admin.execute("SELECT roname FROM pg_replication_origin WHERE roname LIKE 'sw\\_apply\\_%' "
                                     "AND roident NOT IN (SELECT local_id FROM pg_replication_origin_status "
                                     "WHERE local_lsn IS NULL)"):
            with contextlib.suppress(Exception):  # still in use by a live session of this test run
                admin.execute("SELECT pg_replication_origin_drop(%s)", (name,))
    finally:
        admin.close()
