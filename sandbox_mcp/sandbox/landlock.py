"""The Landlock domain each run gets: the kernel's own fence around one run.

A process that calls `restrict` before exec enters a new domain, and everything it starts
stays in it. The kernel then refuses, for every process of the run:
- writing, creating, renaming or removing files anywhere but the run's workdir (and /dev for
  /dev/null and friends); reading and executing stay allowed, the container's read-only root
  already protects the rest;
- tracing or reading the memory of any process outside the domain (ABI 1), which covers the
  server, the supervisor and other runs, /proc/<pid>/mem included;
- sending a signal to any process outside the domain, and connecting to abstract Unix sockets
  outside it (ABI 6, Linux 6.12+);
- with the network off, TCP bind and connect (ABI 4), a second wall behind the seccomp filter.

Landlock needs no privilege and Docker's default seccomp profile allows it. On a kernel
without it, `abi_version` returns 0 and runs go without this layer: the posture says so.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
import os
from collections.abc import Iterable

from sandbox_mcp.sandbox import _libc

_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

# Filesystem rights (linux/landlock.h). Execute, read-file and read-dir are left unhandled,
# so they stay allowed everywhere.
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
    rights = _MODIFY
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    return rights


def restrict(abi: int, writable: Iterable[str], device_dirs: Iterable[str], network: bool) -> None:
    """Enter a new Landlock domain in which only `writable` may be modified.

    `device_dirs` (such as /dev) may be written to and truncated but nothing may be created
    or removed in them. No-new-privileges must already be set. Does nothing when `abi` is 0.
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
        for path in writable:
            _allow(ruleset, path, rights)
        for path in device_dirs:
            _allow(ruleset, path, rights & (_WRITE_FILE | _TRUNCATE))
        _libc.syscall("landlock_restrict_self", ruleset, 0)
    finally:
        os.close(ruleset)


def _allow(ruleset: int, path: str, rights: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        _libc.syscall("landlock_add_rule", ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
    finally:
        os.close(fd)
