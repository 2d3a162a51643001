"""Configuration from flags and plans: the checks that happen before anything listens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchover.cli.proxy import build_config
from switchover.errors import UserError
from switchover.traffic.proxy.config import is_loopback, parse_upstream

FLAGS = dict(plan_path=None, listen=None, admin=None, stable="http://127.0.0.1:8001",
             candidate="https://api.example:8443", app_name=None, weight=None, mirror=None, mirror_writes=False,
             sticky_header=None, sticky_cookie=None, state_file=None, admin_token=None, workers=None)


def test_defaults_from_flags() -> None:
    config, plan = build_config(**FLAGS)  # type: ignore[arg-type]
    assert plan is None
    assert config.listen == ("127.0.0.1", 8080) and config.admin == ("127.0.0.1", 9901)
    assert config.candidate.tls and config.candidate.port == 8443
    assert config.candidate.host_header == b"api.example:8443"
    assert config.state_file == Path(".switchover/app-proxy.json")


def test_plan_supplies_name_urls_and_traffic(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(json.dumps({"name": "orders", "stable": {"url": "http://127.0.0.1:1"},
                                "candidate": {"url": "http://127.0.0.1:2"},
                                "traffic": {"listen": "127.0.0.1:7000", "sticky": {"cookie": "uid"},
                                            "limits": {"response_timeout": "3s"}}}))
    config, loaded = build_config(**{**FLAGS, "stable": None, "candidate": None, "plan_path": plan})  # type: ignore[arg-type]
    assert loaded is not None and config.app == "orders"
    assert config.listen == ("127.0.0.1", 7000)
    assert config.sticky_cookie == "uid"
    assert config.limits.response_timeout == 3.0
    assert config.state_file == tmp_path / ".switchover" / "orders-proxy.json"
    assert not config.mirror_writes  # writes are not mirrored unless the plan or the flag says so


def test_the_plans_parity_mirror_writes_mirrors_writes(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(json.dumps({"name": "orders", "stable": {"url": "http://127.0.0.1:1"},
                                "candidate": {"url": "http://127.0.0.1:2"}, "parity": {"mirror_writes": True}}))
    config, _ = build_config(**{**FLAGS, "stable": None, "candidate": None, "plan_path": plan})  # type: ignore[arg-type]
    assert config.mirror_writes


@pytest.mark.parametrize(("change", "message"), [
    ({"admin": "10.0.0.5:9901"}, "not a loopback address"),
    ({"workers": 65}, "--workers must be within 1-64"),
    ({"stable": None}, "give --stable URL"),
    ({"sticky_header": "x-user", "sticky_cookie": "uid"}, "one of --sticky-header or --sticky-cookie"),
    ({"mirror": 101}, "--mirror must be within 0-100"),
    ({"listen": "nonsense"}, "--listen: expected HOST:PORT"),
    ({"candidate": "http://127.0.0.1:1/v2"}, "origin only"),
])
def test_bad_configuration_is_a_user_error(change: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_config(**{**FLAGS, **change})  # type: ignore[arg-type]


def test_loopback_detection_and_upstream_parsing() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert parse_upstream("http://[::1]:8080", "x").host_header == b"[::1]:8080"
    assert parse_upstream("https://svc", "x").port == 443
