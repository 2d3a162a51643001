"""Exports: parse what we write and check the fields a user of each tool relies on."""

from __future__ import annotations

import json

import pytest
import yaml

from switchover.errors import UserError
from switchover.export.argo import export_argo
from switchover.export.grafana import export_grafana
from switchover.export.istio import export_istio
from switchover.export.terraform import export_terraform_route53
from tests.unit.adapters.conftest import make_plan


def example_plan_dict() -> dict[str, object]:
    return {"name": "orders", "stable": {"url": "http://127.0.0.1:8081"}, "candidate": {"url": "http://127.0.0.1:8082"},
            "metrics": {"provider": "prometheus", "prometheus": {"url": "http://prometheus:9090"}},
            "analysis": {"interval": "30s", "failure_limit": 3, "inconclusive_limit": 6},
            "traffic": {"driver": "istio", "istio": {"host": "orders", "namespace": "shop"}},
            "steps": [{"preflight": {}}, {"canary": {"weight": 10, "hold": "5m"}}, {"canary": {"weight": 50, "hold": "1h"}},
                      {"pause": {}}, {"canary": {"weight": 100, "hold": "30m"}}, {"hold": {"duration": "24h"}}]}


def test_argo_rollout_steps_and_analysis() -> None:
    docs = list(yaml.safe_load_all(export_argo(make_plan(**{k: v for k, v in example_plan_dict().items()
                                                            if k not in ("name", "stable", "candidate")}))))
    rollout, *templates = docs
    assert rollout["kind"] == "Rollout" and rollout["apiVersion"] == "argoproj.io/v1alpha1"
    assert rollout["spec"]["workloadRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "orders"}
    canary = rollout["spec"]["strategy"]["canary"]
    assert canary["steps"] == [{"setWeight": 10}, {"pause": {"duration": "5m"}}, {"setWeight": 50},
                               {"pause": {"duration": "1h"}}, {"pause": {}}, {"setWeight": 100},
                               {"pause": {"duration": "30m"}}, {"pause": {"duration": "24h"}}]
    assert canary["trafficRouting"]["istio"]["destinationRule"]["canarySubsetName"] == "candidate"
    names = [t["metadata"]["name"] for t in templates]
    assert [t["templateName"] for t in canary["analysis"]["templates"]] == names
    assert names == ["orders-error-rate", "orders-p95", "orders-p95-vs-stable"]
    error_rate = templates[0]["spec"]["metrics"][0]
    assert error_rate["interval"] == "30s" and error_rate["failureLimit"] == 2 and error_rate["inconclusiveLimit"] == 5
    assert error_rate["successCondition"] == "result[0] < 0.005"
    assert error_rate["provider"]["prometheus"]["address"] == "http://prometheus:9090"
    assert 'app="orders",role="canary"' in error_rate["provider"]["prometheus"]["query"]
    assert "[30s]" in error_rate["provider"]["prometheus"]["query"]
    assert templates[1]["spec"]["metrics"][0]["successCondition"] == "result[0] < 0.2"
    assert 'role="stable"' in templates[2]["spec"]["metrics"][0]["provider"]["prometheus"]["query"]


def test_argo_lists_what_it_cannot_express() -> None:
    text = export_argo(make_plan(steps=[{"webhook": {"url": "http://x"}}, {"backfill": {}}, {"canary": {"weight": 10}}]))
    assert text.splitlines()[1] == "# Not expressible in a Rollout, run them with switchover: webhook, backfill"


def test_istio_export_and_missing_section() -> None:
    plan = make_plan(traffic={"driver": "istio", "istio": {"host": "orders"}})
    vs, dr = yaml.safe_load_all(export_istio(plan, 10, 20))
    assert vs["kind"] == "VirtualService" and dr["kind"] == "DestinationRule"
    assert vs["spec"]["http"][0]["mirrorPercentage"]["value"] == 20.0
    with pytest.raises(UserError, match=r"traffic\.istio"):
        export_istio(make_plan())


def test_terraform_route53_records() -> None:
    plan = make_plan(traffic={"driver": "route53", "route53": {
        "zone_id": "Z1", "record_name": "api.example.com", "stable_value": "192.0.2.1", "candidate_value": "192.0.2.2"}})
    doc = json.loads(export_terraform_route53(plan, 10))
    records = doc["resource"]["aws_route53_record"]
    assert records["orders_stable"]["weighted_routing_policy"] == {"weight": 229}
    assert records["orders_candidate"]["weighted_routing_policy"] == {"weight": 26}
    assert records["orders_candidate"]["set_identifier"] == "orders-candidate"
    assert {r["ttl"] for r in records.values()} == {60}
    with pytest.raises(UserError, match=r"traffic\.route53"):
        export_terraform_route53(make_plan())


def test_grafana_golden_signals_by_role() -> None:
    plan = make_plan(metrics={"saturation": {"query": 'max(cpu{app="{{app}}",role="{{role}}"})'}})
    board = json.loads(export_grafana(plan))
    titles = [p["title"] for p in board["panels"]]
    assert titles[0].startswith("Traffic") and titles[1].startswith("Errors") and titles[2].startswith("Latency")
    assert titles[-1].startswith("Saturation")
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert all('app="orders"' in e for e in exprs)
    assert any("sum by (le, role)" in e for e in exprs)
    assert 'role="canary"' in exprs[-1]
    assert board["panels"][1]["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 0.005
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids)
