"""A bounded load generator: GETs and POSTs with sticky user ids (``X-User-Id``), at a steady rate,
over keep-alive connections. Stops by itself after ``duration`` seconds or ``max_requests``."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    sent: dict[str, int] = field(default_factory=lambda: {"GET": 0, "POST": 0})
    failed: dict[str, int] = field(default_factory=lambda: {"GET": 0, "POST": 0})
    failures: list[tuple[float, str, str]] = field(default_factory=list)  # (at, method, what)
    by_version: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    @property
    def total_failed(self) -> int:
        return sum(self.failed.values())


class LoadGenerator:
    def __init__(self, host: str, port: int, *, rate: float = 200.0, duration: float = 120.0, workers: int = 4,
                 users: int = 500, post_share: float = 0.2, max_requests: int = 200_000, seed: int = 0) -> None:
        self.host, self.port = host, port
        self.rate, self.duration, self.workers = rate, duration, workers
        self.users, self.post_share, self.max_requests = users, post_share, max_requests
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._seed = seed
        self._orders: list[int] = []

    def start(self) -> None:
        self._deadline = time.monotonic() + self.duration
        for i in range(self.workers):
            thread = threading.Thread(target=self._worker, args=(i,), name=f"load-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        return self.result

    def _record(self, method: str, status: int | None, what: str, version: str | None, order: int | None) -> None:
        with self._lock:
            self.result.sent[method] += 1
            if status is None or status >= 500:
                self.result.failed[method] += 1
                self.result.failures.append((time.time(), method, what))
            if version:
                self.result.by_version[version] = self.result.by_version.get(version, 0) + 1
            if order is not None and len(self._orders) < 5000:
                self._orders.append(order)

    def _worker(self, index: int) -> None:
        rng = random.Random(self._seed * 1000 + index)
        period = self.workers / self.rate
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < self._deadline and self.result.total < self.max_requests:
            user = f"user-{rng.randrange(self.users)}"
            headers = {"X-User-Id": user}
            if rng.random() < self.post_share:
                method, path = "POST", "/orders"
                body: bytes | None = json.dumps({"sku": f"S{rng.randrange(50)}", "qty": rng.randrange(1, 4)}).encode()
                headers["Content-Type"] = "application/json"
            else:
                method, body = "GET", None
                with self._lock:
                    known = rng.choice(self._orders) if self._orders and rng.random() < 0.5 else None
                path = f"/orders/{known}" if known else f"/orders?user={user}"
            status: int | None = None
            version = None
            order = None
            what = ""
            try:
                try:
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                except http.client.RemoteDisconnected:
                    # The server closed an idle keep-alive connection before reading this request:
                    # nothing was processed; browsers and urllib3 send it again on a new connection.
                    conn.close()
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                data = response.read()
                status = response.status
                version = response.getheader("X-Version")
                what = f"HTTP {status}"
                if method == "POST" and status == 201:
                    order = int(json.loads(data)["id"])
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                what = f"{exc.__class__.__name__}"
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self._record(method, status, what, version, order)
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()  # behind: do not burst to catch up
        conn.close()
