"""What data movement needs to know about a table on each side, and a thin connection wrapper.

Movement works on three engines (PostgreSQL, MySQL/MariaDB, SQLite) with their own quoting,
placeholders and transaction habits; ``Side`` hides those differences behind a few methods so that
backfill, CDC apply and dead-letter replay read the same way for every engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from switchover.data.urls import DbUrl, connect, parse_db_url
from switchover.errors import UserError

# Coordination tables switchover keeps in the target (created on first use, never user data).
POSITION_TABLE = "switchover_cdc_position"
TOUCHED_TABLE = "switchover_cdc_touched"
BACKFILL_TABLE = "switchover_backfill_running"  # tables a backfill is copying now (CDC guards only those)
GUARD_TTL = 1.0  # CDC re-reads BACKFILL_TABLE at most this often; a backfill waits longer before reading
KEY_SEP = "\x1f"  # unit separator between the values of a composite key in TOUCHED_TABLE.k


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the engine's own type name, lower case (e.g. "timestamp with time zone", "bigint")


@dataclass(frozen=True)
class TableInfo:
    engine: str
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class ColumnMap:
    """Source column -> target column; columns not named keep their name."""

    pairs: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def parse(items: Iterable[str]) -> ColumnMap:
        pairs = []
        for item in items:
            src, sep, dst = item.partition(":")
            if not sep or not src or not dst:
                raise UserError(f"--map {item!r}: write src_col:dst_col")
            pairs.append((src, dst))
        return ColumnMap(tuple(pairs))

    def target(self, source_col: str) -> str:
        for src, dst in self.pairs:
            if src == source_col:
                return dst
        return source_col


@dataclass(frozen=True)
class TablePair:
    """A source table and where its rows go: the columns both sides share, in source order."""

    source: TableInfo
    target: TableInfo
    source_columns: tuple[str, ...]
    target_columns: tuple[str, ...]
    source_key: tuple[str, ...]
    target_key: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_target(self, row: dict[str, Any]) -> dict[str, Any]:
        """A source row (by source column) -> values by target column (only the shared columns)."""
        return {t: row[s] for s, t in zip(self.source_columns, self.target_columns, strict=True) if s in row}


def quote(engine: str, name: str) -> str:
    if engine == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


class Side:
    """One database connection used by movement: quoting, placeholders and explicit transactions."""

    def __init__(self, url: DbUrl, *, autocommit: bool = False) -> None:
        self.url = url
        self.engine = url.engine
        # SQLite runs in autocommit mode and we issue BEGIN IMMEDIATE ourselves, so that a writer
        # takes the lock up front instead of failing on upgrade.
        self.conn = connect(url, autocommit=autocommit or self.engine == "sqlite")
        self.ph = "?" if self.engine == "sqlite" else "%s"
        if self.engine == "mysql":
            with self.conn.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")
        elif self.engine == "postgresql":
            self.conn.execute("SET TimeZone = 'UTC'")
            if not autocommit:
                self.conn.commit()
        elif self.engine == "sqlite":
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA busy_timeout=30000")

    @staticmethod
    def open(raw_url: str, *, where: str = "", autocommit: bool = False) -> Side:
        return Side(parse_db_url(raw_url, where=where), autocommit=autocommit)

    def q(self, name: str) -> str:
        return quote(self.engine, name)

    def begin(self) -> None:
        if self.engine == "sqlite":
            self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        with contextlib.suppress(Exception):  # the connection may be gone; nothing more to undo here
            self.conn.rollback()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        try:
            # No params: pass None so that a literal % in the SQL is not read as a placeholder.
            if params:
                cur.execute(sql, tuple(params))
            elif self.engine == "sqlite":
                cur.execute(sql)
            else:
                cur.execute(sql, None)
            if cur.description is None:
                return []
            return [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()

    def execute_count(self, sql: str) -> int:
        """Run a statement without parameters; the driver's affected-row count."""
        cur = self.conn.cursor()
        try:
            if self.engine == "sqlite":
                cur.execute(sql)
            else:
                cur.execute(sql, None)
            return int(cur.rowcount)
        finally:
            cur.close()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        cur = self.conn.cursor()
        try:
            cur.executemany(sql, [tuple(r) for r in rows])
        finally:
            cur.close()

    def table_exists(self, name: str) -> bool:
        if self.engine == "postgresql":
            rows = self.execute("SELECT to_regclass(%s) IS NOT NULL", (self.q(name),))
            return bool(rows[0][0])
        if self.engine == "mysql":
            rows = self.execute("SELECT COUNT(*) FROM information_schema.tables "
                                "WHERE table_schema = DATABASE() AND table_name = %s", (name,))
            return bool(rows[0][0])
        rows = self.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return bool(rows[0][0])

    def finish_read(self) -> None:
        """End the implicit read transaction a SELECT opened (PostgreSQL/MySQL without autocommit)."""
        if self.engine != "sqlite":
            self.conn.commit()


