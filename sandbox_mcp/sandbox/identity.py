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
from dataclasses import dataclass

from sandbox_mcp.errors import ConfigurationError

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
    """Hands out the pool's uids, one per run in flight."""

    def __init__(self, base: int, count: int) -> None:
        self._free = list(range(base, base + count))
        self._available = asyncio.Semaphore(count)

    async def acquire(self) -> int:
        await self._available.acquire()
        return self._free.pop(0)

    def release(self, uid: int) -> None:
        # Back at the end: a uid rests as long as possible before it is reused.
        self._free.append(uid)
        self._available.release()


def _effective_capabilities() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0
