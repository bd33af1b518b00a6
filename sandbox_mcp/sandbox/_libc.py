"""The few libc calls the standard library lacks: prctl and raw syscalls.

Loaded once, before the launcher forks, so that forked children only call into it.
"""

from __future__ import annotations

import ctypes
import os
import platform

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

MACHINE = platform.machine()

# Syscall numbers differ between architectures; these are the ones this project calls or
# filters. x86_64 from arch/x86/entry/syscalls, aarch64 from the generic table.
SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "shmget": 29,
        "shmat": 30,
        "shmctl": 31,
        "socket": 41,
        "socketpair": 53,
        "clone": 56,
        "kill": 62,
        "semget": 64,
        "setpriority": 141,
        "sched_setparam": 142,
        "sched_setscheduler": 144,
        "sched_setaffinity": 203,
        "ioprio_set": 251,
        "prlimit64": 302,
        "sched_setattr": 314,
        "semop": 65,
        "semctl": 66,
        "shmdt": 67,
        "msgget": 68,
        "msgsnd": 69,
        "msgrcv": 70,
        "msgctl": 71,
        "ptrace": 101,
        "rt_sigqueueinfo": 129,
        "tkill": 200,
        "semtimedop": 220,
        "tgkill": 234,
        "mq_open": 240,
        "unshare": 272,
        "add_key": 248,
        "request_key": 249,
        "keyctl": 250,
        "rt_tgsigqueueinfo": 297,
        "setns": 308,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "seccomp": 317,
        "memfd_create": 319,
        "pidfd_send_signal": 424,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "pidfd_open": 434,
        "clone3": 435,
        "pidfd_getfd": 438,
        "landlock_create_ruleset": 444,
        "landlock_add_rule": 445,
        "landlock_restrict_self": 446,
        "memfd_secret": 447,
    },
    "aarch64": {
        "ioprio_set": 30,
        "unshare": 97,
        "sched_setparam": 118,
        "sched_setscheduler": 119,
        "sched_setaffinity": 122,
        "setpriority": 140,
        "prlimit64": 261,
        "sched_setattr": 274,
        "mq_open": 180,
        "msgget": 186,
        "msgctl": 187,
        "msgrcv": 188,
        "msgsnd": 189,
        "semget": 190,
        "semctl": 191,
        "semtimedop": 192,
        "semop": 193,
        "shmget": 194,
        "shmctl": 195,
        "shmat": 196,
        "shmdt": 197,
        "add_key": 217,
        "request_key": 218,
        "keyctl": 219,
        "clone": 220,
        "setns": 268,
        "memfd_create": 279,
        "socket": 198,
        "socketpair": 199,
        "kill": 129,
        "ptrace": 117,
        "rt_sigqueueinfo": 138,
        "tkill": 130,
        "tgkill": 131,
        "rt_tgsigqueueinfo": 240,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "seccomp": 277,
        "pidfd_send_signal": 424,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "pidfd_open": 434,
        "clone3": 435,
        "pidfd_getfd": 438,
        "landlock_create_ruleset": 444,
        "landlock_add_rule": 445,
        "landlock_restrict_self": 446,
        "memfd_secret": 447,
    },
}


def syscall_number(name: str) -> int:
    try:
        return SYSCALLS[MACHINE][name]
    except KeyError:
        raise OSError(f"syscall {name} is not known on {MACHINE}") from None


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result = _libc.prctl(option, arg2, arg3, arg4, arg5)
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")
    return result


def syscall(name: str, *args: object) -> int:
    result = _libc.syscall(syscall_number(name), *args)
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")
    return result