def introspect(side: Side, table: str) -> TableInfo:
    """Columns (in table order) and primary key of ``table``; UserError when missing or keyless."""
    if side.engine == "postgresql":
        cols = side.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (side.q(table),))
        key = side.execute(
            "SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY k.n", (side.q(table),))
    elif side.engine == "mysql":
        cols = side.execute(
            "SELECT column_name, column_type FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position", (table,))
        key = side.execute(
            "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = DATABASE() "
            "AND table_name = %s AND constraint_name = 'PRIMARY' ORDER BY ordinal_position", (table,))
    else:
        info = side.execute(f"PRAGMA table_info({side.q(table)})")
        cols = [(r[1], str(r[2])) for r in info]
        key = [(r[1],) for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    side.finish_read()
    if not cols:
        raise UserError(f"table {table!r} not found in {side.url.safe}")
    if not key:
        raise UserError(f"table {table!r} in {side.url.safe} has no primary key; "
                        "backfill and CDC page and apply by primary key")
    return TableInfo(side.engine, table, tuple(Column(str(n), str(t).lower()) for n, t in cols),
                     tuple(str(k[0]) for k in key))


def pair_tables(src: Side, dst: Side, table: str, target_table: str | None = None,
                mapping: ColumnMap | None = None) -> TablePair:
    """Match the source table's columns to the target's (through ``mapping``); UserError on a key mismatch."""
    s = introspect(src, table)
    t = introspect(dst, target_table or table)
    mapping = mapping or ColumnMap()
    target_names = set(t.names)
    for src_col, _ in mapping.pairs:
        if src_col not in s.names:
            raise UserError(f"--map {src_col}: no column {src_col!r} in source table {table!r}")
    shared = [(c, mapping.target(c)) for c in s.names if mapping.target(c) in target_names]
    target_key = tuple(mapping.target(k) for k in s.key)
    if set(target_key) != set(t.key):
        raise UserError(f"primary keys differ: source {table}({', '.join(s.key)}) maps to "
                        f"({', '.join(target_key)}) but target {t.name} has ({', '.join(t.key)})")
    if not all(k in dict(shared) for k in s.key):
        raise UserError(f"the key of {table} is not among the target's columns")
    return TablePair(s, t, tuple(c for c, _ in shared), tuple(d for _, d in shared), s.key, target_key)


def key_text(values: Sequence[Any]) -> str:
    """The key as stored in TOUCHED_TABLE.k; must equal ``key_text_sql`` of the same row."""
    return KEY_SEP.join("" if v is None else str(v) for v in values)


def key_text_sql(engine: str, alias: str, key: Sequence[str]) -> str:
    parts = [f"{alias}.{quote(engine, k)}" for k in key]
    if engine == "postgresql":
        return "concat_ws(chr(31), " + ", ".join(f"{p}::text" for p in parts) + ")"
    if engine == "mysql":
        return "CONCAT_WS(CHAR(31), " + ", ".join(parts) + ")"
    return " || char(31) || ".join(f"CAST({p} AS TEXT)" for p in parts)


def upsert_sql(side: Side, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """INSERT ... VALUES (one row) that overwrites the row with the same key (idempotent)."""
    cols = ", ".join(side.q(c) for c in columns)
    values = ", ".join([side.ph] * len(columns))
    return f"INSERT INTO {side.q(table)} ({cols}) VALUES ({values}) " + on_conflict(side.engine, columns, key)


def on_conflict(engine: str, columns: Sequence[str], key: Sequence[str]) -> str:
    rest = [c for c in columns if c not in key]
    if engine == "mysql":
        if not rest:
            return f"ON DUPLICATE KEY UPDATE {quote(engine, key[0])} = {quote(engine, key[0])}"
        return "ON DUPLICATE KEY UPDATE " + ", ".join(f"{quote(engine, c)} = VALUES({quote(engine, c)})" for c in rest)
    keys = ", ".join(quote(engine, k) for k in key)
    if not rest:
        return f"ON CONFLICT ({keys}) DO NOTHING"
    return f"ON CONFLICT ({keys}) DO UPDATE SET " + ", ".join(
        f"{quote(engine, c)} = excluded.{quote(engine, c)}" for c in rest)


def ensure_coordination_tables(side: Side) -> None:
    """The CDC position table and the touched-keys table in the target (idempotent)."""
    # MySQL: keep the (tbl, k) primary key under InnoDB's 3072-byte index limit in utf8mb4.
    text = "VARCHAR(255)" if side.engine == "mysql" else "TEXT"
    short_text = "VARCHAR(64)" if side.engine == "mysql" else "TEXT"
    long_text = "VARCHAR(500)" if side.engine == "mysql" else "TEXT"
    real = "DOUBLE" if side.engine == "mysql" else "DOUBLE PRECISION" if side.engine == "postgresql" else "REAL"
    side.begin()
    side.execute(f"CREATE TABLE IF NOT EXISTS {POSITION_TABLE} (stream {text} PRIMARY KEY, position {text} NOT NULL, "
                 f"source_commit_at {real}, applied_at {real} NOT NULL, lag_ms {real})")
    side.execute(f"CREATE TABLE IF NOT EXISTS {TOUCHED_TABLE} (tbl {short_text} NOT NULL, k {long_text} NOT NULL, "
                 "PRIMARY KEY (tbl, k))")
    side.execute(f"CREATE TABLE IF NOT EXISTS {BACKFILL_TABLE} (tbl {short_text} PRIMARY KEY, started_at {real} NOT NULL)")
    side.commit()
