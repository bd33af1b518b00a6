"""Landlock's rules around the hidden paths (landlock.readable_around)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox_mcp.sandbox import _libc, landlock

ABI = landlock.abi_version()
pytestmark = pytest.mark.skipif(
    ABI == 0, reason="LANDLOCK IS NOT AVAILABLE ON THIS KERNEL: its rules cannot be checked here"
)


def readable_after_restrict(workdir: Path, hidden: Path, paths: list[Path]) -> list[bool]:
    """In a child: restrict as a run is, then try to read each path."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
            landlock.restrict(ABI, str(workdir), [str(hidden)], ["/dev"], False)
            found = []
            for path in paths:
                try:
                    with open(path, "rb"):
                        found.append("1")
                except OSError:
                    found.append("0")
            os.write(write_end, "".join(found).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 100).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    return [flag == "1" for flag in answer]


def test_a_run_root_reached_through_a_link_stays_hidden(tmp_path: Path) -> None:
    # As with SANDBOX_RUN_ROOT=/var/lock/x, /var/lock being a link to /run/lock.
    real = tmp_path / "real" / "lock"
    (real / "runs" / "mine").mkdir(parents=True)
    (real / "runs" / "other").write_text("another run's")
    (real / "beside").write_text("readable")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "lock").symlink_to(real)
    runs = tmp_path / "var" / "lock" / "runs"

    readable = readable_after_restrict(
        runs / "mine",
        runs,
        [real / "runs" / "other", runs / "other", real / "beside"],
    )

    assert readable == [False, False, True]
