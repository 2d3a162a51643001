"""``usable_cpus``: the affinity, bounded by the CPU quotas of the process's cgroups (what
``parity.diff_on: auto`` decides from), on cgroup trees written in a temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

from switchover.parity.cpus import usable_cpus

AFFINITY = len(os.sched_getaffinity(0))


def _proc(tmp_path: Path, text: str) -> Path:
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(text)
    return proc


def _v2(d: Path, cpu_max: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "cpu.max").write_text(cpu_max + "\n")


def _v1(d: Path, quota_us: int, period_us: int = 100000) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
    (d / "cpu.cfs_period_us").write_text(f"{period_us}\n")


def test_the_root_quota_of_a_container_bounds_the_affinity(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", _proc(tmp_path, "0::/\n")
    root.mkdir()
    assert usable_cpus(root, proc) == AFFINITY  # no cgroup files
    _v1(root / "cpu", -1)  # v1, no quota
    assert usable_cpus(root, proc) == AFFINITY
    _v1(root / "cpu", 25000)  # v1, a quarter of a CPU
    assert usable_cpus(root, proc) == 0.25
    _v2(root, "max 100000")  # v2 is read first: no quota there, v1's counts
    assert usable_cpus(root, proc) == 0.25
    _v2(root, "50000 100000")  # a container limited to half a CPU
    assert usable_cpus(root, proc) == 0.5
    _v2(root, "garbage")  # unreadable: v1's quota then
    assert usable_cpus(root, proc) == 0.25


def test_a_systemd_units_quota_binds_and_so_does_its_slices(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = _proc(tmp_path, "0::/system.slice/switchover.service\n")
    unit = root / "system.slice" / "switchover.service"
    _v2(root, "max 100000")
    _v2(unit.parent, "max 100000")
    _v2(unit, "150000 100000")  # CPUQuota=150%
    assert usable_cpus(root, proc) == min(AFFINITY, 1.5)
    _v2(unit.parent, "50000 100000")  # the slice allows less than the unit asks
    assert usable_cpus(root, proc) == 0.5


def test_a_cgroup_the_mount_does_not_show_falls_back_to_the_root(tmp_path: Path) -> None:
    """A container without its own cgroup namespace: /proc names the host's path."""
    root = tmp_path / "cgroup"
    _v2(root, "25000 100000")
    proc = _proc(tmp_path, "0::/docker/0123abcd\n")
    assert usable_cpus(root, proc) == 0.25
    assert usable_cpus(root, tmp_path / "no-such-file") == 0.25  # /proc unreadable: the root


def test_cgroup_v1_nested_quota_under_the_cpu_controller(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = _proc(tmp_path, "4:memory:/batch\n2:cpu,cpuacct:/batch/job-7\n1:name=systemd:/batch\n")
    _v1(root / "cpu", -1)
    _v1(root / "cpu" / "batch", -1)
    _v1(root / "cpu" / "batch" / "job-7", 50000)
    assert usable_cpus(root, proc) == 0.5
    _v1(root / "cpu" / "batch" / "job-7", 0, period_us=0)  # nonsense: ignored, not a division by zero
    assert usable_cpus(root, proc) == AFFINITY
