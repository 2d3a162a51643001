"""Saturation sources: a number between 0 and 1 (CPU, pool usage, queue depth) read every interval.

``command``: argv printing the number (no shell). The adapters issue adds a PromQL ``query``. No
source configured: the saturation gate is skipped (the live view says so). A source that fails or
prints something else gives ``None`` (inconclusive for that gate).
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from switchover.plan import Plan


def read_command(argv: list[str], timeout: float = 5.0, cwd: str | None = None) -> float | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        value = float(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return value if 0.0 <= value <= 1.0 else None


def read_saturation(plan: Plan) -> float | None:
    """The configured source's current reading, or None (no source, or no valid reading)."""
    source = plan.metrics.saturation
    if source is None or source.command is None:
        return None
    return read_command(source.command, cwd=str(plan.base_dir()))


def has_source(plan: Plan) -> bool:
    return plan.metrics.saturation is not None
