"""Journeys' pure parts: capture paths, template substitution, JSON subsets."""

from __future__ import annotations

import pytest

from switchover.probes.journeys import JourneyError, is_subset, json_path, substitute


def test_json_path() -> None:
    doc = {"token": "t1", "items": [{"id": 7}, {"id": 8}], "a b": {"c": True}}
    assert json_path(doc, "$.token") == "t1"
    assert json_path(doc, "$.items[1].id") == 8
    assert json_path(doc, '$["a b"].c') is True
    assert json_path(doc, "$") == doc
    with pytest.raises(KeyError):
        json_path(doc, "$.items[5].id")
    with pytest.raises(KeyError):
        json_path(doc, "$.missing")
    with pytest.raises(ValueError, match="starts with"):
        json_path(doc, "token")
    with pytest.raises(ValueError, match="cannot read"):
        json_path(doc, "$.items[x]")


def test_substitute_everywhere_and_unknown_names() -> None:
    captured = {"token": "abc", "order": "42"}
    body = {"auth": "Bearer {{token}}", "lines": ["{{ order }}", 3], "n": None}
    assert substitute(body, captured) == {"auth": "Bearer abc", "lines": ["42", 3], "n": None}
    assert substitute("/orders/{{order}}/refund", captured) == "/orders/42/refund"
    with pytest.raises(JourneyError, match=r"\{\{user\}\} was never captured"):
        substitute("/users/{{user}}", captured)


def test_subset() -> None:
    assert is_subset({"status": "paid", "total": {"cents": 100}}, {"status": "paid", "total": {"cents": 100, "c": 1}})
    assert not is_subset({"status": "paid"}, {"status": "refunded"})
    assert not is_subset({"status": "paid"}, ["status"])
