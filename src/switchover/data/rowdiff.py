"""Exact row diff between two tables, on any pairing of PostgreSQL, MySQL/MariaDB and SQLite.

Programmatic API (stable; the data-movement steps use it as their proof that nothing was lost)::

    from switchover.data.rowdiff import TableSpec, diff_tables
    from switchover.data.urls import parse_db_url

    result = diff_tables(parse_db_url(SRC), parse_db_url(DST), TableSpec("orders", key=("id",)))
    result.equal        # True when both sides hold the same rows
    result.missing      # keys in the source only (tuples of key values)
    result.extra        # keys in the target only
    result.changed      # RowDiff(key, columns=(ColumnDiff(column, source, target), ...))
    result.to_json()    # one JSON-ready object

How (chosen by measurement, see docs/performance-rowdiff.md): each database hashes every row's
canonical text (``canonical.py``) itself, and both sides run concurrently in threads, each in a
read-only repeatable-read snapshot.

1. One pass of grouped checksums: ``GROUP BY bucket`` returns a count and a checksum (and the key's
   min/max) per bucket. A single integer key is bucketed by key range (``(id - lo) / width``) so
   that drilling down is an index range scan, and the checksum is one MD5 of the bucket's row
   texts in key order (``md5(string_agg(text, '' ORDER BY id))``); any other key (text, uuid,
   compound) is bucketed by a hash of the key's canonical text, which is immune to collation
   differences between engines, and its checksum is ``bit_xor`` of per-row hashes (no order
   needed). Gaps in the key space cost nothing: empty buckets are never queried, they simply do
   not appear.
2. Buckets whose count or sum differ are drilled into: a small one (``leaf_rows``) is fetched as
   ``(key, row hash)`` pairs; a large one (skewed keys) is split again by its own min/max, so the
   buckets follow the key's actual distribution.
3. Keys present on one side only are missing/extra; keys whose hashes differ are fetched in full
   and compared column by column (canonical values), reporting both original values.

Errors for people (``UserError``): unreachable database, unknown table or column, a table without
a primary key when no key is given, NULL or duplicate keys.
"""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from switchover import secrets
from switchover.data.canonical import Canon, canon_for
from switchover.data.dialects import MOD60, Dialect, dialect_for
from switchover.data.introspect import describe_table
from switchover.data.types import Column, Kind, TableInfo
from switchover.data.urls import DbUrl, connect
from switchover.errors import UserError

T = TypeVar("T")

# (phase, done, total): phase is "checksum", "drill-down" or "rows"; rows are counted on both sides.
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TableSpec:
    """Which table to compare. ``key`` empty: the source's primary key; ``columns`` None: all columns."""

    name: str
    key: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    target_name: str | None = None
    where: str | None = None

    @property
    def target(self) -> str:
        return self.target_name or self.name


@dataclass(frozen=True)
class DiffOptions:
    float_precision: int = 6  # decimals kept when either side is a float
    bucket_rows: int = 128  # rows per checksum bucket in the grouped pass (fewer rows to fetch again)
    leaf_rows: int = 4096  # a differing bucket up to this size is fetched row by row
    fetch_batch: int = 500  # keys per query when fetching differing rows
    workers: int = 2  # connections per side for a big table's grouped pass (servers use more cores)


@dataclass(frozen=True)
class ColumnDiff:
    column: str
    source: Any
    target: Any


@dataclass(frozen=True)
class RowDiff:
    key: tuple[Any, ...]
    columns: tuple[ColumnDiff, ...]


@dataclass(frozen=True)
class DiffResult:
    table: str
    target_table: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    missing: tuple[tuple[Any, ...], ...]  # in the source, not in the target
    extra: tuple[tuple[Any, ...], ...]  # in the target, not in the source
    changed: tuple[RowDiff, ...]
    source_rows: int
    target_rows: int
    scheme: str  # "range" (single integer key) or "hash"
    seconds: float
    stats: dict[str, int] = field(default_factory=dict)  # queries, buckets, rows fetched

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "target_table": self.target_table,
            "equal": self.equal,
            "key": list(self.key),
            "columns": list(self.columns),
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "missing": [list(jsonable(v) for v in k) for k in self.missing],
            "extra": [list(jsonable(v) for v in k) for k in self.extra],
            "changed": [
                {"key": [jsonable(v) for v in row.key],
                 "columns": {c.column: {"source": jsonable(c.source), "target": jsonable(c.target)}
                             for c in row.columns}}
                for row in self.changed
            ],
            "scheme": self.scheme,
            "seconds": round(self.seconds, 3),
            "stats": dict(self.stats),
        }


