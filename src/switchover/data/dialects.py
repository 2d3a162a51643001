"""The SQL each engine needs to verify data: quoting, canonical value expressions, row hashes.

One class per engine behind one small interface (``Dialect``), picked by ``dialect_for(engine)``:

- ``quote(name)`` / ``table(name)``: identifiers (``schema.table`` allowed);
- ``canon(col, native, canon)``: the column's canonical text (``canonical.py`` rules), NULL stays NULL;
- ``encoded(expr, kind)``: that text made self-delimiting, NULL as its own token;
- ``hash60(text)``: the first 60 bits of the MD5 of a text, as an unsigned integer;
- ``agg60(expr, xor)``: a bucket's checksum of those (``bit_xor``, or ``sum`` where bit_xor is missing);
- ``agg_md5(text, order)``: a bucket's checksum as one MD5 of its rows' texts concatenated in key order;
- ``hash_bucket(text, n)``: a bucket in ``[0, n)`` from the MD5 of the key's text;
- ``table_bytes(conn, name)``: the table's size from the statistics, to size buckets of wide rows;
- ``begin_snapshot(conn)``: a read-only, repeatable-read transaction so every pass sees one state.

MD5 is computed by the database itself (PostgreSQL ``md5``, MySQL ``MD5``); SQLite has none, so
``prepare(conn)`` registers Python functions with the same results.
"""

from __future__ import annotations

import decimal
import hashlib
from typing import Any, ClassVar

from switchover.data.canonical import DELIMITED, NULL_TOKEN, Canon
from switchover.data.types import ColumnType, Kind

MOD60 = 1 << 60
GROUP_CONCAT_MAX = 4294967295  # MySQL's and MariaDB's largest group_concat_max_len on every platform


class Dialect:
    engine: ClassVar[str] = ""
    placeholder: ClassVar[str] = "%s"
    quote_char: ClassVar[str] = '"'

    def quote(self, name: str) -> str:
        q = self.quote_char
        return q + name.replace(q, q + q) + q

    def table(self, name: str) -> str:
        return ".".join(self.quote(part) for part in name.split("."))

    def concat(self, parts: list[str]) -> str:
        return "(" + " || ".join(parts) + ")" if len(parts) > 1 else parts[0]

    def length(self, expr: str) -> str:
        return f"length({expr})"

    def encoded(self, expr: str, kind: Kind, nullable: bool = True) -> str:
        return self.concat(self.pieces(expr, kind, nullable))

    def pieces(self, expr: str, kind: Kind, nullable: bool = True) -> list[str]:
        """The parts of one value's token in the hashed row text (``canonical.encode_value``), to be
        concatenated with the other columns' parts in one flat concatenation (cheaper per row)."""
        if kind in DELIMITED:  # a delimited value never reads "N": NULL can be replaced before the comma
            return [f"coalesce({expr}, '{NULL_TOKEN}')" if nullable else expr, "','"]
        if not nullable:
            return [self.as_text(self.length(expr)), "':'", expr]
        joined = self.concat([self.as_text(self.length(expr)), "':'", expr])
        return [f"coalesce({joined}, '{NULL_TOKEN}')"]

    def as_text(self, expr: str) -> str:
        return f"CAST({expr} AS TEXT)"

    def canon(self, col: str, native: ColumnType, canon: Canon) -> str:
        raise NotImplementedError

    def hash60(self, text: str) -> str:
        raise NotImplementedError

    def hash_bucket(self, text: str, buckets: int) -> str:
        raise NotImplementedError

    # bit_xor of the row hashes (cheaper than a decimal sum; keys are unique within a table, so
    # no row can cancel itself out). PostgreSQL before 14 has no bit_xor: both sides then use sum.
    xor: bool = True

    def agg60(self, expr: str, xor: bool) -> str:
        return f"bit_xor({expr})" if xor else f"sum({expr})"

    # One MD5 per bucket of its row texts in key order, instead of one per row: PostgreSQL's md5()
    # costs about 0.7 us a call (a digest context per call) and the hex-to-integer conversions more;
    # the per-bucket sort costs less (docs/performance-rowdiff.md). Row texts are self-delimiting,
    # so equal concatenations mean equal rows. Only for keys that order alike on every engine (integers).
    def agg_md5(self, text: str, order: str) -> str:
        return f"md5(string_agg({text}, '' ORDER BY {order}))"

    def table_bytes(self, conn: Any, name: str) -> int | None:
        """The table's size on disk (statistics, no scan), None when unknown."""
        return None

    def prepare(self, conn: Any) -> None:
        """Session settings for comparable output (UTC)."""

    def begin_snapshot(self, conn: Any) -> None:
        raise NotImplementedError

    def params(self, count: int) -> str:
        return ", ".join([self.placeholder] * count)


