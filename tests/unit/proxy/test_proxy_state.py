"""The split on disk: atomic writes, clear errors for unreadable files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchover.errors import UserError
from switchover.traffic.proxy.routing import Split
from switchover.traffic.proxy.state import load_split, save_split


def test_round_trip_and_no_temporary_files_left(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "orders-proxy.json"
    assert load_split(path) is None
    save_split(path, Split(25, 5), "orders", now=1.0)
    assert load_split(path) == Split(25, 5)
    assert json.loads(path.read_text()) == {"candidate_weight": 25, "mirror_percent": 5, "app": "orders",
                                            "updated_at": 1.0}
    save_split(path, Split(50, 0), "orders")
    assert load_split(path) == Split(50, 0)
    assert [p.name for p in path.parent.iterdir()] == ["orders-proxy.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.json"
    save_split(path, Split(10, 0), "a")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        save_split(path, Split(90, 0), "a")
    assert load_split(path) == Split(10, 0)
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


@pytest.mark.parametrize("text", ["not json", "[1]", '{"candidate_weight": 200}', '{"mirror_percent": "x"}'])
def test_unreadable_state_is_a_user_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(text)
    with pytest.raises(UserError, match=str(path)):
        load_split(path)