def jsonable(value: Any) -> Any:
    """A driver value as JSON: decimals and timestamps as text (exact), bytes as hex."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


# ------------------------------------------------------------------------------------------ sides


@dataclass
class _Bucket:
    count: int
    checksum: int | str | None  # None: unknown (a cut text), the bucket is drilled into
    low: Any = None
    high: Any = None


class _Side:
    """One database's half of the diff: its connection, dialect and the SQL for the compared columns."""

    def __init__(self, role: str, url: DbUrl, table: str) -> None:
        self.role = role
        self.url = url
        self.table_name = table
        self.dialect: Dialect = dialect_for(url.engine)
        self.conn: Any = None
        self.helpers: list[Any] = []
        self.info: TableInfo | None = None
        self.queries = 0
        self.rows_fetched = 0

    # -- lifecycle
    def open(self) -> TableInfo:
        self.conn = connect(self.url, autocommit=True)
        try:
            self.dialect.prepare(self.conn)
            self.info = describe_table(self.conn, self.url.engine, self.table_name)
        except UserError as exc:
            raise UserError(f"{self.role} {self.url.safe}: {exc}") from None
        except Exception as exc:
            raise self._error(exc) from None
        return self.info

    def close(self) -> None:
        for conn in [self.conn, *self.helpers]:
            if conn is not None:
                try:
                    conn.rollback()
                    conn.close()
                except Exception:  # closing after a failure must not hide the failure
                    pass
        self.conn = None
        self.helpers = []

    def begin(self, workers: int) -> None:
        """Start the read snapshot, plus ``workers - 1`` helper connections for the grouped pass.

        A big table's grouped pass is split into key ranges run on several connections, so that a
        server uses more than one core. PostgreSQL helpers share the main snapshot
        (``pg_export_snapshot``); MySQL helpers each take their own consistent snapshot at the same
        moment; SQLite works on one connection.
        """
        self.dialect.begin_snapshot(self.conn)
        if self.url.engine == "sqlite" or workers <= 1:
            return
        snapshot = None
        if self.url.engine == "postgresql":
            snapshot = self.query("SELECT pg_export_snapshot()")[0][0]
            # the pass is already spread over our connections: parallel workers would only compete
            with self.conn.cursor() as cur:
                cur.execute("SET max_parallel_workers_per_gather = 0")
        for _ in range(workers - 1):
            helper = connect(self.url, autocommit=True)
            self.helpers.append(helper)
            self.dialect.prepare(helper)
            if snapshot is not None:
                cur = helper.cursor()
                cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                cur.execute("SET max_parallel_workers_per_gather = 0")
                cur.close()
            else:
                self.dialect.begin_snapshot(helper)

    def _error(self, exc: Exception) -> UserError:
        text = secrets.redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return UserError(f"{self.role} {self.url.safe}, table {self.table_name}: query failed: {text}")

    def query(self, sql: str, params: Sequence[Any] = (), conn: Any = None) -> list[tuple[Any, ...]]:
        return self.query_checked(sql, params, conn)[0]

    def query_checked(self, sql: str, params: Sequence[Any] = (), conn: Any = None,
                      ) -> tuple[list[tuple[Any, ...]], bool]:
        """The rows, and whether MySQL warned that GROUP_CONCAT cut a text (code 1260)."""
        self.queries += 1
        cut = False
        try:
            cur = (conn or self.conn).cursor()
            try:
                if params:
                    cur.execute(sql, tuple(params))
                else:  # no parameters: the pyformat drivers leave '%' (DATE_FORMAT) alone
                    cur.execute(sql)
                rows = [tuple(r) for r in cur.fetchall()]
                warned = int(getattr(cur, "warning_count", 0) or 0)
                if warned:
                    cur.execute("SHOW WARNINGS")  # lists at most max_error_count (64) of them
                    listed = cur.fetchall()
                    cut = any(int(w[1]) == 1260 for w in listed) or warned > len(listed)
            finally:
                cur.close()
        except UserError:
            raise
        except Exception as exc:
            raise self._error(exc) from None
        return rows, cut

    # -- SQL pieces, set by plan()
    def plan(self, key: list[Column], cols: list[Column], canons: list[Canon], where: str | None, xor: bool) -> None:
        d = self.dialect
        self.xor = xor
        self.table_sql = d.table(self.table_name)
        self.key_sql = [d.quote(c.name) for c in key]
        self.col_sql = [d.quote(c.name) for c in cols]
        self.canon_sql = [d.canon(d.quote(c.name), c.type, cn) for c, cn in zip(cols, canons, strict=True)]
        # a column declared NOT NULL on this side needs no NULL token: its text is the same
        pieces = [d.pieces(expr, cn.kind, c.nullable) for expr, cn, c in zip(self.canon_sql, canons, cols, strict=True)]
        self.key_text = d.concat([p for part in pieces[: len(key)] for p in part])
        self.row_text = d.concat([p for part in pieces for p in part])
        self.row_hash = d.hash60(self.row_text)
        self.where = f"({where})" if where else None

    def filtered(self, *conds: str) -> str:
        parts = [c for c in (self.where, *conds) if c]
        return f" WHERE {' AND '.join(parts)}" if parts else ""


