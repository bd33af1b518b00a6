"""The sandbox's files: removing a workdir whatever a snippet made of it, the lock files that
say which server owns a run root or a uid, and the sealed memory file a run reads its stdin
from."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat

# How a run's stdin is sealed: the snippet reads exactly what the caller sent, and cannot
# change or grow it.
STDIN_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def copy_range(out: int, source: int, offset: int, end: int) -> None:
    """Copy bytes `offset` to `end` of `source` to where `out` stands, in the kernel."""
    while offset < end:
        sent = os.sendfile(out, source, offset, end - offset)
        if sent == 0:  # `source` is shorter than it said
            return
        offset += sent


def memory_stdin() -> int:
    """An empty memory file for a run's stdin, to fill (`fill_stdin`) and seal later."""
    return os.memfd_create("stdin", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)


def fill_stdin(target: int, source: int) -> None:
    """Copy `source` whole into the empty memory file `target` and seal it as a run's stdin.

    A run on standby already holds `target` as its descriptor 0, and shares its offset: the
    copy writes at explicit offsets, so that the run still reads from the start.
    """
    offset = 0
    while chunk := os.pread(source, 1 << 20, offset):
        view = memoryview(chunk)
        while view:
            written = os.pwrite(target, view, offset)
            offset += written
            view = view[written:]
    fcntl.fcntl(target, fcntl.F_ADD_SEALS, STDIN_SEALS)


def remove_tree(path: str) -> None:
    """Remove the directory `path` and everything below it. Raises OSError if it cannot.

    A snippet controls what is in its workdir: directories thousands deep (deeper than
    Python's recursion limit and than PATH_MAX), directories without write or search
    permission. So this walks without recursion, relative to one open directory at a time,
    restoring the owner's permissions on the way down. Nothing of the run may be alive: a
    process renaming directories meanwhile could move the walk elsewhere.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        current = _open_restoring(path, flags)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        os.unlink(path)
        return
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # O_NOFOLLOW met a symbolic link: remove the link
            raise
        os.unlink(path)
        return
    names: list[str] = []  # the directories entered, from `path` down
    try:
        while True:
            os.fchmod(current, stat.S_IRWXU)
            below = _empty_or_first_directory(current)
            if below is not None:
                # The walk checked it is a directory, and nothing of the run is alive to swap
                # it for a link: its permissions can be restored before it is entered.
                os.chmod(below, stat.S_IRWXU, dir_fd=current)
                child = os.open(below, flags, dir_fd=current)
                os.close(current)
                current = child
                names.append(below)
                continue
            if not names:
                break
            parent = os.open("..", flags, dir_fd=current)
            os.close(current)
            current = parent
            os.rmdir(names.pop(), dir_fd=current)
    finally:
        os.close(current)
    os.rmdir(path)


def _open_restoring(path: str, flags: int) -> int:
    # A run may have taken its owner's rights away from the workdir itself (`chmod . 0`):
    # give them back first. The run root is not the run's to write, so `path` is still the
    # directory the supervisor made.
    try:
        return os.open(path, flags)
    except PermissionError:
        os.chmod(path, stat.S_IRWXU)
        return os.open(path, flags)


def _empty_or_first_directory(directory: int) -> str | None:
    """Unlink every non-directory in `directory`; return a subdirectory's name, if any."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            os.unlink(entry.name, dir_fd=directory)
    return None


def lock_file(path: str) -> int | None:
    """Open and lock `path`; None when another process holds it.

    Whoever holds it removes the file before letting go, so that only live owners' files
    stay; a lock is therefore good only on the file the path still names.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # The previous holder may have removed the file between our open and our lock: the
        # lock counts only on the file the path names now.
        try:
            current = os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)


def unlock_file(path: str, fd: int) -> None:
    """Let go of a lock taken with `lock_file`: the file is removed while still held, so that
    only the lock files of live owners stay."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    os.close(fd)
