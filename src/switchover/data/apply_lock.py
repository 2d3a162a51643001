"""The target-side lock that serialises a backfill chunk's merge with CDC's apply of the same table.

Why: the backfill reads a chunk from the source, then merges it into the target. A change captured
by CDC for a row of that chunk may be applied in between; the merge must then leave that row alone
(CDC's version is newer). CDC records every key it applies in ``switchover_cdc_touched`` in the same
transaction; the merge skips touched keys. Holding this lock in both transactions makes "check
touched, then write" atomic against CDC's "write, then mark touched".
"""

from __future__ import annotations

from switchover.data.move_tables import Side


def lock_name(table: str) -> str:
    return f"switchover:{table}"[:64]


def acquire(side: Side, table: str, timeout_s: int = 60) -> None:
    """Inside the caller's transaction (PostgreSQL: released at commit; SQLite: BEGIN IMMEDIATE is the lock)."""
    if side.engine == "postgresql":
        side.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_name(table),))
    elif side.engine == "mysql":
        got = side.execute("SELECT GET_LOCK(%s, %s)", (lock_name(table), timeout_s))
        if not got or got[0][0] != 1:
            raise TimeoutError(f"could not take the apply lock for {table} within {timeout_s}s")


def release(side: Side, table: str) -> None:
    """After commit (MySQL's named locks belong to the session, not the transaction)."""
    if side.engine == "mysql":
        side.execute("SELECT RELEASE_LOCK(%s)", (lock_name(table),))
