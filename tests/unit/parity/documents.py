"""Helpers for the parity tests' generated JSON documents: their leaves, reading and replacing one."""

from __future__ import annotations

from typing import Any


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place holding a scalar or an empty container (a value that can change too)."""
    if isinstance(value, dict) and value:
        return [p for k, v in value.items() for p in leaf_paths(v, (*path, k))]
    if isinstance(value, list) and value:
        return [p for i, v in enumerate(value) for p in leaf_paths(v, (*path, i))]
    return [path]


def get_at(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def set_at(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``doc`` with the value at ``path`` replaced."""
    if not path:
        return new
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[path[0]] = set_at(doc[path[0]], path[1:], new)
    return copy


def same_json(a: Any, b: Any) -> bool:
    """The same JSON value under the default options (1 == 1.0, but true != 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b
