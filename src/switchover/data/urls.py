"""Database URLs: ``postgresql://``, ``mysql://`` (MariaDB too), ``sqlite:///path``.

Parsed as SQLAlchemy's ``make_url`` does (the syntax users know; plain URLs without importing it); passwords come from the URL or from
``env:NAME`` and are redacted in every output (``DbUrl.safe``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from switchover import secrets
from switchover.errors import UserError

ENGINES = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql", "mariadb": "mysql",
           "sqlite": "sqlite"}


@dataclass(frozen=True)
class DbUrl:
    engine: str  # postgresql | mysql | sqlite
    host: str | None
    port: int | None
    user: str | None
    password: str | None
    database: str | None  # for sqlite: the file path
    query: dict[str, str]
    raw: str

    @property
    def safe(self) -> str:
        """The URL for messages: never the password."""
        if self.engine == "sqlite":  # a path, no credentials (urlsplit would also drop a slash)
            return secrets.redact(self.raw)
        return secrets.redact_url(self.raw) if self.password is None else secrets.redact(self.raw)


# A plain server URL (no escapes, no query, no IPv6, no env: password) reads the same with this
# pattern as with SQLAlchemy's make_url (tests/unit/dataverify checks it), without importing
# SQLAlchemy: that import costs about 0.25 s, a noticeable part of a short command such as a row diff.
_PLAIN = re.compile(r"(?P<backend>postgresql|postgres|mysql|mariadb)(?:\+[A-Za-z0-9_]+)?://"
                    r"(?:(?P<username>[A-Za-z0-9_.-]+)(?::(?P<password>[A-Za-z0-9_.-]+))?@)?"
                    r"(?P<host>[A-Za-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?"
                    r"(?:/(?P<database>[A-Za-z0-9_.-]+))?")

Parsed = tuple[str, str | None, int | None, str | None, str | None, str | None, dict[str, str]]


def _parse_plain(url: str) -> Parsed | None:
    """(backend, host, port, username, password, database, query) of a plain URL, else None."""
    m = _PLAIN.fullmatch(url)
    if m is None:
        return None
    port = m["port"]
    return (m["backend"], m["host"], int(port) if port else None, m["username"], m["password"], m["database"], {})


def _parse_sqlalchemy(url: str, label: str) -> Parsed:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(f"{label}not a database URL: {secrets.redact_url(url)} "
                        "(expected postgresql://, mysql:// or sqlite:///path)") from None
    return (parsed.get_backend_name(), parsed.host, parsed.port, parsed.username, parsed.password, parsed.database,
            {k: str(v) for k, v in parsed.query.items()})


def parse_db_url(url: str, password: str | None = None, *, where: str = "") -> DbUrl:
    """Parse a database URL; ``password`` may be ``env:NAME``. UserError on anything unusable."""
    label = f"{where}: " if where else ""
    backend, host, port, username, url_pw, database, query = _parse_plain(url) or _parse_sqlalchemy(url, label)
    engine = ENGINES.get(backend)
    if engine is None:
        raise UserError(f"{label}unsupported database {backend!r} in {secrets.redact_url(url)}; "
                        "use postgresql://, mysql:// or sqlite:///")
    pw = url_pw
    if password is not None:
        pw = secrets.resolve(password, where=where or "password")
    elif isinstance(pw, str) and pw.startswith("env:"):
        pw = secrets.resolve(pw, where=where or "password")
    if pw:
        secrets.remember(str(pw))
    if engine == "sqlite" and not database:
        raise UserError(f"{label}sqlite URL needs a path: sqlite:///path/to/file.db")
    return DbUrl(engine, host, port, username, str(pw) if pw else None, database, query, url)


def connect(url: DbUrl, *, autocommit: bool = False) -> Any:
    """A DB-API connection for ``url`` (psycopg 3, PyMySQL or sqlite3). UserError when unreachable."""
    try:
        if url.engine == "postgresql":
            import psycopg

            return psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.user or "postgres",
                                   password=url.password, dbname=url.database or "postgres",
                                   autocommit=autocommit, connect_timeout=10)
        if url.engine == "mysql":
            import pymysql

            return pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.user or "root",
                                   password=url.password or "", database=url.database, autocommit=autocommit,
                                   connect_timeout=10, charset="utf8mb4", local_infile=True)
        import sqlite3

        conn = sqlite3.connect(url.database or ":memory:", timeout=30,
                               isolation_level=None if autocommit else "DEFERRED", check_same_thread=False)
        return conn
    except Exception as exc:  # each driver has its own error classes
        raise UserError(f"cannot connect to {url.safe}: {secrets.redact(str(exc)).strip()}") from None
