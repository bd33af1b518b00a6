"""Removing a workdir, whatever a snippet made of it."""

from __future__ import annotations

import os
from pathlib import Path

from sandbox_mcp.sandbox.files import remove_tree


def test_a_tree_deeper_than_the_recursion_limit_and_path_max_is_removed(tmp_path: Path) -> None:
    top = tmp_path / "workdir"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(3000):  # 3000 levels of "dd/": 9000 characters, past PATH_MAX
            os.mkdir("dd", dir_fd=fd)
            child = os.open("dd", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            with open(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=child), "w") as handle:
                handle.write("x")
            os.close(fd)
            fd = child
    finally:
        os.close(fd)

    remove_tree(str(top))

    assert not top.exists()


def test_directories_without_permissions_and_links_out_are_handled(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("not the run's")
    top = tmp_path / "workdir"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "file").write_text("x")
    (top / "link").symlink_to(outside)
    (top / "a" / "b").chmod(0)
    (top / "a").chmod(0o500)

    remove_tree(str(top))

    assert not top.exists()
    assert (outside / "keep").read_text() == "not the run's"


def test_a_missing_path_a_file_and_a_link_are_removed_or_ignored(tmp_path: Path) -> None:
    remove_tree(str(tmp_path / "never-was"))
    (tmp_path / "file").write_text("x")
    remove_tree(str(tmp_path / "file"))
    (tmp_path / "link").symlink_to(tmp_path)
    remove_tree(str(tmp_path / "link"))

    assert list(tmp_path.iterdir()) == []


def test_a_top_directory_without_permissions_is_removed(tmp_path: Path) -> None:
    # A run's `chmod . 0`: its owner may not even open it until the rights are back.
    top = tmp_path / "workdir"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "file").write_text("x")
    top.chmod(0)

    remove_tree(str(top))

    assert not top.exists()