def _balanced(expr: str) -> bool:
    """True when ``expr`` is one expression (its parentheses pair up), so CAST(expr AS CHAR) unwraps."""
    depth = 0
    for ch in expr:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return False
    return depth == 0


def _frac(canon: Canon) -> int:
    return 19 if canon.digits == 0 else 20 + canon.digits


_PG_BINARY_FLOATS = frozenset({"double precision", "real"})


class Postgres(Dialect):
    engine = "postgresql"

    def canon(self, col: str, native: ColumnType, canon: Canon) -> str:
        k = canon.kind
        if k is Kind.INT:
            return f"({col}::int)::text" if native.kind is Kind.BOOL else f"{col}::text"
        if k is Kind.DECIMAL and native.kind is Kind.DECIMAL and native.scale == canon.digits:
            return f"{col}::text"  # already printed with that scale
        if k in (Kind.DECIMAL, Kind.FLOAT):
            if native.native in _PG_BINARY_FLOATS:
                # through the shortest exact text, as MySQL and Python read a double: float8::numeric
                # keeps only 15 significant digits (1234567890.1234565 would round to ...123460, not
                # ...123457), and it is also the slower conversion (0.45 s against 0.29 s per 1M rows)
                num = f"{col}::float8::text::numeric"
            else:
                num = f"({col}::int)::numeric" if native.kind is Kind.BOOL else f"{col}::numeric"
            return f"round({num}, {canon.digits})::text"
        if k in (Kind.TIMESTAMP, Kind.DATE):
            value = f"({col} AT TIME ZONE 'UTC')" if native.tz else col
            if k is Kind.DATE:
                return f"to_char({value}, 'YYYY-MM-DD')"
            # whole seconds and microseconds need no left() (a multibyte-aware cut, a quarter of the
            # timestamp's cost per row): for years 1 to 9999 the formats give exactly those lengths
            if canon.digits == 0:
                return f"to_char({value}, 'YYYY-MM-DD HH24:MI:SS')"
            if canon.digits == 6:
                return f"to_char({value}, 'YYYY-MM-DD HH24:MI:SS.US')"
            return f"left(to_char({value}, 'YYYY-MM-DD HH24:MI:SS.US'), {_frac(canon)})"
        if k is Kind.TIME:
            return f"left(to_char({col}::interval, 'HH24:MI:SS.US'), {_frac(canon) - 11})"
        if k is Kind.UUID:
            return f"{col}::text" if native.kind is Kind.UUID else f"lower({col})"
        if k is Kind.BYTES:
            return f"encode({col}, 'hex')"
        return f"{col}::text"

    # An explicit cast to bit(n) keeps the first n bits (no substr() of the hex digits, which is a
    # multibyte-aware cut): the first 15 (or 8) hex digits of the MD5, as in the other engines.
    def hash60(self, text: str) -> str:
        return f"('x' || md5({text}))::bit(60)::bigint"

    def hash_bucket(self, text: str, buckets: int) -> str:
        return f"(('x' || md5({text}))::bit(32)::bigint % {buckets})"

    def table_bytes(self, conn: Any, name: str) -> int | None:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_total_relation_size(to_regclass(%s))", (self.table(name),))
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def prepare(self, conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute("SET extra_float_digits = 1")  # a double's text is its shortest exact form
            # a bucket pass sorts a key range's rows (ORDER BY inside string_agg): in memory, not on disk
            cur.execute("SELECT set_config('work_mem', '64MB', false)"
                        " WHERE pg_size_bytes(current_setting('work_mem')) < 64 * 1024 * 1024")
        conn.commit()
        self.xor = conn.info.server_version >= 140000

    def begin_snapshot(self, conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")


class MySQL(Dialect):
    engine = "mysql"
    quote_char = "`"

    def concat(self, parts: list[str]) -> str:
        return f"CONCAT({', '.join(parts)})" if len(parts) > 1 else parts[0]

    def length(self, expr: str) -> str:
        return f"CHAR_LENGTH({expr})"

    def as_text(self, expr: str) -> str:
        return expr  # CONCAT converts numbers itself

    def pieces(self, expr: str, kind: Kind, nullable: bool = True) -> list[str]:
        # Inside CONCAT a CAST(x AS CHAR) is implied: dropping it saves work on every row (the
        # standalone canonical value, fetched for comparison, keeps it so that it is text).
        if expr.startswith("CAST(") and expr.endswith(" AS CHAR)") and _balanced(expr[5:-9]):
            expr = expr[5:-9]
        return super().pieces(expr, kind, nullable)

    def canon(self, col: str, native: ColumnType, canon: Canon) -> str:
        k = canon.kind
        if k is Kind.INT:
            return f"CAST({col} AS CHAR)"
        if k is Kind.DECIMAL and native.kind is Kind.DECIMAL and native.scale == canon.digits:
            return f"CAST({col} AS CHAR)"  # already printed with that scale
        if k in (Kind.DECIMAL, Kind.FLOAT):
            return f"CAST(CAST({col} AS DECIMAL(65, {min(canon.digits, 30)})) AS CHAR)"
        if k is Kind.DATE:
            return f"DATE_FORMAT({col}, '%Y-%m-%d')"
        if k is Kind.TIMESTAMP and native.kind is Kind.TIMESTAMP:
            # a DATETIME(p) prints as 'YYYY-MM-DD HH:MM:SS' plus p digits: cut to the compared precision
            text = f"CAST({col} AS CHAR)"
            return text if (native.precision or 0) == canon.digits else f"LEFT({text}, {_frac(canon)})"
        if k is Kind.TIMESTAMP:
            return f"LEFT(DATE_FORMAT({col}, '%Y-%m-%d %H:%i:%s.%f'), {_frac(canon)})"
        if k is Kind.TIME:
            return f"LEFT(TIME_FORMAT({col}, '%H:%i:%s.%f'), {_frac(canon) - 11})"
        if k is Kind.UUID:
            return f"LOWER(CAST({col} AS CHAR))"
        if k is Kind.BYTES:
            return f"LOWER(HEX({col}))"
        if k is Kind.TEXT and not native.utf8:
            return f"CONVERT({col} USING utf8mb4)"
        if k is Kind.TEXT:
            return col
        return f"CAST({col} AS CHAR)"

    def hash60(self, text: str) -> str:
        return f"CAST(CONV(LEFT(MD5({text}), 15), 16, 10) AS UNSIGNED)"

    def hash_bucket(self, text: str, buckets: int) -> str:
        return f"(CAST(CONV(LEFT(MD5({text}), 8), 16, 10) AS UNSIGNED) % {buckets})"

    def agg_md5(self, text: str, order: str) -> str:
        return f"MD5(GROUP_CONCAT({text} ORDER BY {order} SEPARATOR ''))"

    def table_bytes(self, conn: Any, name: str) -> int | None:
        schema, _, table = name.rpartition(".")
        with conn.cursor() as cur:
            cur.execute("SELECT data_length FROM information_schema.tables WHERE table_name = %s"
                        " AND table_schema = coalesce(%s, database())", (table, schema or None))
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def prepare(self, conn: Any) -> None:
        with conn.cursor() as cur:
            # MySQL TIMESTAMP columns are shown in the session's zone: UTC makes them comparable.
            cur.execute("SET time_zone = '+00:00'")
            # GROUP_CONCAT cuts its result at this length (1 MiB by default) with only a warning:
            # a bucket's text must never be cut (rowdiff also checks the warning count)
            cur.execute(f"SET SESSION group_concat_max_len = {GROUP_CONCAT_MAX}")

    def begin_snapshot(self, conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")


def _md5_prefix(text: str | None, hexdigits: int) -> int | None:
    if text is None:
        return None
    return int(hashlib.md5(text.encode("utf-8")).hexdigest()[:hexdigits], 16)


def _round_half_up(value: Any, digits: int) -> str | None:
    """A number at ``digits`` decimals, half away from zero, from its shortest exact text (as
    PostgreSQL's ``round(x::text::numeric, d)`` and MySQL's ``CAST(x AS DECIMAL(65, d))`` give)."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        number = decimal.Decimal(repr(value))
    else:
        try:
            number = decimal.Decimal(str(value).strip())
        except decimal.InvalidOperation:
            return str(value)
        if not number.is_finite():
            return str(value)
    rounded = number.quantize(decimal.Decimal(1).scaleb(-digits), rounding=decimal.ROUND_HALF_UP,
                              context=decimal.Context(prec=1000))
    return str(abs(rounded) if rounded.is_zero() else rounded)  # no '-0.00', as the servers print


class _Sum60:
    """SQLite's sum() stops on 64-bit overflow: sum modulo 2**60 instead (compared modulo 2**60)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, value: int | None) -> None:
        if value is not None:
            self.total = (self.total + value) % MOD60

    def finalize(self) -> int:
        return self.total


class _OrderedMd5:
    """MD5 of the texts concatenated in key order, as ``md5(string_agg(text, '' ORDER BY key))``."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, str]] = []

    def step(self, key: Any, text: str | None) -> None:
        if text is not None:
            self.rows.append((key, text))

    def finalize(self) -> str | None:
        if not self.rows:
            return None
        # SQLite's own order of mixed storage classes: numbers, then text, then blobs
        self.rows.sort(key=lambda r: (0 if isinstance(r[0], int | float) else 1 if isinstance(r[0], str) else 2, r[0]))
        return hashlib.md5("".join(t for _, t in self.rows).encode("utf-8")).hexdigest()


class _Xor60:
    def __init__(self) -> None:
        self.total = 0

    def step(self, value: int | None) -> None:
        if value is not None:
            self.total ^= value

    def finalize(self) -> int:
        return self.total


class SQLite(Dialect):
    engine = "sqlite"
    placeholder = "?"

    def canon(self, col: str, native: ColumnType, canon: Canon) -> str:
        k = canon.kind
        if k is Kind.INT:
            return f"CAST(CAST({col} AS INTEGER) AS TEXT)"
        if k is Kind.FLOAT:  # printf keeps 16 significant digits: round the shortest exact text instead
            return f"sw_round({col}, {canon.digits})"
        if k is Kind.DECIMAL:  # printf and hex turn NULL into text: keep NULL
            return f"CASE WHEN {col} IS NULL THEN NULL ELSE printf('%.{canon.digits}f', {col}) END"
        if k is Kind.DATE:
            return f"substr({col}, 1, 10)"
        if k in (Kind.TIMESTAMP, Kind.TIME):
            whole = 19 if k is Kind.TIMESTAMP else 8
            base = f"substr(replace({col}, 'T', ' '), 1, {whole})"
            if canon.digits == 0:
                return base
            frac = f"substr(substr({col}, {whole + 2}) || '000000', 1, {canon.digits})"
            return f"CASE WHEN {col} IS NULL THEN NULL ELSE {base} || '.' || {frac} END"
        if k is Kind.UUID:
            return f"lower({col})"
        if k is Kind.BYTES:
            return f"CASE WHEN {col} IS NULL THEN NULL ELSE lower(hex({col})) END"
        return f"CAST({col} AS TEXT)"

    def hash60(self, text: str) -> str:
        return f"sw_md5_60({text})"

    def hash_bucket(self, text: str, buckets: int) -> str:
        return f"(sw_md5_32({text}) % {buckets})"

    def agg60(self, expr: str, xor: bool) -> str:
        return f"sw_xor60({expr})" if xor else f"sw_sum60({expr})"

    def agg_md5(self, text: str, order: str) -> str:
        return f"sw_md5_ordered({order}, {text})"

    def prepare(self, conn: Any) -> None:
        conn.create_function("sw_md5_60", 1, lambda t: _md5_prefix(t, 15), deterministic=True)
        conn.create_function("sw_md5_32", 1, lambda t: _md5_prefix(t, 8), deterministic=True)
        conn.create_function("sw_round", 2, _round_half_up, deterministic=True)
        conn.create_aggregate("sw_sum60", 1, _Sum60)
        conn.create_aggregate("sw_xor60", 1, _Xor60)
        conn.create_aggregate("sw_md5_ordered", 2, _OrderedMd5)

    def begin_snapshot(self, conn: Any) -> None:
        conn.execute("BEGIN")


DIALECTS: dict[str, type[Dialect]] = {"postgresql": Postgres, "mysql": MySQL, "sqlite": SQLite}


def dialect_for(engine: str) -> Dialect:
    return DIALECTS[engine]()
