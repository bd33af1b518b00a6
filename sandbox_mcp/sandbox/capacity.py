"""What this machine really gives the server: the CPUs and memory it may use.

`os.cpu_count()` and /proc/meminfo describe the host; a container sees the host's numbers
but is held to its cgroup's quota. The defaults of `max_concurrent_runs` and of the memory
budget come from here. Every function takes the filesystem root to read, so that tests can
lay out fake /proc and /sys/fs/cgroup trees.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

MIB = 1024 * 1024
# Runs executing at once per CPU. A snippet is mostly short (an interpreter starts, prints
# and exits: much of that is exec and page faults) or waits (sleep, a pipe, stdin); two per
# CPU keeps the CPUs busy while one of each pair waits, and a CPU-bound run still gets at
# least half a CPU, so it does not crawl towards its deadline. Memory is bounded apart, by
# the memory budget.
RUNS_PER_CPU = 2
# Memory the server keeps for itself, out of the budget: the server (Python with the SDK),
# the launcher, the warm Python template and the runs on standby, with some headroom. Of
# those, the two JavaScript runs on standby are 48 MB: each node holds some 6 MB of its own
# and maps 34 MB of node's binary, which both share with every other node.
SERVER_RESERVE_MB = 208
# A v1 cgroup without a limit reports a huge number (about 2**63 rounded to pages).
_NO_V1_LIMIT = 1 << 60


def available_cpus(root: Path = Path("/")) -> float:
    """CPUs this process may use: its affinity mask, cut down by its cgroup's CPU quota."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except OSError:
        cpus = float(os.cpu_count() or 1)
    quota = cpu_quota(root)
    return min(cpus, quota) if quota is not None else cpus


def cpu_quota(root: Path = Path("/")) -> float | None:
    """The CPUs the cgroup's quota allows (quota / period), or None when it sets none."""
    v2, v1 = _cgroup_dirs(root, "cpu")
    quotas = []
    for directory in _up_to_mount(root, v2):
        quota, _, period = (_read(directory / "cpu.max") or "max").partition(" ")
        if quota != "max" and period:
            quotas.append(_ratio(quota, period))
    if any(quota is not None for quota in quotas):
        return min(quota for quota in quotas if quota is not None)
    if v1 is not None:
        quota_text = _read(v1 / "cpu.cfs_quota_us")
        period_text = _read(v1 / "cpu.cfs_period_us")
        if quota_text and period_text and not quota_text.startswith("-"):
            return _ratio(quota_text, period_text)
    return None


def memory_limit_bytes(root: Path = Path("/")) -> int | None:
    """The cgroup's memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`), or None."""
    v2, v1 = _cgroup_dirs(root, "memory")
    limits = []
    for directory in _up_to_mount(root, v2):
        text = _read(directory / "memory.max")
        if text and text.isdigit():
            limits.append(int(text))
    if limits:
        return min(limits)
    if v1 is not None:
        text = _read(v1 / "memory.limit_in_bytes")
        if text and int(text) < _NO_V1_LIMIT:
            return int(text)
    return None


def memory_available_bytes(root: Path = Path("/")) -> int | None:
    """MemAvailable from /proc/meminfo: what the host could give without swapping."""
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            return int(value.split()[0]) * 1024
    return None


def default_max_concurrent(root: Path = Path("/")) -> int:
    """`RUNS_PER_CPU` runs per available CPU (a fractional quota rounds up), at least 2."""
    return max(2, math.ceil(available_cpus(root) * RUNS_PER_CPU))


def default_memory_budget_mb(root: Path = Path("/")) -> int:
    """Memory runs may reserve together: the cgroup limit, else MemAvailable, less the
    server's own `SERVER_RESERVE_MB`; never below 64 MB, so that one small run fits."""
    total = memory_limit_bytes(root) or memory_available_bytes(root)
    if total is None:
        # Nothing to measure (no /proc): leave memory to the per-run limits alone.
        return 1 << 20
    return max(64, total // MIB - SERVER_RESERVE_MB)


def _cgroup_dirs(root: Path, controller: str) -> tuple[Path | None, Path | None]:
    """This process's cgroup v2 directory and its v1 directory for `controller`, if any."""
    v2 = v1 = None
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        relative = path.lstrip("/")
        if number == "0" and controllers == "":
            v2 = _first_dir(root / "sys/fs/cgroup" / relative, root / "sys/fs/cgroup")
        elif controller in controllers.split(","):
            base = root / "sys/fs/cgroup" / controllers
            # Inside a cgroup namespace /proc/self/cgroup may name a path the mount does not
            # show: the mount's own top is then this process's cgroup.
            v1 = _first_dir(base / relative, base)
    return v2, v1


def _up_to_mount(root: Path, directory: Path | None) -> list[Path]:
    """A v2 cgroup and its ancestors within the mount: a limit set above binds as well."""
    mount = root / "sys/fs/cgroup"
    chain = []
    while directory is not None and directory.is_relative_to(mount):
        chain.append(directory)
        directory = directory.parent if directory != mount else None
    return chain


def _first_dir(*candidates: Path) -> Path | None:
    return next((path for path in candidates if path.is_dir()), None)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        value = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None
