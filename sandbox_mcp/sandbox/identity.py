"""Who a run runs as: a uid of its own from a pool, or the server's own non-root uid.

- pool: the server may switch users (it is root, or holds CAP_SETUID and CAP_SETGID). Each
  concurrent run takes a uid/gid from a pool and gives it back only when every process of
  the run is dead, so runs cannot signal, trace or read each other or the server.
- shared: the server cannot switch (the container's `--cap-drop ALL` with a non-root user).
  Runs share the server's uid. The server and launcher make themselves non-dumpable; the
  seccomp filter refuses signals aimed at them; the run's Landlock domain refuses signals and
  tracing across runs. What stays possible is listed in the README under "Identity modes".

A snippet never runs as uid 0: a server started as root without the means to drop refuses.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from dataclasses import dataclass

from sandbox_mcp.errors import ConfigurationError, UidPoolTaken
from sandbox_mcp.sandbox import files

_CAP_SETGID = 6
_CAP_SETUID = 7


@dataclass(frozen=True)
class Identity:
    """The identity mode in force and, in pool mode, the uid range."""

    mode: str
    server_uid: int
    uid_base: int | None = None
    uid_count: int | None = None


def can_switch_users() -> bool:
    """True when this process may setuid/setgid to arbitrary ids."""
    effective = _effective_capabilities()
    return bool(effective & (1 << _CAP_SETUID)) and bool(effective & (1 << _CAP_SETGID))


def choose(requested: str, uid_base: int, uid_count: int) -> Identity:
    """Pick the identity mode for `requested` ("auto", "pool" or "shared"), or refuse."""
    uid = os.geteuid()
    switch = can_switch_users()

    if requested == "auto":
        requested = "pool" if switch else "shared"

    if requested == "pool":
        if not switch:
            raise ConfigurationError(
                "identity 'pool' needs CAP_SETUID and CAP_SETGID (run as root, or add "
                "--cap-add SETUID --cap-add SETGID); use SANDBOX_IDENTITY=shared otherwise"
            )
        if uid_base <= uid < uid_base + uid_count:
            raise ConfigurationError("the server's own uid lies inside SANDBOX_UID_BASE's pool")
        return Identity("pool", uid, uid_base, uid_count)

    if uid == 0:
        raise ConfigurationError(
            "refusing to run snippets as root: the server runs as uid 0 but cannot switch to "
            "another user. Start it as a non-root user (docker run --user 65534:65534 ...) "
            "or give it CAP_SETUID and CAP_SETGID (--cap-add SETUID --cap-add SETGID)"
        )
    return Identity("shared", uid)


class UidPool:
    """Hands out the pool's uids, one per run in flight.

    The pool's uids must belong to this server alone: a run's clean-up kills every process
    of its uid, so a uid shared with an account, a service or a second server would have
    those killed (and could read their files). `claim` checks that and holds a lock on each
    uid for as long as the pool lives.
    """

    def __init__(self, base: int, count: int) -> None:
        self._free = list(range(base, base + count))
        self._available = asyncio.Semaphore(count)
        self._locks: list[tuple[int, str]] = []

    def claim(self) -> None:
        """Lock every uid of the pool, or raise `ConfigurationError` saying which is taken."""
        uids = list(self._free)
        for uid in uids:
            try:
                account = pwd.getpwuid(uid).pw_name
            except KeyError:
                continue
            raise ConfigurationError(
                f"uid {uid} of the pool belongs to the account {account!r}; set "
                "SANDBOX_UID_BASE to a range no account uses"
            )

        directory = _lock_directory()
        for uid in uids:
            path = os.path.join(directory, f"{uid}.lock")
            fd = files.lock_file(path)
            if fd is None:
                self.release_claim()
                raise UidPoolTaken(
                    f"uid {uid} of the pool is in use by another sandbox-mcp on this machine; "
                    "give each server its own SANDBOX_UID_BASE range"
                )
            self._locks.append((fd, path))

        busy = _processes_of(set(uids))
        if busy:
            self.release_claim()
            uid, pid = busy[0]
            raise ConfigurationError(
                f"process {pid} already runs as uid {uid} of the pool; set SANDBOX_UID_BASE to "
                "a range nothing else uses"
            )

    def release_claim(self) -> None:
        for fd, path in self._locks:
            files.unlock_file(path, fd)
        self._locks.clear()

    async def acquire(self) -> int:
        await self._available.acquire()
        return self._free.pop(0)

    @property
    def free(self) -> int:
        return len(self._free)

    async def acquire_now(self) -> int | None:
        """A uid if one is free at once (never waits), else None."""
        if self._available.locked():
            return None
        return await self.acquire()

    def release(self, uid: int) -> None:
        # Back at the end: a uid rests as long as possible before it is reused.
        self._free.append(uid)
        self._available.release()


# /run/lock is the machine's lock directory. Only where it is read-only, as in the container,
# are the locks kept in /tmp, and there /tmp is the container's own tmpfs.
_FALLBACK_LOCK_PARENT = "/tmp"  # nosec B108


def _lock_directory() -> str:
    for parent in ("/run/lock", _FALLBACK_LOCK_PARENT):
        path = os.path.join(parent, "sandbox-mcp-uids")
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    raise ConfigurationError("no writable lock directory (/run/lock or /tmp) for the uid pool")


def _processes_of(uids: set[int]) -> list[tuple[int, int]]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            owner = entry.stat().st_uid
        except OSError:
            continue
        if owner in uids:
            found.append((owner, int(entry.name)))
    return found


def _effective_capabilities() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0
