"""What this server is really running in, measured at startup rather than taken from docs.

The answers feed `server_info`, the log, and the decisions that depend on the machine: a run
root mounted `noexec` (Docker's `--tmpfs /tmp` default) cannot run compiled programs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sandbox_mcp.sandbox import _libc, landlock

_PR_GET_SECCOMP = 21


@dataclass(frozen=True)
class Posture:
    """The measured facts about the server's environment."""

    uid: int
    capabilities: tuple[str, ...]
    no_new_privs: bool
    server_seccomp: str  # "none", "strict" or "filter": what confines the server itself
    seccomp_available: bool
    landlock_abi: int
    root_read_only: bool
    run_root_exec: bool
    run_root_writable: bool
    network_interfaces: tuple[str, ...]
    proc_hides_pids: bool  # /proc mounted with hidepid: runs do not see other uids' processes


# Bit numbers of linux/capability.h, in order.
_CAPABILITY_NAMES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]


def measure(run_root: str) -> Posture:
    """Look at this process and this machine. `run_root` must exist."""
    status = _status_fields()
    effective = int(status.get("CapEff", "0"), 16)
    capabilities = tuple(
        _CAPABILITY_NAMES[bit] if bit < len(_CAPABILITY_NAMES) else f"CAP_{bit}"
        for bit in range(64)
        if effective & (1 << bit)
    )
    seccomp_mode = {"0": "none", "1": "strict", "2": "filter"}.get(
        status.get("Seccomp", ""), "none"
    )
    flags = os.statvfs(run_root).f_flag
    return Posture(
        uid=os.geteuid(),
        capabilities=capabilities,
        no_new_privs=status.get("NoNewPrivs") == "1",
        server_seccomp=seccomp_mode,
        seccomp_available=_seccomp_available(),
        landlock_abi=landlock.abi_version(),
        root_read_only=bool(os.statvfs("/").f_flag & os.ST_RDONLY),
        run_root_exec=not flags & os.ST_NOEXEC,
        run_root_writable=not flags & os.ST_RDONLY and os.access(run_root, os.W_OK),
        network_interfaces=_interfaces(),
        proc_hides_pids=_proc_hides_pids(),
    )


def _proc_hides_pids() -> bool:
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 3 and fields[1] == "/proc":
                    options = fields[3].split(",")
                    return any(
                        option.startswith("hidepid=") and option not in ("hidepid=0", "hidepid=off")
                        for option in options
                    )
    except OSError:
        pass
    return False


def _status_fields() -> dict[str, str]:
    fields: dict[str, str] = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _seccomp_available() -> bool:
    # PR_GET_SECCOMP answers EINVAL on a kernel built without seccomp.
    try:
        _libc.prctl(_PR_GET_SECCOMP)
    except OSError:
        return False
    return True


def _interfaces() -> tuple[str, ...]:
    # /proc/self/net shows this process's network namespace; /sys/class/net shows the one
    # that mounted /sys, which need not be ours.
    try:
        with open("/proc/self/net/dev") as devices:
            lines = devices.read().splitlines()[2:]
    except OSError:
        return ()
    return tuple(sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line))
