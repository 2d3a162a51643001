"""YAML documents the way Kubernetes users read them: keys in the order written, block style."""

from __future__ import annotations

from typing import Any

import yaml


def dump_all(documents: list[dict[str, Any]], header: str = "") -> str:
    body = yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, explicit_start=True)
    return header + body


def argo_duration(seconds: float) -> str:
    """Argo Rollouts durations: one unit suffix (s, m, h)."""
    whole = max(0, round(seconds))
    if whole and whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole and whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"
