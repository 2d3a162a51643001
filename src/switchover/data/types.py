"""Column types as the verifier sees them: a small set of kinds that compare across engines.

Each engine's introspection (``introspect.py``) maps its native type to a :class:`ColumnType`;
``canonical.py`` then picks, for a pair of columns (source, target), how both sides render their
values so that equal data gives equal text (and equal hashes) on PostgreSQL, MySQL/MariaDB and SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    INT = "int"
    DECIMAL = "decimal"  # exact, with a scale
    FLOAT = "float"  # binary floating point: compared at a configurable number of decimals
    BOOL = "bool"
    TIMESTAMP = "timestamp"  # with a fractional-seconds precision; tz-aware ones normalised to UTC
    DATE = "date"
    TIME = "time"
    UUID = "uuid"
    TEXT = "text"
    BYTES = "bytes"
    OTHER = "other"  # json, arrays, enums...: compared as the engine's text form


@dataclass(frozen=True)
class ColumnType:
    kind: Kind
    native: str  # the engine's own spelling, for messages (e.g. "numeric(12,2)", "tinyint(1)")
    scale: int | None = None  # DECIMAL: digits after the point
    precision: int | None = None  # TIMESTAMP/TIME: fractional-second digits (0-6)
    tz: bool = False  # TIMESTAMP stored as an instant (timestamptz, MySQL TIMESTAMP)
    unsigned: bool = False
    utf8: bool = True  # MySQL text columns in another character set are converted before hashing


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool


@dataclass(frozen=True)
class TableInfo:
    """What introspection found: columns in table order and the primary key (empty when none)."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    estimated_rows: int

    def column(self, name: str) -> Column | None:
        for col in self.columns:
            if col.name == name:
                return col
        lowered = name.lower()
        for col in self.columns:
            if col.name.lower() == lowered:
                return col
        return None
