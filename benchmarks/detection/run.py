"""Detection benchmark: how fast a bad candidate is rolled back, and what users saw meanwhile.

One command: ``.venv/bin/python benchmarks/detection/run.py [--runs N]``.

Set-up: the demo's orders service as v1 and v2 behind the real `switchover proxy`, steady load of
GETs and POSTs with sticky user ids, a plan with interval 1 s and failure_limit 3, the candidate
at 10%. At a known instant v2 starts answering 10% of requests with 500. Measured from outside:
the time from the fault's start to the proxy reporting weight 0 (polled at 20 Hz), and the failed
user GETs and POSTs in that window. Ratios against references from the same run: detection time
over the analysis floor (failure_limit x interval), and failed POSTs over the candidate's expected
share (POSTs in the window x weight x error rate).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from switchover.demo.load import LoadGenerator
from switchover.demo.runner import PLAN, stack
from switchover.engine.controller import Controller, metrics_for
from switchover.engine.store import StateStore
from switchover.plan import load_plan
from switchover.traffic.base import router_for

INTERVAL, FAILURE_LIMIT, WEIGHT, ERROR_RATE, RATE = 1.0, 3, 10, 0.10, 300.0

BENCH_PLAN = PLAN.replace("failure_limit: 3", f"failure_limit: {FAILURE_LIMIT}").replace(
    "steps:\n  - canary: {{weight: 10, hold: {hold}}}\n  - canary: {{weight: 25, hold: {hold}}}\n"
    "  - canary: {{weight: 50, hold: {hold}}}\n  - canary: {{weight: 100, hold: {hold}}}\n",
    f"steps:\n  - canary: {{{{weight: {WEIGHT}, hold: 10m}}}}\n")


def one_run(workdir: Path, lead: float = 8.0) -> dict[str, float]:
    fault_at = time.time() + lead + 6.0  # services and proxy start first (a few seconds)
    with stack(workdir, plan_template=BENCH_PLAN, v2_args=("--error-rate", str(ERROR_RATE), "--fault-at", str(fault_at)),
               min_requests=15) as s:
        plan = load_plan(s.plan_path)
        load = LoadGenerator("127.0.0.1", s.ports["listen"], rate=RATE, duration=90, workers=6)
        zero_at: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            seen_weight = False
            while not stop.is_set():
                try:
                    weight = int(httpx.get(f"http://127.0.0.1:{s.ports['admin']}/api/v1/split", timeout=1).json()
                                 ["candidate_weight"])
                except (httpx.HTTPError, ValueError, KeyError):
                    weight = -1
                seen_weight = seen_weight or weight == WEIGHT
                if seen_weight and weight == 0 and time.time() > fault_at:
                    zero_at.append(time.time())
                    return
                time.sleep(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        load.start()
        poller.start()
        store = StateStore(plan.state_url(), plan.base_dir())
        controller = Controller(plan, store, router_for(plan), metrics_for(plan))
        outcome = controller.run()
        judged = [(e.at - fault_at, e.payload["outcome"], e.payload["reason"]) for e in store.events()
                  if e.kind == "gate_evaluated"]
        stop.set()
        poller.join(5)
        result = load.stop()
    if outcome != "rolled_back" or not zero_at:
        raise SystemExit(f"benchmark run did not roll back (outcome {outcome})")
    end = zero_at[0]
    failed = {"GET": 0, "POST": 0}
    for at, method, _what in result.failures:
        if fault_at <= at <= end:
            failed[method] += 1
    seconds = end - fault_at
    post_share = result.sent["POST"] / max(1, result.total)
    posts_in_window = RATE * seconds * post_share
    expected_posts = posts_in_window * WEIGHT / 100 * ERROR_RATE
    early = [j for j in judged if j[0] < 0 and j[1] == "fail"]
    for offset, _outcome, reason in early:
        print(f"  failing interval before the fault ({offset:+.2f}s): {reason}")
    return {"detect_s": seconds, "failed_before_fault": len(early), "failed_get": failed["GET"], "failed_post": failed["POST"],
            "expected_post": expected_posts, "posts_in_window": posts_in_window}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="sw-controller-bench-") as tmp:
            row = one_run(Path(tmp))
        rows.append(row)
        print(f"run {i + 1}: fault -> weight 0 in {row['detect_s']:.2f}s; failed GET {row['failed_get']}, "
              f"failed POST {row['failed_post']} (candidate's expected share {row['expected_post']:.1f} "
              f"of {row['posts_in_window']:.0f} POSTs)", flush=True)
    floor = FAILURE_LIMIT * INTERVAL
    median = statistics.median(r["detect_s"] for r in rows)
    posts = sum(r["failed_post"] for r in rows)
    expected = sum(r["expected_post"] for r in rows)
    print(f"\nmedian fault -> weight 0: {median:.2f}s (target <= 5s); "
          f"ratio to the analysis floor failure_limit x interval = {floor:.0f}s: x{median / floor:.2f}")
    print(f"failed user GETs: {sum(r['failed_get'] for r in rows)} (target 0)")
    print(f"failed user POSTs: {posts}, candidate's expected share {expected:.1f}: ratio x{posts / expected:.2f}"
          if expected else f"failed user POSTs: {posts}")
    sys.exit(0)


if __name__ == "__main__":
    main()
