"""The controller API's ``/metrics``: run state and what steps export, in the Prometheus text format."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from switchover.engine.state import RunState


class Gauges:
    """Thread-safe gauges set by steps (``ctx.export_metric``) and by the controller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def set(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        key = (name, tuple(sorted((labels or {}).items())))
        with self._lock:
            self._values[key] = float(value)

    def items(self) -> list[tuple[str, dict[str, str], float]]:
        with self._lock:
            return [(name, dict(labels), value) for (name, labels), value in sorted(self._values.items())]


class _RunCollector(Collector):
    def __init__(self, plan: str, state: RunState, gauges: Gauges) -> None:
        self.plan, self.state, self.gauges = plan, state, gauges

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.state
        labels = ["plan"]
        for name, doc, value in (
            ("switchover_run_weight_percent", "candidate weight committed by the run", s.weight),
            ("switchover_run_mirror_percent", "mirror percentage committed by the run", s.mirror),
            ("switchover_run_step_index", "index of the current step (0-based, -1 before the first)", s.step_index),
            ("switchover_run_paused", "1 while the run is paused", int(s.paused)),
            ("switchover_run_rolled_back", "1 once a rollback is recorded", int(s.rollback_at is not None)),
            ("switchover_run_finished", "1 once the run finished", int(s.finished)),
        ):
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric([self.plan], float(value))
            yield family
        outcomes = GaugeMetricFamily("switchover_run_intervals", "evaluated intervals of the current step by outcome",
                                     labels=["plan", "outcome"])
        for outcome in ("pass", "fail", "inconclusive"):
            outcomes.add_metric([self.plan, outcome], float(sum(1 for i in s.intervals if str(i.outcome) == outcome)))
        yield outcomes
        gate = GaugeMetricFamily("switchover_gate_outcome",
                                 "last verdict per gate: 1 pass, 0 fail, -1 inconclusive", labels=["plan", "gate"])
        for verdict in s.last_verdicts:
            code: float = {"pass": 1.0, "fail": 0.0}.get(str(verdict.get("outcome")), -1.0)
            gate.add_metric([self.plan, str(verdict.get("gate"))], code)
        yield gate
        families: dict[str, GaugeMetricFamily] = {}
        for name, label_map, gauge in self.gauges.items():
            keys = ["plan", *sorted(label_map)]
            if name not in families:
                families[name] = GaugeMetricFamily(name, "exported by a step", labels=keys)
            families[name].add_metric([self.plan, *(label_map[k] for k in sorted(label_map))], gauge)
        yield from families.values()


def render(plan: str, state: RunState, gauges: Gauges) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RunCollector(plan, state, gauges))
    return generate_latest(registry)
