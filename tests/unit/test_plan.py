from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchover.durations import format_duration, parse_duration
from switchover.errors import UserError
from switchover.plan import load_plan
from switchover.plan.steps import Canary

EXAMPLE = Path(__file__).resolve().parents[3] / "shared" / "examples" / "orders-cutover.yaml"
HERE_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "orders-cutover.yaml"


def _example() -> Path:
    return HERE_EXAMPLE if HERE_EXAMPLE.exists() else EXAMPLE


def test_example_plan_loads_with_every_section() -> None:
    plan = load_plan(_example())
    assert plan.name == "orders"
    kinds = [s.kind for s in plan.step_list()]
    assert kinds[0] == "preflight" and "shadow" in kinds and kinds.count("canary") == 4
    assert plan.analysis.interval == 10.0 and plan.analysis.failure_limit == 3
    assert plan.traffic.sticky is not None and plan.traffic.sticky.header == "X-User-Id"


def test_defaults_follow_the_checklist(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nstable: {url: 'http://127.0.0.1:1'}\ncandidate: {url: 'http://127.0.0.1:2'}\n")
    plan = load_plan(path)
    assert (plan.slo.p95_ms, plan.slo.error_rate, plan.slo.saturation) == (200, 0.005, 0.70)
    assert plan.analysis.baseline.p95_ratio == 1.10
    assert plan.analysis.max_breach == 300
    steps = plan.step_list()
    assert [s.weight for s in steps if isinstance(s, Canary)] == [10, 25, 50, 100]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("analysis:\n  intervall: 10s\n", ":6: analysis.intervall: unknown key"),
        ("steps:\n  - canary: {weight: 250}\n", ":6: steps[0].canary.weight"),
        ("steps:\n  - bogus: {}\n", ":6: steps[0]: a step is a one-key mapping"),
        ("analysis:\n  interval: soon\n", ":6: analysis.interval"),
        ("notify:\n  - {slack: 'env:X', webhook: 'env:Y'}\n", ":6: notify[0]"),
        ("parity:\n  diff_on: elsewhere\n", ":6: parity.diff_on: Input should be 'auto', 'proxy' or 'worker'"),
        ("parity:\n  copies_from: nginx\n", ":6: parity.copies_from: Input should be 'proxy' or 'worker'"),
        ("traffic:\n  limits:\n    mirror_batch_wait: 2s\n",
         ":7: traffic.limits.mirror_batch_wait: Input should be less than or equal to 1"),
    ],
)
def test_bad_plans_name_file_line_and_field(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nstable: {url: 'http://127.0.0.1:1'}\ncandidate: {url: 'http://127.0.0.1:2'}\n"
                    "# comment\n" + body)
    with pytest.raises(UserError) as err:
        load_plan(path)
    assert str(path) + expected in str(err.value)


def test_missing_plan_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such plan file"):
        load_plan(tmp_path / "nope.yaml")


@given(st.integers(min_value=0, max_value=10**6))
def test_durations_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "-3s", "1.5.2s"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