def _both(pool: ThreadPoolExecutor, src_call: Callable[[], T], dst_call: Callable[[], T]) -> tuple[T, T]:
    """Run the two sides concurrently; the source's error wins, and only once both have stopped
    (closing a connection still in use by the other thread would crash the driver)."""
    fut_src = pool.submit(src_call)
    fut_dst = pool.submit(dst_call)
    wait((fut_src, fut_dst))
    return fut_src.result(), fut_dst.result()


class _Progress:
    def __init__(self, fn: ProgressFn | None) -> None:
        self.fn = fn
        self.lock = threading.Lock()
        self.phase = ""
        self.done = 0
        self.total = 0

    def start(self, phase: str, total: int) -> None:
        with self.lock:
            self.phase, self.done, self.total = phase, 0, total
            if self.fn:
                self.fn(phase, 0, total)

    def add(self, rows: int) -> None:
        with self.lock:
            self.done += rows
            if self.fn:
                self.fn(self.phase, self.done, max(self.total, self.done))


# ------------------------------------------------------------------------------------------ diff


def diff_tables(src: DbUrl, dst: DbUrl, table: TableSpec, *, options: DiffOptions | None = None,
                progress: ProgressFn | None = None) -> DiffResult:
    """Compare ``table`` in ``src`` with ``table.target`` in ``dst``; see the module docstring."""
    opts = options or DiffOptions()
    started = time.monotonic()
    a = _Side("source", src, table.name)
    b = _Side("target", dst, table.target)
    prog = _Progress(progress)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="rowdiff") as pool:
        try:
            info_a, info_b = _both(pool, a.open, b.open)
            key, columns = _resolve_columns(table, info_a, info_b, a, b)
            _plan_sides(a, b, key, columns, table.where, opts)
            _check_null_keys(pool, a, b, key)
            est = _estimate_rows(pool, a, b)
            bucket_rows = _bucket_rows(pool, a, b, est, opts)
            workers = opts.workers if est >= 2 * ROWS_PER_CHUNK else 1  # helpers only where chunks are run
            _both(pool, lambda: a.begin(workers), lambda: b.begin(workers))
            ranged = _range_key(a, b, key)
            found = _diff_ranges(pool, a, b, opts, prog, est, bucket_rows) if ranged else None
            if found is None:  # not a single integer key, or a key span too wide for BIGINT arithmetic
                ranged = False
                found = _diff_hashed(pool, a, b, opts, prog, est)
            src_keys, dst_keys, counts = found
            missing, extra, changed_keys = _compare_keys(src_keys, dst_keys)
            changed = _fetch_changes(pool, a, b, changed_keys, src_keys, dst_keys, columns, opts, prog)
        finally:
            a.close()
            b.close()
    return DiffResult(
        table=table.name, target_table=table.target,
        key=tuple(c[0].name for c in key), columns=tuple(c[0].name for c in columns),
        missing=tuple(src_keys[k][0] for k in missing), extra=tuple(dst_keys[k][0] for k in extra),
        changed=tuple(changed), source_rows=counts[0], target_rows=counts[1],
        scheme="range" if ranged else "hash", seconds=time.monotonic() - started,
        stats={"queries": a.queries + b.queries, "rows_fetched": a.rows_fetched + b.rows_fetched},
    )


