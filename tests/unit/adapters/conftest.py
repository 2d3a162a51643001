"""Unit tests of the adapters area: pure rendering and parsing, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from switchover.plan import Plan, plan_from_dict


def make_plan(**extra: Any) -> Plan:
    base: dict[str, Any] = {"name": "orders", "stable": {"url": "http://127.0.0.1:8081"},
                            "candidate": {"url": "http://127.0.0.1:8082"}}
    base.update(extra)
    return plan_from_dict(base)


@pytest.fixture
def plan_factory() -> Any:
    return make_plan
