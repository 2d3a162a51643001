"""Registries of adapters: a name in the plan -> "module:Class", imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from switchover.errors import UserError


def build(registry: Mapping[str, str], name: str, field: str, *args: Any) -> Any:
    """Import the class registered as ``name`` and build it with ``args``. ``field`` names the plan
    field in errors (e.g. "traffic.driver")."""
    target = registry.get(name)
    if target is None:
        raise UserError(f"{field}: unknown {name!r}; known: {', '.join(registry)}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UserError(f"{field} {name!r} is not available in this build: {exc}") from None
    return getattr(module, class_name)(*args)
