"""Canonical values: how a pair of columns (source, target) is rendered so that equal data is equal text.

The rendering happens inside each database (``dialects.py`` turns a :class:`Canon` into SQL), so that
row hashes computed by PostgreSQL, MySQL/MariaDB and SQLite agree. The rules:

- integers and booleans: decimal digits (``true`` is ``1``);
- decimals: fixed-point with the larger scale of the two sides (``1.5`` and ``1.50`` are equal);
- floats (either side): rounded to ``float_precision`` decimals (default 6);
- timestamps: ``YYYY-MM-DD HH:MM:SS[.ffffff]`` in UTC, truncated to the lower precision of the two
  sides (a ``datetime`` column against a ``timestamp(6)`` compares whole seconds);
- uuids: lower-case text; bytes: lower-case hex; text: the exact UTF-8 characters;
- NULL is its own token, never equal to ``''`` (``encode_row`` below length-prefixes every value).

:func:`python_canon` renders a value fetched by a driver the same way, for aggregate results.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from dataclasses import dataclass

from switchover.data.types import ColumnType, Kind

NULL_TOKEN = "N"


@dataclass(frozen=True)
class Canon:
    kind: Kind  # one of INT, DECIMAL, FLOAT, TIMESTAMP, DATE, TIME, UUID, TEXT, BYTES, OTHER
    digits: int = 0  # DECIMAL: scale; FLOAT: decimals kept; TIMESTAMP/TIME: fractional digits


_NUMERIC = {Kind.INT, Kind.BOOL, Kind.DECIMAL, Kind.FLOAT}


def canon_for(src: ColumnType, dst: ColumnType, float_precision: int = 6) -> Canon:
    """How both sides render a column, given their two native types."""
    kinds = {src.kind, dst.kind}
    if kinds <= _NUMERIC:
        if Kind.FLOAT in kinds:
            return Canon(Kind.FLOAT, float_precision)
        if Kind.DECIMAL in kinds:
            return Canon(Kind.DECIMAL, max(src.scale or 0, dst.scale or 0))
        return Canon(Kind.INT)
    if kinds == {Kind.TIMESTAMP} or kinds == {Kind.TIMESTAMP, Kind.DATE}:
        if Kind.DATE in kinds:
            return Canon(Kind.DATE)
        return Canon(Kind.TIMESTAMP, min(_prec(src), _prec(dst)))
    if kinds == {Kind.DATE}:
        return Canon(Kind.DATE)
    if kinds == {Kind.TIME}:
        return Canon(Kind.TIME, min(_prec(src), _prec(dst)))
    if Kind.UUID in kinds and kinds <= {Kind.UUID, Kind.TEXT}:
        return Canon(Kind.UUID)
    if kinds == {Kind.BYTES}:
        return Canon(Kind.BYTES)
    if kinds <= {Kind.TEXT}:
        return Canon(Kind.TEXT)
    return Canon(Kind.OTHER)


def _prec(t: ColumnType) -> int:
    return 6 if t.precision is None else max(0, min(6, t.precision))


def python_canon(value: object, canon: Canon) -> str | None:
    """A driver value rendered as the database renders it under ``canon`` (None stays None)."""
    if value is None:
        return None
    kind = canon.kind
    if kind is Kind.INT:
        if isinstance(value, bool):
            return "1" if value else "0"
        return str(int(value))  # type: ignore[call-overload]
    if kind in (Kind.DECIMAL, Kind.FLOAT):
        quantum = decimal.Decimal(1).scaleb(-canon.digits)
        number = decimal.Decimal(str(value)) if isinstance(value, float) else decimal.Decimal(value)  # type: ignore[arg-type]
        return str(number.quantize(quantum, rounding=decimal.ROUND_HALF_UP))
    if kind is Kind.TIMESTAMP:
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            text = value.strftime("%Y-%m-%d %H:%M:%S.%f")
            return text[:19] if canon.digits == 0 else text[: 20 + canon.digits]
        return str(value)
    if kind is Kind.DATE:
        if isinstance(value, dt.datetime):
            return value.date().isoformat()
        return value.isoformat() if isinstance(value, dt.date) else str(value)[:10]
    if kind is Kind.UUID:
        if isinstance(value, bytes):
            return str(uuid.UUID(bytes=value))
        return str(value).lower()
    if kind is Kind.BYTES and isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


# Kinds whose canonical text never holds a comma: a value ends at the comma that follows it.
# Text-like values (TEXT, OTHER) may hold anything, so they are length-prefixed instead.
DELIMITED = frozenset({Kind.INT, Kind.DECIMAL, Kind.FLOAT, Kind.TIMESTAMP, Kind.DATE, Kind.TIME, Kind.UUID,
                       Kind.BYTES})


def encode_value(value: str | None, kind: Kind) -> str:
    """One value's part of the hashed row text; NULL is ``N``, never equal to ``''`` (``0:``).

    The databases build the same text in SQL (``Dialect.encoded``); this is its reference, and
    every token is self-delimiting so that no two rows of different values share a text.
    """
    if value is None:
        return NULL_TOKEN + "," if kind in DELIMITED else NULL_TOKEN
    return value + "," if kind in DELIMITED else f"{len(value)}:{value}"
