"""Diffs per second for typical 2 KB and 50 KB JSON answers.

    .venv/bin/python benchmarks/parity/diff_rate.py [--seconds 0.4] [--rounds 7]

Each case diffs a stable answer against a candidate answer that differs in a timestamp (ignored)
and one business field, through the path the sink takes for every pair (``Comparer.compare``:
decode, parse, walk; samples with redaction are built for a few answers per flush only). The reference measured in the same run is ``json.loads`` of the two
bodies: the ratio says what the diff costs on top of only parsing the answers. "keys-only" is the
proxy's cheap path (``QuickDiff.keys``: the same walk, recording only what the counts need);
"raw/s" the same from the pair as the proxy holds it (``QuickDiff.keys_raw``: header bytes, nothing
decoded beyond the headers compared), which is what the proxy's loop runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from switchover.parity.compare import Comparer, Request
from switchover.parity.quick import QuickDiff
from switchover.plan.parity import Parity
from switchover.traffic.proxy.hooks import Answer, MirrorPair, raw_from_pair

JSON = (("content-type", "application/json"), ("server", "nginx/1.22.1"), ("date", "Thu, 26 Nov 2026 15:00:00 GMT"),
        ("content-length", "2117"), ("etag", '"6745f-7ff"'), ("connection", "keep-alive"))


def order(n_items: int, *, generated_at: str, total: int) -> dict[str, Any]:
    return {
        "id": 123456, "status": "paid", "currency": "EUR", "total_cents": total, "generated_at": generated_at,
        "customer": {"id": "c-77", "name": "Ada Lovelace", "email": "ada@example.com", "tier": "gold"},
        "shipping": {"street": "1 Main St", "city": "Springfield", "zip": "12345", "country": "DE"},
        "items": [{"sku": f"SKU-{i:05d}", "name": f"Item number {i}", "qty": 1 + i % 3, "price_cents": 199 + i,
                   "tags": ["a", "b"], "etag": f"W/\"{i:08x}\""} for i in range(n_items)],
    }


def body(n_items: int, **kw: Any) -> bytes:
    return json.dumps(order(n_items, **kw)).encode()


def rate(fn: Callable[[], object], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(20):
            fn()
        n += 20
        spent = time.perf_counter() - start
        if spent >= seconds:
            return n / spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.4, help="per measurement")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    comparer = Comparer(Parity(ignore=["$.generated_at", "$.items[*].etag"]))
    quick = QuickDiff(comparer, max_bytes=1 << 30)
    request = Request("GET", "/orders/123456", (("authorization", "Bearer x"),))
    print(f"{'case':<10} {'bytes':>7} {'diffs/s':>9} {'parse-only/s':>13} {'diff/parse':>10} {'keys-only/s':>12} "
          f"{'keys/parse':>10} {'raw/s':>9}")
    for label, n_items in (("2 KB", 12), ("50 KB", 330)):
        stable = Answer(200, JSON, body(n_items, generated_at="2026-01-01T00:00:00Z", total=1000), 0.001)
        candidate = Answer(200, JSON, body(n_items, generated_at="2026-01-01T00:00:01Z", total=1001), 0.001)
        diffs = comparer.compare(request, stable, candidate, None, 0.0).differences
        assert [d.field for d in diffs] == ["$.total_cents"], diffs
        # Interleaved short rounds, medians: the machine is shared and noisy.
        assert quick.keys(stable, candidate) == ("$.total_cents|changed",)
        raw = raw_from_pair(MirrorPair("GET", request.path, request.headers, b"", stable, candidate, 0.0))
        assert quick.keys_raw(raw) == ("$.total_cents|changed",)
        ds, ps, qs, rs = [], [], [], []
        for _ in range(args.rounds):
            ds.append(rate(lambda s=stable, c=candidate: comparer.compare(request, s, c, None, 0.0), args.seconds))
            ps.append(rate(lambda s=stable, c=candidate: (json.loads(s.body), json.loads(c.body)), args.seconds))
            qs.append(rate(lambda s=stable, c=candidate: quick.keys(s, c), args.seconds))
            rs.append(rate(lambda r=raw: quick.keys_raw(r), args.seconds))
        d, p, q, r = statistics.median(ds), statistics.median(ps), statistics.median(qs), statistics.median(rs)
        ratio = statistics.median(x / y for x, y in zip(ds, ps, strict=True))
        q_ratio = statistics.median(x / y for x, y in zip(qs, ps, strict=True))
        print(f"{label:<10} {len(stable.body):>7} {d:>9.0f} {p:>13.0f} {ratio:>10.2f} {q:>12.0f} {q_ratio:>10.2f} {r:>9.0f}")


if __name__ == "__main__":
    main()
