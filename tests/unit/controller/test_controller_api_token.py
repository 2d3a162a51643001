from __future__ import annotations

import pytest

from switchover.engine.api import api_token, is_loopback
from switchover.errors import UserError
from switchover.plan import plan_from_dict

BASE = {"name": "t", "stable": {"url": "http://127.0.0.1:1"}, "candidate": {"url": "http://127.0.0.1:2"}}


def test_loopback_needs_no_token_elsewhere_one_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert api_token(plan_from_dict(BASE)) is None
    exposed = plan_from_dict({**BASE, "controller": {"api": "0.0.0.0:9902"}})
    with pytest.raises(UserError, match=r"controller\.token"):
        api_token(exposed)
    monkeypatch.setenv("SW_CONTROLLER_TOKEN", "s3cret-token")
    with_token = plan_from_dict({**BASE, "controller": {"api": "0.0.0.0:9902", "token": "env:SW_CONTROLLER_TOKEN"}})
    assert api_token(with_token) == "s3cret-token"


def test_a_token_written_in_the_plan_is_refused() -> None:
    with pytest.raises(UserError, match="env:NAME"):
        plan_from_dict({**BASE, "controller": {"api": "0.0.0.0:9902", "token": "plain"}})
