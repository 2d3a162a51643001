"""The two databases a state store can live in: a SQLite file (the embedded default) or PostgreSQL.

Both take the same SQL (``?`` placeholders, ``ON CONFLICT`` upserts) and give cursors with
``fetchone``/``fetchall``. What differs is here: the schema's column types, how a connection is
opened, and how writers that must read-then-write (the journal's next ``seq``, the run lock) are
serialised: ``BEGIN IMMEDIATE`` in SQLite, a transaction-scoped advisory lock in PostgreSQL.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from switchover.errors import UserError
from switchover.sqlite_wal import open_shared

_TABLES = """
CREATE TABLE IF NOT EXISTS events (
  id {serial},
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, at {double} NOT NULL,
  kind TEXT NOT NULL, actor TEXT NOT NULL, payload TEXT NOT NULL,
  UNIQUE (run_id, seq)
);
CREATE TABLE IF NOT EXISTS locks (
  name TEXT PRIMARY KEY, holder TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL,
  acquired_at {double} NOT NULL, heartbeat {double} NOT NULL
);
CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, value TEXT NOT NULL, at {double} NOT NULL, actor TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (key TEXT PRIMARY KEY, value TEXT NOT NULL, at {double} NOT NULL);
"""
SQLITE_SCHEMA = _TABLES.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT", double="REAL")
POSTGRES_SCHEMA = _TABLES.format(serial="BIGSERIAL PRIMARY KEY", double="DOUBLE PRECISION")

# Any constant will do: it only has to be the same for every process writing one store's journal.
_PG_WRITER_LOCK = 0x5357_4F56  # "SWOV"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class StoreDb(Protocol):
    where: str

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any: ...

    def tx(self) -> Any: ...

    def close(self) -> None: ...


def sqlite_path(url: str, base_dir: Path | None = None) -> Path:
    if not url.startswith("sqlite:///"):
        raise UserError(f"state: expected sqlite:///PATH or postgresql://..., got {url!r}")
    path = Path(url[len("sqlite:///"):])
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return path


def open_store_db(url: str, base_dir: Path | None = None) -> StoreDb:
    """The store's database for the plan's ``state:`` URL. UserError naming it when unusable."""
    if url.startswith(("postgresql://", "postgres://", "postgresql+")):
        return PostgresDb(url)
    return SqliteDb(sqlite_path(url, base_dir))


class SqliteDb:
    """A SQLite file in WAL mode, shared by the controller, operator commands and applications."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._db = open_shared(path, SQLITE_SCHEMA, "state store")
        self._lock = threading.RLock()  # one connection, used from the controller's threads too

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        with self._lock:
            return self._db.execute(sql, params)

    @contextmanager
    def tx(self) -> Iterator[SqliteDb]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


class PostgresDb:
    """Tables in one schema of a PostgreSQL database (``?schema=NAME``, default ``switchover``):
    give each plan its own schema when several plans share a database. The password comes from
    the URL (``env:NAME`` allowed) or libpq's usual PGPASSWORD / .pgpass."""

    def __init__(self, url: str) -> None:
        from switchover.data.urls import parse_db_url

        parsed = parse_db_url(url, where="state")
        schema = parsed.query.get("schema", "switchover")
        if not _SCHEMA_NAME.fullmatch(schema):
            raise UserError(f"state: schema {schema!r} in {parsed.safe}: use lower-case letters, digits and _")
        self._url = parsed
        self._schema = schema
        self.where = f"{parsed.safe} (schema {schema})"
        self._lock = threading.RLock()
        self._conn = self._connect()

    def _connect(self) -> Any:
        from switchover.data.urls import connect

        conn = connect(self._url, autocommit=True)
        try:
            # Two processes creating the same tables at once: serialise, as CREATE IF NOT EXISTS can race.
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_WRITER_LOCK,))
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
                conn.execute(f'SET search_path TO "{self._schema}"')
                for statement in filter(str.strip, POSTGRES_SCHEMA.split(";")):
                    conn.execute(statement)
            conn.execute(f'SET search_path TO "{self._schema}"')
        except Exception as exc:
            conn.close()
            raise UserError(f"state store {self.where}: {exc}".strip()) from None
        return conn

    def _live(self) -> Any:
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()  # the server restarted: the journal lives on, reconnect
        return self._conn

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        with self._lock:
            return self._live().execute(sql.replace("?", "%s"), params)

    @contextmanager
    def tx(self) -> Iterator[PostgresDb]:
        with self._lock:
            conn = self._live()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_WRITER_LOCK,))
                yield self

    def close(self) -> None:
        self._conn.close()
