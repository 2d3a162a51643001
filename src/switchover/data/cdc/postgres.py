"""PostgreSQL change capture: a logical replication slot streamed over psycopg2's replication connection.

Output plugin: ``pgoutput`` (built into PostgreSQL, the one its own logical replication and Debezium
use), with a publication naming the tables, so the server sends only their changes. wal2json is
not used because servers may restrict output plugins (``output_plugin_libraries``) and pgoutput is
always there. Feedback (the position the target has durably applied) is sent with ``force`` after
every apply and at shutdown: without it the server replays from the old position on reconnect, and
the slot holds WAL forever.
"""

from __future__ import annotations

import contextlib
import re
import select
import time
from dataclasses import dataclass
from typing import Any

from switchover.data.apply import Transaction
from switchover.data.cdc.pgoutput import Decoder, lsn_int
from switchover.data.move_tables import Side
from switchover.data.urls import DbUrl
from switchover.errors import UserError
from switchover.secrets import redact

ORIGIN_PREFIX = "switchover"


def slot_name_for(stream: str) -> str:
    """A valid slot/publication name (lower case, [a-z0-9_], at most 63 characters)."""
    name = re.sub(r"[^a-z0-9_]", "_", stream.lower())
    return ("sw_" + name)[:63]


@dataclass(frozen=True)
class SlotInfo:
    name: str
    plugin: str
    active: bool
    restart_lsn: str | None
    confirmed_flush_lsn: str | None
    retained_bytes: int | None  # WAL the slot keeps from being recycled
    wal_status: str | None  # reserved | extended | unreserved | lost
    max_slot_wal_keep_size: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_settings(side: Side) -> list[str]:
    """UserError when logical decoding cannot work; a list of warnings otherwise."""
    rows = side.execute("SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int, "
                        "current_setting('max_slot_wal_keep_size'), "
                        "(SELECT count(*) FROM pg_replication_slots)")
    side.finish_read()
    wal_level, max_slots, keep, used = rows[0]
    if wal_level != "logical":
        raise UserError(f"{side.url.safe}: wal_level is {wal_level!r}; CDC needs logical decoding. Run "
                        "ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL "
                        "(scripts/setup-services.sh does it for the test servers).")
    warnings = []
    if int(used) >= int(max_slots):
        warnings.append(f"all {max_slots} replication slots are in use (max_replication_slots); "
                        "drop abandoned ones with `switchover data cdc --drop-slot`")
    if str(keep) in ("-1", "-1MB"):
        warnings.append("max_slot_wal_keep_size = -1: an abandoned slot keeps WAL without limit and can fill "
                        "the disk; set a limit (e.g. ALTER SYSTEM SET max_slot_wal_keep_size = '2GB')")
    return warnings


