"""The parity report: the budget verdict over the store's counts, with counters and recent samples."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from switchover.parity.budget import BudgetResult, Thresholds, evaluate
from switchover.parity.store import MismatchStore
from switchover.plan.parity import Parity

if TYPE_CHECKING:
    from switchover.plan import Plan

DEFAULT_BUDGET = 0.001  # DESIGN.md defaults: shadow mismatch budget 0.1%


def thresholds(parity: Parity) -> Thresholds:
    return Thresholds(parity.noise_relative, parity.noise_absolute)


def plan_budget(plan: Plan) -> tuple[float, int]:
    """(budget, min_compared) of the plan's first shadow step, else the defaults."""
    for step in plan.step_list():
        if getattr(step, "kind", "") == "shadow":
            return float(getattr(step, "budget")), int(getattr(step, "min_compared"))  # noqa: B009
    return DEFAULT_BUDGET, 1


def build_report(store: MismatchStore, parity: Parity, budget: float, min_compared: int = 1,
                 since_mark: int | None = None, samples: int = 5,
                 extra: dict[str, Any] | None = None) -> BudgetResult:
    tally = store.tally() if since_mark is None else store.tally_since(since_mark)
    result = evaluate(tally, thresholds(parity), budget, min_compared)
    info: dict[str, Any] = {"store": str(store.path), "counters": store.counters(),
                            "samples": store.samples(samples)}
    info.update(extra or {})
    return BudgetResult(result.compared, result.regressed, result.budget, result.min_compared,
                        result.endpoints, info)
