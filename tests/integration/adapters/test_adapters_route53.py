"""The Route 53 router against moto's server (a real HTTP endpoint speaking the Route 53 API)."""

from __future__ import annotations

import boto3
import pytest

from switchover.errors import UserError
from switchover.plan import Plan, plan_from_dict
from switchover.traffic.base import router_for
from switchover.traffic.route53 import Route53Router


def route53_plan(moto_url: str, zone_id: str) -> Plan:
    return plan_from_dict({
        "name": "orders", "stable": {"url": "http://127.0.0.1:8081"}, "candidate": {"url": "http://127.0.0.1:8082"},
        "traffic": {"driver": "route53", "route53": {
            "zone_id": zone_id, "record_name": "api.sw-adapters.example.com", "stable_value": "192.0.2.1",
            "candidate_value": "192.0.2.2", "endpoint_url": moto_url}},
    })


@pytest.fixture
def zone(moto_url: str) -> tuple[object, str]:
    client = boto3.client("route53", endpoint_url=moto_url, region_name="us-east-1")
    answer = client.create_hosted_zone(Name="sw-adapters.example.com", CallerReference=str(id(client)))
    return client, answer["HostedZone"]["Id"].split("/")[-1]


def weights(client: object, zone_id: str) -> dict[str, tuple[int, int, str]]:
    records = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]  # type: ignore[attr-defined]
    return {r["SetIdentifier"]: (r["Weight"], r["TTL"], r["ResourceRecords"][0]["Value"])
            for r in records if "SetIdentifier" in r}


def test_weighted_records_move_and_read_back(moto_url: str, zone: tuple[object, str]) -> None:
    client, zone_id = zone
    router = router_for(route53_plan(moto_url, zone_id))
    assert isinstance(router, Route53Router)
    assert router.is_online()
    router.sync(route53_plan(moto_url, zone_id))
    assert weights(client, zone_id) == {"orders-stable": (255, 60, "192.0.2.1"),
                                        "orders-candidate": (0, 60, "192.0.2.2")}
    assert router.get_routes() == (0, 0)
    router.set_routes(10, 0)
    assert weights(client, zone_id)["orders-candidate"][0] == 26
    assert weights(client, zone_id)["orders-stable"][0] == 229
    assert router.get_routes() == (10, 0)
    router.set_routes(100, 0)
    assert router.get_routes() == (100, 0)
    router.sync(route53_plan(moto_url, zone_id))  # idempotent: sync does not move users back
    assert router.get_routes() == (100, 0)


def test_mirror_is_refused_and_nothing_changes(moto_url: str, zone: tuple[object, str]) -> None:
    _client, zone_id = zone
    router = router_for(route53_plan(moto_url, zone_id))
    router.sync(route53_plan(moto_url, zone_id))
    router.set_routes(25, 0)
    with pytest.raises(UserError, match=r"cannot mirror.*parity replay"):
        router.set_routes(50, 10)
    assert router.get_routes() == (25, 0)


def test_unknown_zone_is_a_clear_error(moto_url: str) -> None:
    router = router_for(route53_plan(moto_url, "ZNOSUCHZONE"))
    assert not router.is_online()
    with pytest.raises(UserError, match="ZNOSUCHZONE"):
        router.set_routes(10, 0)
