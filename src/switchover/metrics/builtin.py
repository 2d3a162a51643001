"""The ``builtin`` metrics provider: windows from the built-in proxy's cumulative counters.

``observe(role, window)`` takes a snapshot of ``/api/v1/stats`` at the window's end (one per end,
shared by both roles so stable and canary see the same window) and subtracts the snapshot taken at
its start. The first call for a new start only records the snapshot (nothing to subtract yet). A
proxy restart (``started_at`` changed, or a counter went down) leaves no valid delta: ``None``,
inconclusive. An unreachable admin API is ``None`` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from switchover.errors import UserError
from switchover.metrics.base import Histogram, Observation, Window
from switchover.traffic.proxy.client import AdminClient

if TYPE_CHECKING:
    from switchover.plan import Plan


@dataclass(frozen=True)
class RoleCounters:
    requests: int
    errors: int
    histogram: Histogram


@dataclass(frozen=True)
class Snapshot:
    started_at: float
    roles: dict[str, RoleCounters]
    ejected: bool


def parse_stats(stats: dict[str, Any]) -> Snapshot:
    """The admin API's ``/api/v1/stats`` as typed counters (raises ValueError/KeyError when malformed)."""
    bounds = tuple(float(b) for b in stats["latency_bounds"])
    roles = {}
    for role, body in stats["roles"].items():
        roles[role] = RoleCounters(
            int(body["requests"]), int(body["errors"]),
            Histogram(bounds, tuple(int(c) for c in body["latency_counts"]), float(body.get("latency_sum", 0.0))))
    candidate = stats.get("candidate") or {}
    return Snapshot(float(stats["started_at"]), roles, bool(candidate.get("ejected", False)))


def delta(role: str, window: Window, earlier: Snapshot, later: Snapshot) -> Observation | None:
    """The role's observation between two snapshots; None when they do not belong to one proxy life."""
    if earlier.started_at != later.started_at:
        return None
    after = later.roles.get(role)
    before = earlier.roles.get(role) or (
        RoleCounters(0, 0, Histogram(after.histogram.bounds, (0,) * len(after.histogram.counts))) if after else None)
    if after is None or before is None:
        return None
    if after.requests < before.requests or after.errors < before.errors or \
            any(a < b for a, b in zip(after.histogram.counts, before.histogram.counts, strict=False)):
        return None
    if after.histogram.bounds != before.histogram.bounds:
        return None
    return Observation(role=role, window=window, requests=after.requests - before.requests,
                       errors=after.errors - before.errors, histogram=after.histogram.minus(before.histogram),
                       ejected=later.ejected if role == "canary" else False, source="builtin")


class BuiltinProvider:
    name = "builtin"

    def __init__(self, plan: Plan) -> None:
        self.admin = AdminClient(plan.traffic.admin, plan.traffic.admin_token)
        self._snapshots: dict[float, Snapshot | None] = {}

    def _snapshot_at(self, at: float) -> Snapshot | None:
        if at not in self._snapshots:
            try:
                self._snapshots[at] = parse_stats(self.admin.request("GET", "/api/v1/stats"))
            except (UserError, KeyError, TypeError, ValueError):
                self._snapshots[at] = None
            # Keep the few most recent: windows are consecutive.
            for old in sorted(self._snapshots)[:-8]:
                del self._snapshots[old]
        return self._snapshots[at]

    def observe(self, role: str, window: Window) -> Observation | None:
        if window.start not in self._snapshots:
            # No snapshot at the window's start: record one now; the next window will have a delta.
            self._snapshot_at(window.end)
            return None
        earlier = self._snapshots[window.start]
        later = self._snapshot_at(window.end)
        if earlier is None or later is None:
            return None
        return delta(role, window, earlier, later)

    def prime(self, at: float) -> None:
        """Record the snapshot a first window starting at ``at`` will subtract."""
        self._snapshot_at(at)

    def is_online(self) -> bool:
        return self.admin.healthy()
