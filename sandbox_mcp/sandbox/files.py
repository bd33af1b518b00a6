"""Files of a run on disk: removing a workdir, whatever the snippet made of it."""

from __future__ import annotations

import errno
import os
import stat


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
        current = os.open(path, flags)
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


def _empty_or_first_directory(directory: int) -> str | None:
    """Unlink every non-directory in `directory`; return a subdirectory's name, if any."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            os.unlink(entry.name, dir_fd=directory)
    return None