def ensure_slot(side: Side, slot: str, tables: list[str]) -> bool:
    """Publication for ``tables`` then the slot (capture starts here). True when the slot was created."""
    pub_exists = side.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (slot,))
    table_list = ", ".join(side.q(t) for t in tables)
    if not pub_exists:
        side.execute(f"CREATE PUBLICATION {side.q(slot)} FOR TABLE {table_list}")
    else:
        have = {r[0] for r in side.execute("SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (slot,))}
        missing = [t for t in tables if t not in have]
        if missing:
            side.execute(f"ALTER PUBLICATION {side.q(slot)} ADD TABLE " + ", ".join(side.q(t) for t in missing))
    found = side.execute("SELECT database, plugin FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    if found:
        side.finish_read()
        if found[0][0] != side.url.database or found[0][1] != "pgoutput":
            raise UserError(f"replication slot {slot} already exists for database {found[0][0]} "
                            f"(plugin {found[0][1]}); choose another --stream, or drop it with --drop-slot")
        return False
    try:
        side.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    except Exception as exc:
        side.rollback()
        raise UserError(f"{side.url.safe}: cannot create replication slot {slot}: {redact(str(exc)).strip()}") from None
    side.finish_read()
    return True


def slot_info(side: Side, slot: str) -> SlotInfo | None:
    rows = side.execute(
        "SELECT slot_name, plugin, active, restart_lsn::text, confirmed_flush_lsn::text, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, wal_status, "
        "current_setting('max_slot_wal_keep_size') FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    side.finish_read()
    if not rows:
        return None
    r = rows[0]
    return SlotInfo(str(r[0]), str(r[1]), bool(r[2]), r[3], r[4], None if r[5] is None else int(r[5]), r[6], str(r[7]))


def drop_slot(side: Side, slot: str) -> bool:
    """Drop the slot and its publication (an abandoned slot holds WAL). True when something was dropped."""
    dropped = False
    if side.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)):
        side.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        dropped = True
    if side.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (slot,)):
        side.execute(f"DROP PUBLICATION {side.q(slot)}")
        dropped = True
    side.finish_read()
    return dropped


def ensure_origin(side: Side, name: str) -> None:
    """Mark this session's writes with a replication origin, so a reverse stream can skip them (loop prevention)."""
    if not side.execute("SELECT 1 FROM pg_replication_origin WHERE roname = %s", (name,)):
        side.execute("SELECT pg_replication_origin_create(%s)", (name,))
    side.execute("SELECT pg_replication_origin_session_setup(%s)", (name,))
    side.finish_read()


def release_origin(side: Side, name: str) -> None:
    """End the session's origin and drop it: origins take one of max_replication_slots' state slots."""
    with contextlib.suppress(Exception):
        side.rollback()
        side.execute("SELECT pg_replication_origin_session_reset()")
        side.execute("SELECT pg_replication_origin_drop(%s)", (name,))
        side.finish_read()


class PgReader:
    """Streams committed transactions from a slot. ``poll`` returns what has arrived (commit order)."""

    def __init__(self, url: DbUrl, slot: str, after: str | None, skip_origin_prefix: str | None = None,
                 active_wait: float = 15.0) -> None:
        import psycopg2
        import psycopg2.errors
        import psycopg2.extras

        self.slot = slot
        self._after = lsn_int(after) if after else 0
        self._decoder = Decoder(skip_origin_prefix=skip_origin_prefix)
        deadline = time.monotonic() + active_wait
        while True:
            try:
                self._conn = psycopg2.connect(
                    host=url.host or "127.0.0.1", port=url.port or 5432, user=url.user or "postgres",
                    password=url.password, dbname=url.database or "postgres", connect_timeout=10,
                    connection_factory=psycopg2.extras.LogicalReplicationConnection)
                self._cur = self._conn.cursor()
                self._cur.start_replication(slot_name=slot, decode=False, start_lsn=self._after,
                                            status_interval=5,
                                            options={"proto_version": "1", "publication_names": slot})
                break
            except psycopg2.errors.ObjectInUse as exc:
                # A consumer that just died (kill -9) holds the slot until the server notices: wait for it.
                with contextlib.suppress(Exception):
                    self._conn.close()
                if time.monotonic() >= deadline:
                    raise UserError(f"{url.safe}: slot {slot} is in use by another consumer "
                                    f"({redact(str(exc)).strip()}); is another `data cdc` running?") from None
                time.sleep(0.5)
            except psycopg2.Error as exc:
                raise UserError(f"{url.safe}: cannot stream slot {slot}: {redact(str(exc)).strip()}") from None
        self.received_at: float | None = None

    def poll(self, timeout: float, max_txns: int = 500) -> list[Transaction]:
        """Transactions that are complete now; waits up to ``timeout`` for the first message."""
        out: list[Transaction] = []
        deadline = time.monotonic() + timeout
        while len(out) < max_txns:
            msg = self._cur.read_message()
            if msg is None:
                if out:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                select.select([self._cur], [], [], min(left, 0.5))
                continue
            txn = self._decoder.feed(msg.payload)
            # Our own appliers' transactions arrive emptied (loop prevention): nothing to apply, and no
            # position write either (that would be a write of its own); ``confirm_idle`` moves the slot past.
            if txn is not None and txn.changes and lsn_int(txn.position) > self._after:
                out.append(txn)
        return out

    def confirm(self, position: str) -> None:
        """Tell the server everything up to ``position`` is applied (it may recycle that WAL)."""
        lsn = lsn_int(position)
        self._after = max(self._after, lsn)
        self._cur.send_feedback(write_lsn=lsn, flush_lsn=lsn, reply=False, force=True)

    def confirm_idle(self) -> None:
        """Nothing pending: let the slot advance past WAL of other tables (bounds its retention)."""
        end = int(getattr(self._cur, "wal_end", 0) or 0)
        if not self._decoder.in_transaction and end > self._after:
            self._after = end
            self._cur.send_feedback(write_lsn=end, flush_lsn=end, reply=True, force=True)
        else:
            # Ask for a keepalive: it carries the server's decoded WAL end for the next call.
            self._cur.send_feedback(reply=True)

    def close(self) -> None:
        try:
            if self._after:
                self._cur.send_feedback(write_lsn=self._after, flush_lsn=self._after, force=True)
        except Exception:  # closing a broken stream: nothing left to confirm
            pass
        with contextlib.suppress(Exception):
            self._conn.close()
