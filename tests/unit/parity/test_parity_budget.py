"""Endpoints, paths, noise cancellation and the budget (pure)."""

from __future__ import annotations

import pytest

from switchover.parity.budget import EndpointCount, FieldCount, Signature, Tally, Thresholds, evaluate
from switchover.parity.endpoints import compile_template, endpoint
from switchover.parity.paths import PathError, compile_path


def test_endpoint_templating() -> None:
    assert endpoint("get", "/orders/123?expand=items") == "GET /orders/{id}"
    assert endpoint("GET", "/users/6f1c2b3a-1d2e-4f50-8a9b-0c1d2e3f4a5b/cart") == "GET /users/{id}/cart"
    assert endpoint("GET", "/blobs/5f2b9c1e8d7a") == "GET /blobs/{id}"
    assert endpoint("GET", "/orders/search") == "GET /orders/search"
    tpl = (compile_template("/shops/{shop}/orders/{id}"),)
    assert endpoint("GET", "/shops/acme/orders/9", tpl) == "GET /shops/{shop}/orders/{id}"
    assert endpoint("GET", "/shops/acme", tpl) == "GET /shops/acme"


def test_paths() -> None:
    assert compile_path("$.items[*].etag").matches(("items", 4, "etag"))
    assert not compile_path("$.items[*].etag").matches(("items", 4, "id"))
    assert compile_path("$..etag").matches(("a", 1, "b", "etag"))
    assert compile_path("$.items[0]").matches(("items", 0))
    assert not compile_path("$.items[0]").matches(("items", 1))
    with pytest.raises(PathError, match="starts with"):
        compile_path("items")


def _tally(compared: int, noise_compared: int, fields: list[tuple[str, int, int]],
           sigs: list[tuple[tuple[str, ...], int]]) -> Tally:
    ep = "GET /orders/{id}"
    return Tally((EndpointCount(ep, compared, noise_compared),),
                 tuple(FieldCount(ep, f, "changed", d, n) for f, d, n in fields),
                 tuple(Signature(ep, tuple(k + "|changed" for k in keys), c) for keys, c in sigs))


def test_a_field_differing_between_two_stables_is_noise() -> None:
    t = _tally(1000, 1000, [("$.generated_at", 1000, 1000), ("$.total", 10, 0)],
               [(("$.generated_at",), 990), (("$.generated_at", "$.total"), 10)])
    r = evaluate(t, Thresholds(2.0, 0.0), budget=0.001, min_compared=100)
    fields = {f.field: f for f in r.endpoints[0].fields}
    assert not fields["$.generated_at"].regression
    assert fields["$.total"].regression and fields["$.total"].rate == pytest.approx(0.01)
    assert r.regressed == 10 and r.outcome == "fail"
    assert "$.total" in r.summary() and "GET /orders/{id}" in r.summary()


def test_thresholds_relative_and_absolute() -> None:
    t = _tally(1000, 1000, [("$.x", 30, 20)], [(("$.x",), 30)])
    assert not evaluate(t, Thresholds(2.0, 0.0), 0.001).endpoints[0].fields[0].regression  # 3% < 2 x 2%
    assert evaluate(t, Thresholds(1.2, 0.0), 0.001).endpoints[0].fields[0].regression
    assert not evaluate(t, Thresholds(1.2, 0.02), 0.001).endpoints[0].fields[0].regression  # 1% margin < 2%


def test_too_few_is_inconclusive_never_pass_and_since_mark() -> None:
    t = _tally(50, 0, [], [])
    assert evaluate(t, Thresholds(), 0.001, min_compared=100).outcome == "inconclusive"
    later = _tally(250, 0, [("$.x", 5, 0)], [(("$.x",), 5)])
    delta = later.minus(t)
    r = evaluate(delta, Thresholds(), 0.05, min_compared=100)
    assert (r.compared, r.regressed, r.outcome) == (200, 5, "pass")
