"""Decoding PostgreSQL's built-in ``pgoutput`` logical replication messages (protocol version 1).

Pure: bytes in, ``Transaction`` out. Message layout: PostgreSQL documentation, "Logical Replication
Message Formats". Values arrive in PostgreSQL's text format; ``apply.convert`` adapts them to the target.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from switchover.data.apply import Change, Transaction

PG_EPOCH = 946_684_800  # 2000-01-01T00:00:00Z in Unix seconds


def lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_int(text: str) -> int:
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) + int(lo, 16)


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]


@dataclass
class Decoder:
    """Feed messages in order; ``feed`` returns a Transaction at each commit (None otherwise)."""

    skip_origin_prefix: str | None = None  # transactions written by our own applier (loop prevention)
    relations: dict[int, Relation] = field(default_factory=dict)
    _changes: list[Change] = field(default_factory=list)
    _commit_at: float | None = None
    _origin: str | None = None
    in_transaction: bool = False

    def feed(self, payload: bytes) -> Transaction | None:
        kind = payload[:1]
        body = memoryview(payload)[1:]
        if kind == b"B":
            _final_lsn, ts, _xid = struct.unpack_from(">QqI", body)
            self._changes, self._origin = [], None
            self.in_transaction = True
            self._commit_at = ts / 1e6 + PG_EPOCH if ts else None
        elif kind == b"O":
            name, _ = _cstring(body, 8)
            self._origin = name
        elif kind == b"R":
            self._relation(body)
        elif kind in (b"I", b"U", b"D"):
            self._row_change(kind, body)
        elif kind == b"T":
            nrels, _opts = struct.unpack_from(">IB", body)
            for i in range(nrels):
                (oid,) = struct.unpack_from(">I", body, 5 + 4 * i)
                rel = self.relations.get(oid)
                if rel is not None:
                    self._changes.append(Change("truncate", rel.name))
        elif kind == b"C":
            _flags, _commit_lsn, end_lsn, _ts = struct.unpack_from(">BQQq", body)
            echo = bool(self.skip_origin_prefix and self._origin and self._origin.startswith(self.skip_origin_prefix))
            changes = () if echo else tuple(self._changes)
            self._changes = []
            self.in_transaction = False
            return Transaction(lsn_text(end_lsn), self._commit_at, changes)
        # 'Y' (type), 'M' (message) and others carry nothing we apply.
        return None

    def _relation(self, body: memoryview) -> None:
        (oid,) = struct.unpack_from(">I", body)
        schema, pos = _cstring(body, 4)
        name, pos = _cstring(body, pos)
        _ident, ncols = struct.unpack_from(">BH", body, pos)
        pos += 3
        cols, key = [], []
        for _ in range(ncols):
            flags = body[pos]
            col, pos = _cstring(body, pos + 1)
            pos += 8  # type oid, typmod
            cols.append(col)
            if flags & 1:
                key.append(col)
        self.relations[oid] = Relation(oid, schema, name, tuple(cols), tuple(key))

    def _row_change(self, kind: bytes, body: memoryview) -> None:
        (oid,) = struct.unpack_from(">I", body)
        rel = self.relations[oid]
        pos = 4
        old: dict[str, Any] | None = None
        tag = bytes(body[pos:pos + 1])
        if tag in (b"K", b"O"):
            old, pos = _tuple(rel, body, pos + 1)
            tag = bytes(body[pos:pos + 1])
        if kind == b"D":
            assert old is not None
            self._changes.append(Change("delete", rel.name, None, {k: old[k] for k in rel.key}))
            return
        new, pos = _tuple(rel, body, pos + 1)
        if kind == b"I":
            self._changes.append(Change("insert", rel.name, new, None))
            return
        old_key = {k: old[k] for k in rel.key} if old is not None else {k: new[k] for k in rel.key}
        self._changes.append(Change("update", rel.name, new, old_key))


_UNCHANGED = object()


def _tuple(rel: Relation, body: memoryview, pos: int) -> tuple[dict[str, Any], int]:
    (ncols,) = struct.unpack_from(">H", body, pos)
    pos += 2
    out: dict[str, Any] = {}
    for i in range(ncols):
        kind = body[pos:pos + 1].tobytes()
        pos += 1
        name = rel.columns[i]
        if kind == b"n":
            out[name] = None
        elif kind == b"u":
            continue  # unchanged TOASTed value: not sent; the upsert leaves the column as it is
        else:
            (length,) = struct.unpack_from(">I", body, pos)
            pos += 4
            out[name] = body[pos:pos + length].tobytes().decode()
            pos += length
    return out, pos


def _cstring(body: memoryview, pos: int) -> tuple[str, int]:
    raw = body.tobytes()
    end = raw.index(b"\x00", pos)
    return raw[pos:end].decode(), end + 1