ColumnPair = tuple[Column, Column]


def _resolve_columns(table: TableSpec, info_a: TableInfo, info_b: TableInfo, a: _Side, b: _Side,
                     ) -> tuple[list[ColumnPair], list[ColumnPair]]:
    key_names = list(table.key) or list(info_a.primary_key)
    if not key_names:
        raise UserError(f"table {table.name} in {a.url.safe} has no primary key: pass --key/-k with the "
                        "column(s) that identify a row (or `key:` in the plan)")

    def pair(name: str) -> ColumnPair:
        ca = info_a.column(name)
        if ca is None:
            raise UserError(f"column {name!r} not found in table {table.name} of {a.url.safe}")
        cb = info_b.column(ca.name)
        if cb is None:
            raise UserError(f"column {name!r} not found in table {table.target} of {b.url.safe} "
                            "(choose the compared columns with -c)")
        return ca, cb

    key = [pair(n) for n in key_names]
    names = list(table.columns) if table.columns is not None else [c.name for c in info_a.columns]
    seen = {c[0].name for c in key}
    columns = list(key)
    for n in names:
        p = pair(n)
        if p[0].name not in seen:
            seen.add(p[0].name)
            columns.append(p)
    return key, columns


def _plan_sides(a: _Side, b: _Side, key: list[ColumnPair], columns: list[ColumnPair], where: str | None,
                opts: DiffOptions) -> None:
    canons = [canon_for(ca.type, cb.type, opts.float_precision) for ca, cb in columns]
    xor = a.dialect.xor and b.dialect.xor  # both sides must fold row hashes the same way
    a.plan([p[0] for p in key], [p[0] for p in columns], canons, where, xor)
    b.plan([p[1] for p in key], [p[1] for p in columns], canons, where, xor)


def _check_null_keys(pool: ThreadPoolExecutor, a: _Side, b: _Side, key: list[ColumnPair]) -> None:
    def check(side: _Side, idx: int) -> None:
        nullable = [sql for sql, p in zip(side.key_sql, key, strict=True) if p[idx].nullable]
        if not nullable:
            return
        cond = " OR ".join(f"{c} IS NULL" for c in nullable)
        if side.query(f"SELECT 1 FROM {side.table_sql}{side.filtered(f'({cond})')} LIMIT 1"):
            raise UserError(f"{side.role} {side.url.safe}: table {side.table_name} has NULL in its key "
                            f"({', '.join(p[idx].name for p in key)}); a key must identify every row")

    _both(pool, lambda: check(a, 0), lambda: check(b, 1))


def _range_key(a: _Side, b: _Side, key: list[ColumnPair]) -> bool:
    return len(key) == 1 and key[0][0].type.kind is Kind.INT and key[0][1].type.kind is Kind.INT


KeyMap = dict[str, tuple[tuple[Any, ...], int]]  # key text -> (key values, row hash)


def _collect(side: _Side, rows: Iterable[tuple[Any, ...]], into: KeyMap) -> None:
    n = len(side.key_sql)
    for row in rows:
        text = row[n]
        if text in into:
            raise UserError(f"{side.role} {side.url.safe}: key {[jsonable(v) for v in row[:n]]} is not unique in "
                            f"table {side.table_name}; pass --key/-k with the column(s) that identify a row")
        into[text] = (row[:n], int(row[n + 1]) % MOD60)
        side.rows_fetched += 1


def _differing(left: dict[int, _Bucket], right: dict[int, _Bucket]) -> list[int]:
    out = []
    for bucket in left.keys() | right.keys():
        x, y = left.get(bucket), right.get(bucket)
        if x is None or y is None or x.count != y.count or x.checksum is None or x.checksum != y.checksum:
            out.append(bucket)
    return sorted(out)


