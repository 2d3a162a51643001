"""The journey gate against two real HTTP services: login -> checkout with a captured token."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from switchover.analysis.verdict import Outcome
from switchover.plan import Plan, plan_from_dict
from switchover.probes.journeys import JourneyGate
from tests.integration.adapters.conftest import Service


def shop(svc: Service, *, broken_checkout: bool = False) -> None:
    def login(_h: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        user = json.loads(body)["user"]
        return 200, {"Content-Type": "application/json"}, json.dumps({"token": f"tok-{user}"}).encode()

    def checkout(h: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if h.headers.get("Authorization") != "Bearer tok-synthetic":
            return 401, {}, b"who are you"
        if broken_checkout:
            return 500, {}, b"boom"
        sku = json.loads(body)["sku"]
        return 201, {"Content-Type": "application/json", "Location": "/orders/42"}, json.dumps(
            {"id": 42, "sku": sku, "status": "paid"}).encode()

    svc.routes[("POST", "/login")] = login
    svc.routes[("POST", "/orders")] = checkout


def journey_plan(stable: Service, candidate: Service, **checkout_expect: Any) -> Plan:
    return plan_from_dict({
        "name": "sw_adapters_orders", "stable": {"url": stable.url}, "candidate": {"url": candidate.url},
        "journeys": [{"name": "checkout", "every": "60s", "steps": [
            {"method": "POST", "path": "/login", "json": {"user": "synthetic"}, "capture": {"token": "$.token"}},
            {"method": "POST", "path": "/orders", "headers": {"Authorization": "Bearer {{token}}"},
             "json": {"sku": "S1"}, "capture": {"order": "header:Location"},
             "expect": {"status": 201, "json": {"status": "paid"}, **checkout_expect}},
            {"method": "GET", "path": "{{order}}"},
        ]}],
    })


def test_journey_passes_on_both_and_runs_when_due(services: tuple[Service, Service]) -> None:
    stable, candidate = services
    shop(stable)
    shop(candidate)
    gate = JourneyGate(journey_plan(stable, candidate))
    verdicts = gate.evaluate(1000.0)
    assert [(v.gate, v.outcome) for v in verdicts] == [("journey.checkout", Outcome.PASS)], verdicts
    assert candidate.hits == ["POST /login", "POST /orders", "GET /orders/42"]
    assert stable.hits == candidate.hits
    assert [r.role for r in gate.last_results] == ["canary", "stable"]
    assert gate.evaluate(1030.0) == []  # not due: every 60s
    assert len(gate.evaluate(1060.0)) == 1
    assert len(candidate.hits) == 6


def test_broken_candidate_fails_the_gate_with_the_step(services: tuple[Service, Service]) -> None:
    stable, candidate = services
    shop(stable)
    shop(candidate, broken_checkout=True)
    [verdict] = JourneyGate(journey_plan(stable, candidate)).evaluate(0.0)
    assert verdict.outcome is Outcome.FAIL
    assert "step 2 (POST /orders): answered 500, expected 201" in verdict.reason
    assert "passes on stable" in verdict.reason
    assert verdict.numbers["candidate_ok"] == 0.0 and verdict.numbers["stable_ok"] == 1.0
    assert "GET /orders/42" not in candidate.hits  # the journey stops at the broken step


def test_a_journey_broken_everywhere_says_so(services: tuple[Service, Service]) -> None:
    stable, candidate = services
    shop(stable)
    shop(candidate)
    [verdict] = JourneyGate(journey_plan(stable, candidate, body_contains="refunded")).evaluate(0.0)
    assert verdict.outcome is Outcome.FAIL
    assert "breaks on stable too" in verdict.reason and "body lacks 'refunded'" in verdict.reason
