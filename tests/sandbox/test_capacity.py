"""capacity.py against fake /proc and /sys/fs/cgroup trees: the real ones cannot be set here.

A test cannot give itself a cgroup quota or memory limit without privileges this machine's
test runs lack (and the shared-mode suite runs without any), so each test lays out the
files a container would show, under a temporary root.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox_mcp.sandbox import capacity

MIB = 1024 * 1024
AFFINITY = len(os.sched_getaffinity(0))


def lay_out(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def v2(root: Path, cgroup: str, **files: str) -> Path:
    """A cgroup v2 tree where this process is in `cgroup`, with `files` in that cgroup."""
    layout = {"proc/self/cgroup": f"0::{cgroup}\n"}
    for name, text in files.items():
        layout[f"sys/fs/cgroup{cgroup}/{name.replace('_', '.', 1)}"] = text
    return lay_out(root, layout)


def v1(root: Path, **files: str) -> Path:
    """A cgroup v1 tree (cpu,cpuacct and memory controllers) in a cgroup namespace."""
    layout = {
        "proc/self/cgroup": "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n",
        "sys/fs/cgroup/unified/.keep": "",
    }
    for name, text in files.items():
        controller = "memory" if name.startswith("memory") else "cpu,cpuacct"
        # The mount's top is this process's cgroup: /docker/abc is not shown inside.
        layout[f"sys/fs/cgroup/{controller}/{name.replace('_', '.', 1)}"] = text
    return lay_out(root, layout)


def test_v2_quota_of_one_and_a_half_cpus(tmp_path: Path) -> None:
    root = v2(tmp_path, "/system.slice/sandbox.scope", cpu_max="150000 100000\n")

    assert capacity.cpu_quota(root) == 1.5
    assert capacity.available_cpus(root) == min(1.5, AFFINITY)
    assert capacity.default_max_concurrent(root) == max(2, min(3, 2 * AFFINITY))


def test_v2_without_a_quota_uses_the_affinity_mask(tmp_path: Path) -> None:
    root = v2(tmp_path, "/user.slice", cpu_max="max 100000\n", memory_max="max\n")

    assert capacity.cpu_quota(root) is None
    assert capacity.available_cpus(root) == AFFINITY
    assert capacity.memory_limit_bytes(root) is None


def test_v2_limit_set_on_a_parent_cgroup_binds(tmp_path: Path) -> None:
    root = v2(tmp_path, "/kubepods/pod1/ctr", memory_max="max\n", cpu_max="max 100000\n")
    lay_out(
        root,
        {
            "sys/fs/cgroup/kubepods/pod1/memory.max": str(512 * MIB),
            "sys/fs/cgroup/kubepods/pod1/cpu.max": "50000 100000",
        },
    )

    assert capacity.memory_limit_bytes(root) == 512 * MIB
    assert capacity.cpu_quota(root) == 0.5
    # Half a CPU still gets two runs: one may wait while the other computes.
    assert capacity.default_max_concurrent(root) == 2


def test_v1_quota_and_memory_limit(tmp_path: Path) -> None:
    root = v1(
        tmp_path,
        cpu_cfs_quota_us="400000\n",
        cpu_cfs_period_us="100000\n",
        memory_limit_in_bytes=f"{1024 * MIB}\n",
    )

    assert capacity.cpu_quota(root) == 4.0
    assert capacity.available_cpus(root) == min(4.0, AFFINITY)
    assert capacity.memory_limit_bytes(root) == 1024 * MIB
    assert capacity.default_memory_budget_mb(root) == 1024 - capacity.SERVER_RESERVE_MB


def test_v1_without_limits(tmp_path: Path) -> None:
    root = v1(
        tmp_path,
        cpu_cfs_quota_us="-1\n",
        cpu_cfs_period_us="100000\n",
        memory_limit_in_bytes="9223372036854771712\n",
    )
    lay_out(root, {"proc/meminfo": "MemTotal: 8000000 kB\nMemAvailable: 2097152 kB\n"})

    assert capacity.cpu_quota(root) is None
    assert capacity.memory_limit_bytes(root) is None
    # No cgroup limit: what the host has available now.
    assert capacity.default_memory_budget_mb(root) == 2048 - capacity.SERVER_RESERVE_MB


def test_a_512_megabyte_container_leaves_room_for_one_jvm_run(tmp_path: Path) -> None:
    root = v2(tmp_path, "/", memory_max=str(512 * MIB))

    assert capacity.default_memory_budget_mb(root) == 512 - capacity.SERVER_RESERVE_MB


@pytest.mark.parametrize("limit_mb", [100, 160])
def test_a_tiny_limit_still_admits_a_small_run(tmp_path: Path, limit_mb: int) -> None:
    root = v2(tmp_path, "/", memory_max=str(limit_mb * MIB))

    assert capacity.default_memory_budget_mb(root) == 64


def test_nothing_to_read_falls_back_to_the_affinity_mask(tmp_path: Path) -> None:
    assert capacity.cpu_quota(tmp_path) is None
    assert capacity.memory_limit_bytes(tmp_path) is None
    assert capacity.default_max_concurrent(tmp_path) == max(2, 2 * AFFINITY)


def test_this_machine_gives_sane_numbers() -> None:
    assert 0 < capacity.available_cpus() <= (os.cpu_count() or 1)
    assert capacity.default_max_concurrent() >= 2
    assert capacity.default_memory_budget_mb() >= 64
