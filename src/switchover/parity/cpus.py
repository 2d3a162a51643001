"""How many CPUs this process may use, for ``parity.diff_on: auto`` (``worker.py``).

The affinity says which cores the scheduler may give the process; a CPU quota says how much of
them it gets: a container's CPU limit, a systemd unit's ``CPUQuota=``, a Kubernetes pod's
``limits.cpu``. The quota that binds is the smallest along the process's cgroup and its ancestors
(``/proc/self/cgroup`` names it, ``/sys/fs/cgroup`` holds it: v2 ``cpu.max``, else v1
``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``). A container without its own cgroup namespace
names a path its mount does not show; the root of the mount, which is then its own cgroup, is
always read.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

CGROUP = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cpus(root: Path = CGROUP, proc: Path = PROC_CGROUP) -> float:
    """The CPUs this process may use: its affinity, bounded by the quotas of its cgroups."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        cpus = float(os.cpu_count() or 1)
    quota = cgroup_quota(root, proc)
    return cpus if quota is None else min(cpus, quota)


def cgroup_quota(root: Path, proc: Path) -> float | None:
    """The smallest quota (in CPUs) of the process's cgroup and its ancestors, v2 first, or None:
    no quota, or none that can be read."""
    v2, v1 = _own_paths(proc)
    quotas = [q for d in _chain(root, v2) if (q := _v2_quota(d)) is not None]
    if not quotas:  # v1, or a v2 tree without the cpu controller
        quotas = [q for d in _chain(root / "cpu", v1) if (q := _v1_quota(d)) is not None]
    return min(quotas, default=None)


def _own_paths(proc: Path) -> tuple[PurePosixPath, PurePosixPath]:
    """The process's cgroup in the v2 hierarchy and in v1's cpu controller (``/`` when not said)."""
    v2 = v1 = PurePosixPath("/")
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return v2, v1
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and not controllers:
            v2 = PurePosixPath(path or "/")
        elif "cpu" in controllers.split(","):
            v1 = PurePosixPath(path or "/")
    return v2, v1


def _chain(mount: Path, own: PurePosixPath) -> list[Path]:
    """The directories of ``own`` and of its ancestors under ``mount`` that exist, and the mount's
    root (even when ``own`` is not under it)."""
    dirs = [mount / own.relative_to("/")] if own.is_absolute() else []
    dirs += [mount / p.relative_to("/") for p in own.parents if p.is_absolute()]
    found = [d for d in dirs if d.is_dir()]
    return found if mount in found else [*found, mount]


def _v2_quota(d: Path) -> float | None:
    try:
        quota, period = (d / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(d: Path) -> float | None:
    try:
        quota_us = int((d / "cpu.cfs_quota_us").read_text())
        period_us = int((d / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None  # -1: no quota
