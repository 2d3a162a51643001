"""Pure routing: sticky points, monotone assignment, split updates, cookies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchover.traffic.proxy.routing import (
    Split,
    cookie_value,
    on_candidate,
    parse_split_update,
    sticky_point,
)

keys = st.binary(min_size=1, max_size=64)
weights = st.integers(min_value=0, max_value=100)


@given(keys, weights, weights)
def test_a_user_on_the_candidate_stays_there_when_the_weight_rises(key: bytes, w1: int, w2: int) -> None:
    low, high = sorted((w1, w2))
    point = sticky_point(key)
    if on_candidate(low, point):
        assert on_candidate(high, point)


@given(keys, weights)
def test_the_same_key_always_lands_on_the_same_side(key: bytes, weight: int) -> None:
    assert on_candidate(weight, sticky_point(key)) == on_candidate(weight, sticky_point(bytes(key)))


@given(keys)
def test_weight_0_is_all_stable_and_100_all_candidate(key: bytes) -> None:
    point = sticky_point(key)
    assert 0 <= point < 100
    assert not on_candidate(0, point)
    assert on_candidate(100, point)


def test_points_spread_evenly() -> None:
    points = [sticky_point(f"user-{i}".encode()) for i in range(20_000)]
    share = sum(on_candidate(25, p) for p in points) / len(points)
    assert 0.23 < share < 0.27  # 20k samples: sd 0.3 percentage points


def test_points_are_stable_across_processes() -> None:
    # blake2b, not hash(): the same user keeps their side after a restart (PYTHONHASHSEED varies).
    assert sticky_point(b"alice") == pytest.approx(sticky_point(b"alice"))
    assert round(sticky_point(b"alice"), 6) == round(int.from_bytes(
        __import__("hashlib").blake2b(b"alice", digest_size=8).digest(), "big") * 100 / 2**64, 6)


def test_split_updates() -> None:
    current = Split(10, 0)
    assert parse_split_update(current, {"candidate_weight": 25}) == Split(25, 0)
    assert parse_split_update(current, {"mirror_percent": 5}) == Split(10, 5)
    assert parse_split_update(current, {"candidate_weight": 100, "mirror_percent": 0}) == Split(100, 0)


@pytest.mark.parametrize(("body", "reason"), [
    ({"candidate_weight": 101}, "within 0-100"),
    ({"candidate_weight": -1}, "within 0-100"),
    ({"candidate_weight": 2.5}, "integer"),
    ({"candidate_weight": True}, "integer"),
    ({"candidate_weight": "10"}, "integer"),
    ({"weight": 10}, "unknown field"),
    ({}, "give candidate_weight"),
    ([10], "JSON object"),
    (None, "JSON object"),
])
def test_bad_split_updates_say_why(body: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_split_update(Split(), body)


def test_cookie_value() -> None:
    header = b'theme=dark; uid=abc123; q="quoted value"'
    assert cookie_value(header, "uid") == b"abc123"
    assert cookie_value(header, "q") == b"quoted value"
    assert cookie_value(header, "missing") is None
    assert cookie_value(b"xuid=1; uid=2", "uid") == b"2"
