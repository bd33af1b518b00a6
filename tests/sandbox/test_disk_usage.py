"""The supervisor's disk watch: what it counts, and what it counts as a full disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox_mcp.sandbox.files import remove_tree
from sandbox_mcp.sandbox.supervisor import _MAX_ENTRIES, _disk_usage


def _deep_tree(root: Path, levels: int) -> None:
    # Made by descriptor: the deepest paths are far past PATH_MAX.
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
        written = os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
        os.write(written, b"x" * 10_000)
        os.close(written)
    finally:
        os.close(fd)


def test_a_tree_deeper_than_path_max_is_measured(tmp_path: Path) -> None:
    _deep_tree(tmp_path, 3000)
    try:
        used, entries = _disk_usage(str(tmp_path))
    finally:
        # pytest's own clean-up of old temporary directories recurses, and fails this deep.
        remove_tree(str(tmp_path / "d"))

    assert entries == 3001
    assert used >= 10_000


def test_every_branch_is_counted_once(tmp_path: Path) -> None:
    for branch in ("a/b/c", "a/x", "e", "f/g/h/i"):
        (tmp_path / branch).mkdir(parents=True)
        (tmp_path / branch / "data").write_bytes(b"y" * 8192)

    used, entries = _disk_usage(str(tmp_path))

    # 9 directories and 4 files.
    assert entries == 13
    assert used >= 4 * 8192


def test_a_link_is_counted_but_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    for index in range(50):
        (outside / str(index)).write_bytes(b"z" * 4096)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "link").symlink_to(outside)

    _used, entries = _disk_usage(str(workdir))

    assert entries == 1


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root enters any directory; scripts/test runs this as uid 65534"
)
@pytest.mark.parametrize("closed", ["a/hidden", "."], ids=["a directory below", "the workdir"])
def test_a_directory_the_walk_cannot_enter_counts_as_full(tmp_path: Path, closed: str) -> None:
    hidden = tmp_path / closed
    hidden.mkdir(parents=True, exist_ok=True)
    (hidden / "big").write_bytes(b"q" * 100_000)
    hidden.chmod(0)
    try:
        _used, entries = _disk_usage(str(tmp_path))
    finally:
        hidden.chmod(0o700)

    assert entries > _MAX_ENTRIES


def test_a_missing_workdir_is_empty(tmp_path: Path) -> None:
    assert _disk_usage(str(tmp_path / "gone")) == (0, 0)


def test_a_file_with_several_names_takes_its_blocks_once(tmp_path: Path) -> None:
    (tmp_path / "data").write_bytes(os.urandom(1024 * 1024))
    for index in range(10):
        os.link(tmp_path / "data", tmp_path / f"name-{index}")

    used, entries = _disk_usage(str(tmp_path))

    assert entries == 11
    assert 1024 * 1024 <= used < 2 * 1024 * 1024
