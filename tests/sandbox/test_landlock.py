"""Landlock's rules around hidden paths, listed once per launcher (landlock.list_once)."""

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


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setattr(landlock, "_listed", None)
    hidden = tmp_path / "runs"
    workdir = hidden / "mine"
    workdir.mkdir(parents=True)
    (hidden / "other").write_text("another run's")
    (workdir / "own").write_text("own")
    (tmp_path / "before").write_text("here before")
    return hidden, workdir


def test_what_was_listed_once_is_readable_and_what_came_after_is_not(
    layout: tuple[Path, Path],
) -> None:
    hidden, workdir = layout
    landlock.list_once([str(hidden) + "/"])  # the same path, written another way
    (hidden.parent / "after").write_text("made later")

    readable = readable_after_restrict(
        workdir,
        hidden,
        [hidden.parent / "before", hidden.parent / "after", hidden / "other", workdir / "own"],
    )

    assert readable == [True, False, False, True]


def test_other_hidden_paths_are_listed_at_the_run(layout: tuple[Path, Path]) -> None:
    hidden, workdir = layout
    landlock.list_once(["/nowhere/else"])
    (hidden.parent / "after").write_text("made later")

    readable = readable_after_restrict(workdir, hidden, [hidden.parent / "after", hidden / "other"])

    assert readable == [True, False]
