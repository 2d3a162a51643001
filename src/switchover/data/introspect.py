"""Table introspection: columns (name, kind, scale, precision, nullability), primary key, row estimate.

``describe_table(conn, engine, name) -> TableInfo``; ``name`` may be ``schema.table`` (PostgreSQL
schema, MySQL database). UserError when the table does not exist.
"""

from __future__ import annotations

import re
from typing import Any

from switchover.data.types import Column, ColumnType, Kind, TableInfo
from switchover.errors import UserError

_PG_KINDS = {
    "smallint": Kind.INT, "integer": Kind.INT, "bigint": Kind.INT,
    "numeric": Kind.DECIMAL, "real": Kind.FLOAT, "double precision": Kind.FLOAT,
    "boolean": Kind.BOOL, "date": Kind.DATE, "uuid": Kind.UUID, "bytea": Kind.BYTES,
    "text": Kind.TEXT, "character varying": Kind.TEXT, "character": Kind.TEXT, "citext": Kind.TEXT,
    "timestamp without time zone": Kind.TIMESTAMP, "timestamp with time zone": Kind.TIMESTAMP,
    "time without time zone": Kind.TIME,
}

_MY_KINDS = {
    "tinyint": Kind.INT, "smallint": Kind.INT, "mediumint": Kind.INT, "int": Kind.INT, "bigint": Kind.INT,
    "decimal": Kind.DECIMAL, "float": Kind.FLOAT, "double": Kind.FLOAT, "date": Kind.DATE,
    "datetime": Kind.TIMESTAMP, "timestamp": Kind.TIMESTAMP, "time": Kind.TIME, "uuid": Kind.UUID,
    "char": Kind.TEXT, "varchar": Kind.TEXT, "tinytext": Kind.TEXT, "text": Kind.TEXT,
    "mediumtext": Kind.TEXT, "longtext": Kind.TEXT, "enum": Kind.TEXT, "set": Kind.TEXT,
    "binary": Kind.BYTES, "varbinary": Kind.BYTES, "tinyblob": Kind.BYTES, "blob": Kind.BYTES,
    "mediumblob": Kind.BYTES, "longblob": Kind.BYTES,
}


def describe_table(conn: Any, engine: str, name: str) -> TableInfo:
    if engine == "postgresql":
        return _describe_pg(conn, name)
    if engine == "mysql":
        return _describe_my(conn, name)
    return _describe_sqlite(conn, name)


def _split(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    return (schema or None), table


def _describe_pg(conn: Any, name: str) -> TableInfo:
    schema, table = _split(name)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.column_name, c.data_type, c.numeric_scale, c.datetime_precision, c.is_nullable, c.udt_name,"
            " c.table_schema FROM information_schema.columns c"
            " WHERE c.table_name = %s AND c.table_schema = coalesce(%s, current_schema())"
            " ORDER BY c.ordinal_position", (table, schema))
        rows = cur.fetchall()
        if not rows:
            raise UserError(f"table {name} not found")
        schema_name = rows[0][6]
        cur.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = t.relnamespace"
            " JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true"
            " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum"
            " WHERE i.indisprimary AND t.relname = %s AND n.nspname = %s ORDER BY k.ord", (table, schema_name))
        pk = tuple(r[0] for r in cur.fetchall())
        cur.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE c.relname = %s AND n.nspname = %s", (table, schema_name))
        est = cur.fetchone()
    conn.commit()
    columns = []
    for col, data_type, scale, dt_prec, nullable, udt, _schema in rows:
        kind = _PG_KINDS.get(data_type, Kind.OTHER)
        native = udt if kind is Kind.OTHER else data_type
        if kind is Kind.DECIMAL and scale is None:
            kind = Kind.FLOAT  # numeric without a declared scale: compared like a float
        columns.append(Column(col, ColumnType(kind, native, scale=scale, precision=dt_prec,
                                              tz=data_type == "timestamp with time zone"),
                              nullable == "YES"))
    return TableInfo(name, tuple(columns), pk, int(est[0]) if est else 0)


def _describe_my(conn: Any, name: str) -> TableInfo:
    schema, table = _split(name)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT column_name, data_type, column_type, numeric_scale, datetime_precision, is_nullable,"
            " character_set_name, column_key FROM information_schema.columns"
            " WHERE table_name = %s AND table_schema = coalesce(%s, database()) ORDER BY ordinal_position",
            (table, schema))
        rows = cur.fetchall()
        if not rows:
            raise UserError(f"table {name} not found")
        cur.execute(
            "SELECT column_name FROM information_schema.key_column_usage WHERE constraint_name = 'PRIMARY'"
            " AND table_name = %s AND table_schema = coalesce(%s, database()) ORDER BY ordinal_position",
            (table, schema))
        pk = tuple(r[0] for r in cur.fetchall())
        cur.execute("SELECT table_rows FROM information_schema.tables WHERE table_name = %s"
                    " AND table_schema = coalesce(%s, database())", (table, schema))
        est = cur.fetchone()
    columns = []
    for col, data_type, column_type, scale, dt_prec, nullable, charset, _key in rows:
        data_type = str(data_type).lower()
        column_type = str(column_type).lower()
        kind = _MY_KINDS.get(data_type, Kind.OTHER)
        if column_type.startswith("tinyint(1)"):
            kind = Kind.BOOL
        if data_type in ("char", "binary") and column_type in ("char(36)", "binary(16)"):
            kind = Kind.UUID if data_type == "char" else Kind.BYTES
        utf8 = charset is None or str(charset).lower().startswith("utf8")
        columns.append(Column(col, ColumnType(kind, column_type, scale=scale, precision=dt_prec,
                                              tz=data_type == "timestamp", unsigned="unsigned" in column_type,
                                              utf8=utf8),
                              nullable == "YES"))
    return TableInfo(name, tuple(columns), pk, int(est[0] or 0) if est else 0)


_SQLITE_DECIMAL = re.compile(r"(?:decimal|numeric)\s*\(\s*\d+\s*,\s*(\d+)\s*\)")


def _sqlite_type(declared: str) -> ColumnType:
    t = declared.lower()
    if "int" in t:
        return ColumnType(Kind.INT, declared)
    if t.startswith("bool"):
        return ColumnType(Kind.BOOL, declared)
    m = _SQLITE_DECIMAL.search(t)
    if m:
        return ColumnType(Kind.DECIMAL, declared, scale=int(m.group(1)))
    if any(w in t for w in ("real", "floa", "doub", "numeric", "decimal")):
        return ColumnType(Kind.FLOAT, declared)
    if "timestamp" in t or "datetime" in t:
        return ColumnType(Kind.TIMESTAMP, declared, precision=6)
    if t == "date":
        return ColumnType(Kind.DATE, declared)
    if t.startswith("time"):
        return ColumnType(Kind.TIME, declared, precision=6)
    if t == "uuid":
        return ColumnType(Kind.UUID, declared)
    if "blob" in t or t == "":
        return ColumnType(Kind.BYTES if t else Kind.OTHER, declared)
    return ColumnType(Kind.TEXT, declared)


def _describe_sqlite(conn: Any, name: str) -> TableInfo:
    rows = conn.execute(f"PRAGMA table_info({_sqlite_quote(name)})").fetchall()
    if not rows:
        raise UserError(f"table {name} not found")
    columns = tuple(Column(r[1], _sqlite_type(r[2] or ""), not r[3] and not r[5]) for r in rows)
    pk = tuple(r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5]))
    est = conn.execute(f"SELECT count(*) FROM {_sqlite_quote(name)}").fetchone()[0]
    return TableInfo(name, columns, pk, int(est))


def _sqlite_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
