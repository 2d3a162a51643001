"""The demo's orders service, as v1 or v2: stdlib HTTP server over SQLite.

``python -m switchover.demo.service --port P --version v2 --db orders.db [--bad]``. ``--bad`` makes
it answer 5% of requests with 500 and every answer some 30 ms slower: what a bad release looks like
(``--error-rate``, ``--delay-ms`` and ``--fault-after`` tune the fault for tests and benchmarks).
Endpoints: ``GET /healthz/ready``, ``GET /orders/<id>``, ``GET /orders?user=U``, ``POST /orders``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_SCHEMA = """CREATE TABLE IF NOT EXISTS orders (
  id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, sku TEXT NOT NULL, qty INTEGER NOT NULL,
  total_cents INTEGER NOT NULL, created_at REAL NOT NULL)"""


class Orders:
    def __init__(self, path: str) -> None:
        self._local = threading.local()
        self.path = path
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA busy_timeout=10000")
            self._local.db = db
        return db

    def create(self, user: str, sku: str, qty: int) -> dict[str, Any]:
        now = time.time()
        cur = self._db().execute("INSERT INTO orders (user_id, sku, qty, total_cents, created_at) VALUES (?,?,?,?,?)",
                                 (user, sku, qty, 1299 * qty, now))
        return {"id": cur.lastrowid, "user": user, "sku": sku, "qty": qty, "total_cents": 1299 * qty}

    def get(self, order_id: int) -> dict[str, Any] | None:
        row = self._db().execute("SELECT id, user_id, sku, qty, total_cents FROM orders WHERE id = ?",
                                 (order_id,)).fetchone()
        return None if row is None else {"id": row[0], "user": row[1], "sku": row[2], "qty": row[3],
                                         "total_cents": row[4]}

    def for_user(self, user: str) -> list[dict[str, Any]]:
        rows = self._db().execute("SELECT id, sku, qty, total_cents FROM orders WHERE user_id = ? ORDER BY id DESC "
                                  "LIMIT 20", (user,)).fetchall()
        return [{"id": r[0], "sku": r[1], "qty": r[2], "total_cents": r[3]} for r in rows]


def make_handler(orders: Orders, version: str, error_rate: float = 0.0, delay: float = 0.0,
                 fault_after: float = 0.0) -> type[BaseHTTPRequestHandler]:
    rng = random.Random()
    fault_from = time.time() + fault_after

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus the client's
        # delayed ACK add ~40 ms to every keep-alive answer.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Version", version)
            self.end_headers()
            self.wfile.write(data)

        def _faulty(self) -> bool:
            if (not error_rate and not delay) or time.time() < fault_from:
                return False
            if delay:
                time.sleep(delay)
            if rng.random() < error_rate:
                self._send(500, {"error": "internal error (demo fault)"})
                return True
            return False

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/healthz/ready":
                self._send(200, {"ready": True, "version": version})
                return
            if self._faulty():
                return
            if url.path.startswith("/orders/"):
                try:
                    order = orders.get(int(url.path.rsplit("/", 1)[1]))
                except ValueError:
                    self._send(400, {"error": "order id is a number"})
                    return
                self._send(200, order) if order else self._send(404, {"error": "no such order"})
            elif url.path == "/orders":
                user = parse_qs(url.query).get("user", [self.headers.get("X-User-Id", "")])[0]
                self._send(200, {"orders": orders.for_user(user), "version": version})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if urlsplit(self.path).path != "/orders":
                self._send(404, {"error": "not found"})
                return
            if self._faulty():
                return
            try:
                body = json.loads(raw or b"{}")
                order = orders.create(self.headers.get("X-User-Id", "anonymous"), str(body.get("sku", "S1")),
                                      int(body.get("qty", 1)))
            except (ValueError, TypeError, AttributeError):
                self._send(400, {"error": "expected JSON {sku, qty}"})
                return
            self._send(201, order)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="switchover demo orders service")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--version", default="v1")
    parser.add_argument("--db", required=True)
    parser.add_argument("--bad", action="store_true", help="5%% 500s and 30 ms slower")
    parser.add_argument("--error-rate", type=float, default=None, help="share of requests answered 500")
    parser.add_argument("--delay-ms", type=float, default=None, help="added to every answer")
    parser.add_argument("--fault-after", type=float, default=0.0, help="seconds of good behaviour before the fault")
    parser.add_argument("--fault-at", type=float, default=None, help="epoch seconds when the fault starts")
    args = parser.parse_args()
    error_rate = args.error_rate if args.error_rate is not None else (0.05 if args.bad else 0.0)
    delay = (args.delay_ms if args.delay_ms is not None else (30.0 if args.bad else 0.0)) / 1000.0
    fault_after = args.fault_after if args.fault_at is None else max(0.0, args.fault_at - time.time())
    handler = make_handler(Orders(args.db), args.version, error_rate, delay, fault_after)
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
