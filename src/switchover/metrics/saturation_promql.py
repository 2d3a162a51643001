"""Saturation from a PromQL query (``metrics.saturation.query``), for any metrics provider.

The Prometheus provider reads it with each observation; with the built-in provider the controller
can call :func:`read_saturation_query` (``metrics.prometheus.url``, default ``http://127.0.0.1:9090``)
beside ``metrics.saturation.read_saturation`` for the ``command`` source. ``None`` when there is no
query, no data, or Prometheus does not answer: inconclusive for the saturation gate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchover.metrics.base import Window
from switchover.metrics.prometheus import PrometheusProvider, QueryError

if TYPE_CHECKING:
    from switchover.plan import Plan


def read_saturation_query(plan: Plan, role: str, window: Window) -> float | None:
    source = plan.metrics.saturation
    if source is None or source.query is None:
        return None
    provider = PrometheusProvider(plan)
    try:
        value = provider.scalar_query(source.query, role, window)
    except (ConnectionError, QueryError):
        return None
    finally:
        provider.close()
    return value if value is not None and 0.0 <= value <= 1.0 else None
