"""The Landlock domain each run gets: the kernel's own fence around one run.

A process that calls `restrict` before exec enters a new domain, and everything it starts
stays in it. The kernel then refuses, for every process of the run:
- writing, creating, renaming or removing files anywhere but the run's workdir (and /dev for
  /dev/null and friends);
- reading anything under the run root but its own workdir, so that runs sharing a uid
  cannot read each other's files; everything else stays readable and executable;
- tracing or reading the memory of any process outside the domain (ABI 1), which covers the
  server, the supervisor and other runs, /proc/<pid>/mem included;
- sending a signal to any process outside the domain, and connecting to abstract Unix sockets
  outside it (ABI 6, Linux 6.12+);
- with the network off, TCP bind and connect (ABI 4), a second wall behind the seccomp filter.

Landlock needs no privilege and Docker's default seccomp profile allows it. On a kernel
without it, `abi_version` returns 0 and runs go without this layer: the posture says so.

Known shortcoming: opening the run's own stdout or stderr again by path (`> /dev/stderr` in a
shell, `/proc/self/fd/1`) is refused, because the path leads to a pipe that lies outside
every allowed directory. Writing to the inherited descriptors (`>&2`, `print`) works.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
import os
import stat
from collections.abc import Iterable

from sandbox_mcp.sandbox import _libc

_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

# Filesystem rights (linux/landlock.h). Execute, read-file and read-dir are left unhandled,
# so they stay allowed everywhere.
_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_WRITE_FILE = 1 << 1
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_CHAR = 1 << 6
_MAKE_DIR = 1 << 7
_MAKE_REG = 1 << 8
_MAKE_SOCK = 1 << 9
_MAKE_FIFO = 1 << 10
_MAKE_BLOCK = 1 << 11
_MAKE_SYM = 1 << 12
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3

_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1

_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1

_FILE_RIGHTS = _READ_FILE | _WRITE_FILE | _TRUNCATE

_MODIFY = (
    _WRITE_FILE
    | _REMOVE_DIR
    | _REMOVE_FILE
    | _MAKE_CHAR
    | _MAKE_DIR
    | _MAKE_REG
    | _MAKE_SOCK
    | _MAKE_FIFO
    | _MAKE_BLOCK
    | _MAKE_SYM
)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI version, or 0 when Landlock is missing or disabled."""
    try:
        return _libc.syscall("landlock_create_ruleset", None, 0, _CREATE_RULESET_VERSION)
    except OSError as exc:
        if exc.errno in (errno_codes.ENOSYS, errno_codes.EOPNOTSUPP, errno_codes.EPERM):
            return 0
        raise


def fs_rights(abi: int) -> int:
    """The filesystem rights this domain handles, i.e. refuses unless a rule allows them."""
    rights = _MODIFY | _READ_FILE | _READ_DIR
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    return rights


def restrict(
    abi: int, workdir: str, hidden: Iterable[str], device_dirs: Iterable[str], network: bool
) -> None:
    """Enter a new Landlock domain in which only `workdir` may be modified.

    Everything may be read except what lies under the `hidden` paths (the run root, the
    server's secrets), the workdir excepted. `device_dirs` (such as /dev) may be written to
    and truncated but nothing may be created or removed in them. No-new-privileges must
    already be set. Does nothing when `abi` is 0.
    """
    if abi <= 0:
        return
    rights = fs_rights(abi)

    attr = _RulesetAttr(handled_access_fs=rights)
    size = 8
    if abi >= 4 and not network:
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = _SCOPE_SIGNAL | _SCOPE_ABSTRACT_UNIX_SOCKET
        size = 24
    ruleset = _libc.syscall("landlock_create_ruleset", ctypes.byref(attr), size, 0)

    try:
        for path in readable_around(hidden):
            _allow(ruleset, path, _READ_FILE | _READ_DIR, missing_ok=True)
        _allow(ruleset, workdir, rights)
        for path in device_dirs:
            _allow(ruleset, path, rights & (_READ_FILE | _READ_DIR | _WRITE_FILE | _TRUNCATE))
        _libc.syscall("landlock_restrict_self", ruleset, 0)
    finally:
        os.close(ruleset)


def readable_around(hidden: Iterable[str]) -> list[str]:
    """Paths whose subtrees, together, hold everything on the filesystem but `hidden`.

    Landlock only grants rights, beneath a path; to grant reading everywhere except some
    paths, grant it on every sibling of each directory on the way down to them. Entries
    created later next to those paths (a new directory in /tmp, say) stay unreadable. A
    directory that cannot be listed on the way stays unreadable as a whole.

    Symbolic links are left out: a rule on a link grants its target, which may be the very
    path to hide (Kubernetes mounts a secret as `token -> ..data/token`, `..data -> ..<time>`).
    What a link such as /bin -> usr/bin points to is granted as itself.
    """
    # Each directory on the way to a hidden path, with the names below it that lead on.
    ways: dict[str, set[str]] = {}
    ends: set[str] = set()
    # A hidden path reached through a link (/var/lock -> /run/lock) is hidden where it really
    # is too: granting the siblings on the literal way would grant the real one (/run) whole.
    forms = {form for path in hidden for form in (os.path.normpath(path), os.path.realpath(path))}
    for path in sorted(forms):
        parts = path.strip("/").split("/")
        current = "/"
        for part in parts:
            ways.setdefault(current, set()).add(part)
            current = os.path.join(current, part)
        ends.add(current)

    readable: list[str] = []
    for directory in sorted(ways):
        if directory in ends:  # hidden itself: nothing beneath it is granted
            continue
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        readable.extend(
            os.path.join(directory, name)
            for name in entries
            if name not in ways[directory] and not os.path.islink(os.path.join(directory, name))
        )
    return readable


def _allow(ruleset: int, path: str, rights: int, missing_ok: bool = False) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        if missing_ok:  # gone since it was listed, or a dangling symlink
            return
        raise
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            # A rule on a file may only carry the rights that apply to files.
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        _libc.syscall("landlock_add_rule", ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
    finally:
        os.close(fd)
