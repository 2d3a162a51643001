"""Pure rendering and parsing of the routers: what a user reads in the files and objects we write."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchover.errors import UserError
from switchover.traffic.command import parse_weight_output, substitute
from switchover.traffic.istio import (
    render_destination_rule,
    render_virtual_service,
    routes_from_virtual_service,
)
from switchover.traffic.nginx import parse_routes, render_config
from switchover.traffic.route53 import from_route53, to_route53
from tests.unit.adapters.conftest import make_plan

NGINX = {"driver": "nginx", "nginx": {"config_path": "/tmp/x.conf", "mirror_url": "http://127.0.0.1:9/"}}


@given(st.integers(0, 100), st.integers(0, 100))
def test_nginx_weight_reads_back_from_the_rendered_file(weight: int, mirror: int) -> None:
    plan = make_plan(traffic=NGINX)
    assert plan.traffic.nginx is not None
    routes = parse_routes(render_config(plan, plan.traffic.nginx, weight, mirror), plan.name)
    assert (routes.weight, routes.mirror_percent) == (weight, mirror)


def test_nginx_sticky_key_and_candidate_listed_first() -> None:
    plan = make_plan(traffic={**NGINX, "sticky": {"header": "X-User-Id"}})
    assert plan.traffic.nginx is not None
    text = render_config(plan, plan.traffic.nginx, 10, 0)
    assert "map $http_x_user_id $switchover_orders_key" in text
    split = text.split("$switchover_orders_upstream {")[1].split("}")[0]
    # the candidate range comes first, so raising the weight only moves users to the candidate
    assert split.split(";")[0].strip() == "10% switchover_orders_candidate"
    assert "server 127.0.0.1:8082 max_fails=5 fail_timeout=30s;" in text and "listen 127.0.0.1:8080;" in text
    assert "server 127.0.0.1:8081 backup;" in text  # traffic.retry: stable answers what failed on the candidate


def test_nginx_hand_edits_and_foreign_files_are_refused() -> None:
    plan = make_plan(traffic=NGINX)
    assert plan.traffic.nginx is not None
    text = render_config(plan, plan.traffic.nginx, 10, 0)
    with pytest.raises(UserError, match="edited by hand"):
        parse_routes(text.replace("10% switchover_orders_candidate", "40% switchover_orders_candidate"), "orders")
    with pytest.raises(UserError, match="written by switchover"):
        parse_routes("server { listen 80; }", "orders")


def test_nginx_mirrors_to_parity_serve_by_default() -> None:
    plan = make_plan(traffic={"driver": "nginx", "nginx": {}}, parity={"listen": "127.0.0.1:9955"})
    assert plan.traffic.nginx is not None
    text = render_config(plan, plan.traffic.nginx, 0, 20)
    assert "proxy_pass http://127.0.0.1:9955$request_uri;" in text
    assert "20% 1;" in text


@given(st.integers(0, 100))
def test_route53_scale_round_trips(weight: int) -> None:
    stable, candidate = to_route53(weight)
    assert stable + candidate == 255 and 0 <= candidate <= 255
    assert from_route53(stable, candidate) == weight


def test_istio_virtual_service_90_10_mirror_20() -> None:
    plan = make_plan(traffic={"driver": "istio", "istio": {"host": "orders", "namespace": "shop"}})
    vs = render_virtual_service(plan, 10, 20)
    http = vs["spec"]["http"][0]
    assert [(r["destination"]["subset"], r["weight"]) for r in http["route"]] == [("stable", 90), ("candidate", 10)]
    assert http["mirrorPercentage"] == {"value": 20.0}
    assert vs["metadata"] == {"name": "orders", "namespace": "shop", "labels": {"app.kubernetes.io/managed-by": "switchover"}}
    assert routes_from_virtual_service(vs, plan) == (10, 20)
    dr = render_destination_rule(plan)
    assert dr["spec"]["trafficPolicy"]["outlierDetection"]["baseEjectionTime"] == "30s"


def test_command_substitution_keeps_argv_shape() -> None:
    assert substitute(["set", "--w={weight}", "{mirror}", "a b"], 10, 5) == ["set", "--w=10", "5", "a b"]
    assert parse_weight_output("25\n", ["get"]) == (25, 0)
    assert parse_weight_output("25 10", ["get"]) == (25, 10)
    with pytest.raises(UserError):
        parse_weight_output("125", ["get"])