# ------------------------------------------------------------------------------ range scheme


def _int_div(side: _Side, expr: str, width: int) -> str:
    return f"({expr}) DIV {width}" if side.dialect.engine == "mysql" else f"({expr}) / {width}"


def _range_pass(side: _Side, low: int, high: int, width: int, prog: _Progress | None,
                chunks: int = 1) -> dict[int, _Bucket]:
    """Grouped checksums of rows with ``low <= key <= high`` in buckets of ``width`` keys."""
    k = side.key_sql[0]
    offset = f"CAST({k} AS BIGINT) - {low}" if side.dialect.engine == "postgresql" else f"{k} - {low}"
    bucket = _int_div(side, offset, width)
    sql_head = (f"SELECT {bucket} AS b, count(*), {side.dialect.agg_md5(side.row_text, k)}, min({k}), max({k}) "
                f"FROM {side.table_sql}")
    out: dict[int, _Bucket] = {}
    nbuckets = (high - low) // width + 1
    step = -(-nbuckets // max(1, chunks))
    ranges = [(low + first * width, min(high, low + (first + step) * width - 1)) for first in range(0, nbuckets, step)]

    def run(lo: int, hi: int, conn: Any) -> None:
        rows, cut = side.query_checked(f"{sql_head}{side.filtered(f'{k} >= {lo}', f'{k} <= {hi}')} GROUP BY 1",
                                       conn=conn)
        done = 0
        for bkt, count, digest, kmin, kmax in rows:
            out[int(bkt)] = _Bucket(int(count), None if cut else str(digest), int(kmin), int(kmax))
            done += int(count)
        if prog:
            prog.add(done)

    conns = [side.conn, *side.helpers] if chunks > 1 else [side.conn]
    if len(conns) == 1:
        for lo, hi in ranges:
            run(lo, hi, side.conn)
        return out
    queue = list(reversed(ranges))
    lock = threading.Lock()

    def worker(conn: Any) -> None:
        while True:
            with lock:
                if not queue:
                    return
                lo, hi = queue.pop()
            run(lo, hi, conn)

    with ThreadPoolExecutor(len(conns), thread_name_prefix=f"rowdiff-{side.role}") as helpers:
        futures = [helpers.submit(worker, c) for c in conns]
        wait(futures)
        for f in futures:
            f.result()
    return out


def _fetch_ranges(side: _Side, ranges: list[tuple[int, int]], into: KeyMap) -> None:
    k = side.key_sql[0]
    head = f"SELECT {k}, {side.key_text}, {side.row_hash} FROM {side.table_sql}"
    for i in range(0, len(ranges), 200):
        cond = " OR ".join(f"({k} >= {lo} AND {k} <= {hi})" for lo, hi in ranges[i:i + 200])
        _collect(side, side.query(head + side.filtered(f"({cond})")), into)


def _estimate_rows(pool: ThreadPoolExecutor, a: _Side, b: _Side) -> int:
    """Rows to plan buckets for: the statistics, or a count when they look missing or stale (a table
    never analyzed says 0; a count costs far less than a second hashing pass over a big table)."""
    est = max(a.info.estimated_rows if a.info else 0, b.info.estimated_rows if b.info else 0)
    if est >= 100_000:
        return est
    def count(side: _Side) -> int:
        return int(side.query(f"SELECT count(*) FROM {side.table_sql}")[0][0])

    rows_a, rows_b = _both(pool, partial(count, a), partial(count, b))
    return max(1, est, rows_a, rows_b)


# A range bucket's checksum is one MD5 of its rows' texts, built in the server's memory: wide rows
# get fewer rows per bucket (the size on disk per row is only a hint: text may be compressed).
BUCKET_TEXT_BYTES = 8 << 20


def _bucket_rows(pool: ThreadPoolExecutor, a: _Side, b: _Side, est: int, opts: DiffOptions) -> int:
    def size(side: _Side) -> int:
        try:
            return side.dialect.table_bytes(side.conn, side.table_name) or 0
        except Exception:  # statistics are a hint: without them, the default bucket size
            return 0

    row_bytes = max(_both(pool, partial(size, a), partial(size, b))) // max(1, est)
    return max(1, min(opts.bucket_rows, BUCKET_TEXT_BYTES // max(1, row_bytes)))


ROWS_PER_CHUNK = 125_000

# (key - low) must fit a signed BIGINT on every engine; wider key spans are bucketed by hash
MAX_SPAN = 1 << 62


def _diff_ranges(pool: ThreadPoolExecutor, a: _Side, b: _Side, opts: DiffOptions, prog: _Progress, est: int,
                 bucket_rows: int) -> tuple[KeyMap, KeyMap, tuple[int, int]] | None:
    def bounds(side: _Side) -> tuple[Any, ...]:
        k = side.key_sql[0]
        return side.query(f"SELECT min({k}), max({k}) FROM {side.table_sql}{side.filtered()}")[0]

    (min_a, max_a), (min_b, max_b) = _both(pool, lambda: bounds(a), lambda: bounds(b))
    lows = [int(v) for v in (min_a, min_b) if v is not None]
    highs = [int(v) for v in (max_a, max_b) if v is not None]
    src_keys: KeyMap = {}
    dst_keys: KeyMap = {}
    if not lows:
        return src_keys, dst_keys, (0, 0)
    if max(highs) - min(lows) >= MAX_SPAN:
        return None
    prog.start("checksum", 2 * est)
    # big tables: key-range chunks, to show progress and to spread the pass over the helper connections
    chunks = max(1, min(8, est // ROWS_PER_CHUNK))
    # (low, high, expected rows) ranges still to compare
    todo: list[tuple[int, int, int]] = [(min(lows), max(highs), est)]
    leaves: list[tuple[int, int]] = []
    counts = [0, 0]
    top = True
    while todo:
        low, high, rows = todo.pop()
        width = max(1, -(-(high - low + 1) // max(1, rows // bucket_rows)))
        left, right = _both(pool, partial(_range_pass, a, low, high, width, prog if top else None, chunks if top else 1),
                            partial(_range_pass, b, low, high, width, prog if top else None, chunks if top else 1))
        if top:
            counts = [sum(x.count for x in left.values()), sum(x.count for x in right.values())]
            prog.start("drill-down", 0)
            top = False
        for bucket in _differing(left, right):
            x, y = left.get(bucket), right.get(bucket)
            size = max(x.count if x else 0, y.count if y else 0)
            blo = min(v.low for v in (x, y) if v is not None)
            bhi = max(v.high for v in (x, y) if v is not None)
            if size <= opts.leaf_rows or bhi == blo:
                leaves.append((blo, bhi))
            else:  # a crowded bucket (skewed keys): split it by its own min/max
                todo.append((blo, bhi, size))
    leaves = _merge(sorted(leaves))
    _both(pool, lambda: _fetch_ranges(a, leaves, src_keys), lambda: _fetch_ranges(b, leaves, dst_keys))
    prog.add(len(src_keys) + len(dst_keys))
    return src_keys, dst_keys, (counts[0], counts[1])


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


# ------------------------------------------------------------------------------- hash scheme


def _diff_hashed(pool: ThreadPoolExecutor, a: _Side, b: _Side, opts: DiffOptions, prog: _Progress, est: int,
                 ) -> tuple[KeyMap, KeyMap, tuple[int, int]]:
    nb = max(1, min(1 << 20, est // opts.bucket_rows))
    prog.start("checksum", 2 * est)

    def grouped(side: _Side) -> dict[int, _Bucket]:
        bucket = side.dialect.hash_bucket(side.key_text, nb)
        rows = side.query(f"SELECT {bucket} AS b, count(*), {side.dialect.agg60(side.row_hash, side.xor)} "
                          f"FROM {side.table_sql}{side.filtered()} GROUP BY 1")
        out = {int(r[0]): _Bucket(int(r[1]), int(r[2] or 0) % MOD60) for r in rows}
        prog.add(sum(x.count for x in out.values()))
        return out

    left, right = _both(pool, lambda: grouped(a), lambda: grouped(b))
    counts = (sum(x.count for x in left.values()), sum(x.count for x in right.values()))
    differing = _differing(left, right)
    prog.start("drill-down", 0)
    src_keys: KeyMap = {}
    dst_keys: KeyMap = {}

    def fetch(side: _Side, into: KeyMap) -> None:
        head = f"SELECT {', '.join(side.key_sql)}, {side.key_text}, {side.row_hash} FROM {side.table_sql}"
        if len(differing) * 2 > nb:  # most buckets differ: one scan of everything is cheaper
            _collect(side, side.query(head + side.filtered()), into)
            return
        bucket = side.dialect.hash_bucket(side.key_text, nb)
        for i in range(0, len(differing), 5000):
            ids = ", ".join(str(x) for x in differing[i:i + 5000])
            _collect(side, side.query(head + side.filtered(f"{bucket} IN ({ids})")), into)

    if differing:
        _both(pool, lambda: fetch(a, src_keys), lambda: fetch(b, dst_keys))
    prog.add(len(src_keys) + len(dst_keys))
    return src_keys, dst_keys, counts


# --------------------------------------------------------------------------- rows and columns


def _compare_keys(src: KeyMap, dst: KeyMap) -> tuple[list[str], list[str], list[str]]:
    missing = _in_key_order((k for k in src if k not in dst), src)
    extra = _in_key_order((k for k in dst if k not in src), dst)
    changed = _in_key_order((k for k in src if k in dst and src[k][1] != dst[k][1]), src)
    return missing, extra, changed


def _in_key_order(texts: Iterable[str], keys: KeyMap) -> list[str]:
    listed = list(texts)
    try:
        return sorted(listed, key=lambda t: keys[t][0])
    except TypeError:  # NULL-free keys of mixed driver types: fall back to the canonical text
        return sorted(listed)


def _fetch_rows(side: _Side, keys: list[tuple[Any, ...]], opts: DiffOptions,
                ) -> dict[str, tuple[list[Any], list[Any]]]:
    """key text -> (canonical values, original values) for rows with the given key values."""
    d = side.dialect
    n = len(side.key_sql)
    head = (f"SELECT {side.key_text}, {', '.join(side.canon_sql)}, {', '.join(side.col_sql)} "
            f"FROM {side.table_sql}")
    if d.placeholder == "%s":  # pyformat drivers: a literal % (DATE_FORMAT) is written %%
        head = head.replace("%", "%%")
    out: dict[str, tuple[list[Any], list[Any]]] = {}
    width = len(side.col_sql)
    for i in range(0, len(keys), opts.fetch_batch):
        batch = keys[i:i + opts.fetch_batch]
        if n == 1:
            cond = f"{side.key_sql[0]} IN ({d.params(len(batch))})"
            params: list[Any] = [k[0] for k in batch]
        else:
            one = f"({d.params(n)})"
            cond = f"({', '.join(side.key_sql)}) IN ({', '.join([one] * len(batch))})"
            params = [v for k in batch for v in k]
        for row in side.query(f"{head} WHERE {cond}", params):
            out[row[0]] = (list(row[1:1 + width]), list(row[1 + width:]))
    return out


def _fetch_changes(pool: ThreadPoolExecutor, a: _Side, b: _Side, changed: list[str], src_keys: KeyMap,
                   dst_keys: KeyMap, columns: list[ColumnPair], opts: DiffOptions, prog: _Progress,
                   ) -> list[RowDiff]:
    if not changed:
        return []
    prog.start("rows", 2 * len(changed))
    rows_a, rows_b = _both(pool, lambda: _fetch_rows(a, [src_keys[k][0] for k in changed], opts),
                           lambda: _fetch_rows(b, [dst_keys[k][0] for k in changed], opts))
    prog.add(len(rows_a) + len(rows_b))
    out = []
    for text in changed:
        ra, rb = rows_a.get(text), rows_b.get(text)
        if ra is None or rb is None:  # changed between passes would need another snapshot: cannot happen
            continue
        diffs = tuple(ColumnDiff(pair[0].name, ra[1][i], rb[1][i])
                      for i, pair in enumerate(columns) if ra[0][i] != rb[0][i])
        out.append(RowDiff(src_keys[text][0], diffs))
    return out
