"""The complete example plans in the adapters' docs load as plans (users copy them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from switchover.plan import plan_from_dict

DOCS = Path(__file__).resolve().parents[3] / "docs"


def plans_in(page: str) -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", (DOCS / page).read_text(), re.S)
    return [b for b in blocks if b.startswith("name:")]


@pytest.mark.parametrize("page", ["traffic.md", "metrics.md"])
def test_complete_plans_validate(page: str) -> None:
    found = plans_in(page)
    assert found, f"{page} has no complete plan"
    for text in found:
        plan = plan_from_dict(yaml.safe_load(text), filename=page)
        assert plan.step_list()


def test_router_snippets_validate() -> None:
    blocks = re.findall(r"```yaml\n(traffic:.*?)```", (DOCS / "traffic.md").read_text(), re.S)
    assert len(blocks) == 4
    for text in blocks:
        plan_from_dict({"name": "x", "stable": {"url": "http://a"}, "candidate": {"url": "http://b"},
                        **yaml.safe_load(text)})


def test_journey_example_validates() -> None:
    [text] = re.findall(r"```yaml\n(journeys:.*?)```", (DOCS / "preflight.md").read_text(), re.S)
    plan = plan_from_dict({"name": "x", "stable": {"url": "http://a"}, "candidate": {"url": "http://b"},
                           **yaml.safe_load(text)})
    assert [s.capture for s in plan.journeys[0].steps][:2] == [{"token": "$.token"}, {"order": "header:Location"}]
