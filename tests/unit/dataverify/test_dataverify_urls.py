"""Plain server URLs are parsed without SQLAlchemy: the result must be the one make_url gives."""

from __future__ import annotations

import pytest

from switchover.data.urls import _parse_plain, _parse_sqlalchemy, parse_db_url

PLAIN = [
    "postgresql://postgres@127.0.0.1:5432/sw_dataverify",
    "postgresql+psycopg://app:s3cret@db.example.com/orders",
    "postgres://u@h",
    "postgresql://h:5433",
    "mysql://root@127.0.0.1:3306/sw_dataverify",
    "mysql+pymysql://root:pw@localhost/db-1",
    "mariadb://user.name:p-w_1@my-host.local:3307/db.x",
]
NOT_PLAIN = [
    "postgresql://u:p%40ss@h/db",  # escapes
    "postgresql://u@h/db?sslmode=require",  # query
    "postgresql://u:env:PGPASS@h/db",  # env: password
    "postgresql://u@[::1]:5432/db",  # IPv6
    "postgresql://u:@h/db",  # empty password
    "postgresql://h/",  # empty database
    "sqlite:///tmp/x.db",
    "oracle://u@h/db",
]


@pytest.mark.parametrize("url", PLAIN)
def test_plain_urls_read_as_make_url_reads_them(url: str) -> None:
    assert _parse_plain(url) == _parse_sqlalchemy(url, "")


@pytest.mark.parametrize("url", NOT_PLAIN)
def test_other_urls_go_to_make_url(url: str) -> None:
    assert _parse_plain(url) is None


def test_parse_db_url_result() -> None:
    u = parse_db_url("mysql://root@127.0.0.1:3306/sw_dataverify")
    assert (u.engine, u.host, u.port, u.user, u.password, u.database, u.query) == (
        "mysql", "127.0.0.1", 3306, "root", None, "sw_dataverify", {})
    q = parse_db_url("postgresql://u:p%40ss@h/db?sslmode=require")
    assert (q.engine, q.password, q.database, q.query) == ("postgresql", "p@ss", "db", {"sslmode": "require"})
