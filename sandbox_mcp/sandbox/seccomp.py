"""The seccomp filter every snippet process runs under.

It denies what no snippet needs and what would let one reach beyond its run:
- tracing and reading other processes' memory (ptrace, process_vm_readv/writev);
- io_uring, whose operations bypass seccomp entirely (it can open sockets unseen);
- memory that outlives the run or escapes its accounting: System V shared memory, message
  queues and semaphores and POSIX message queues (kernel objects that survive the process
  and are shared by uid), memfd_create and memfd_secret (unmapped pages of a memory file
  count in no process's memory, so they would slip past the memory limit);
- the kernel keyrings (add_key, keyctl, request_key), which persist per uid across runs;
- new namespaces (unshare, setns, and clone with a CLONE_NEW* flag): an unprivileged user
  namespace hands a snippet capabilities over kernel code that is otherwise out of reach, a
  steady source of privilege escalations. Docker's default profile refuses them too; this
  filter also holds when the server runs outside a container. clone3 passes its flags in
  memory the filter cannot read, so it answers ENOSYS and the C library falls back to clone;
- signals to the server, the launcher, the run's supervisor or to every process at once
  (kill(-1)), by pid compared against the filter's constants;
- pidfd_send_signal, whose target is a file descriptor the filter cannot see: runtimes that
  try it (Go 1.23 and later) fall back to kill() on ENOSYS;
- changing another process's limits, priority, scheduling or CPU affinity (prlimit64 with a
  new limit, setpriority, ioprio_set, sched_set*): only the caller's own (pid 0) may be
  changed. In shared mode every process of the server runs as the snippet's uid, and these
  calls are not refused by uid or by Landlock: a snippet could otherwise cap the server's
  open files or CPU time, or starve it of the CPU;
- with the network off, every socket family but AF_UNIX.

Signals to *other runs* are stopped by the run's Landlock domain where the kernel has signal
scoping (Linux 6.12+); without it, this filter alone cannot tell another run's pid from the
snippet's own child, and a snippet that learns another run's pid can signal it. That gap is
reported by the server's posture and written in the README.

Foreign architectures (32-bit calls on a 64-bit kernel) are killed outright: their syscall
numbers differ, so a filter written for the native table would not apply to them.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from sandbox_mcp.sandbox import _libc

# Classic BPF opcodes, as used by seccomp (linux/filter.h, linux/bpf_common.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

_SECCOMP_SET_MODE_FILTER = 1

# Offsets into struct seccomp_data: nr, arch, instruction_pointer, args[6].
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0_LOW = 16

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_X32_SYSCALL_BIT = 0x40000000

# Refused with EPERM: the call exists but is not for snippets.
_EPERM = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "shmget",
    "shmat",
    "shmctl",
    "shmdt",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "semget",
    "semop",
    "semctl",
    "semtimedop",
    "mq_open",
    "add_key",
    "request_key",
    "keyctl",
    "unshare",
    "setns",
)
# Refused with ENOSYS, "not implemented": callers that can do without fall back.
_ENOSYS = (
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "pidfd_send_signal",
    "memfd_create",
    "memfd_secret",
    "clone3",
)
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
# CLONE_NEWNET: the flags in clone's first argument (on x86_64 and aarch64) that make namespaces.
_CLONE_NEW_NAMESPACES = 0x7E020000
# Calls whose first argument names the process they change; only 0, "myself", passes.
_OWN_PROCESS = ("sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr")
# setpriority(which, who, ...) and ioprio_set(which, who, ...): only "this process, myself".
# who = 0 with a process group or a user as `which` means the caller's own, all of them.
_PRIO_PROCESS = 0
_IOPRIO_WHO_PROCESS = 1
_SIGNAL_CALLS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open")


@dataclass(frozen=True)
class FilterPolicy:
    """What the filter allows: the pids it protects and whether the network is open."""

    protected_pids: tuple[int, ...]
    network: bool


class _Program:
    """A tiny assembler: instructions with symbolic jump targets, resolved at the end."""

    def __init__(self) -> None:
        self._code: list[tuple[int, object, object, int]] = []
        self._labels: dict[str, int] = {}

    def load(self, offset: int) -> None:
        self._code.append((_LD_W_ABS, 0, 0, offset))

    def jump_if(self, opcode: int, value: int, target: str) -> None:
        # Fall through when false, jump to `target` when true.
        self._code.append((opcode, target, 0, value))

    def ret(self, value: int) -> None:
        self._code.append((_RET_K, 0, 0, value))

    def label(self, name: str) -> None:
        self._labels[name] = len(self._code)

    def assemble(self) -> bytes:
        out = bytearray()
        for index, (code, jt, jf, k) in enumerate(self._code):
            out += struct.pack(
                "=HBBI", code, self._offset(index, jt), self._offset(index, jf), k & 0xFFFFFFFF
            )
        return bytes(out)

    def _offset(self, index: int, target: object) -> int:
        if isinstance(target, int):
            return target
        distance = self._labels[str(target)] - index - 1
        if not 0 <= distance <= 255:
            raise ValueError(f"seccomp jump to {target} out of range ({distance})")
        return distance


def build_filter(policy: FilterPolicy, machine: str = _libc.MACHINE) -> bytes:
    """The filter program for `policy` on `machine`, as raw sock_filter structs."""
    numbers = _libc.SYSCALLS[machine]
    program = _Program()

    program.load(_OFF_ARCH)
    program.jump_if(_JEQ_K, _AUDIT_ARCH[machine], "native")
    program.ret(_RET_KILL_PROCESS)
    program.label("native")

    program.load(_OFF_NR)
    if machine == "x86_64":
        program.jump_if(_JGE_K, _X32_SYSCALL_BIT, "enosys")
    for name in _EPERM:
        program.jump_if(_JEQ_K, numbers[name], "eperm")
    for name in _ENOSYS:
        program.jump_if(_JEQ_K, numbers[name], "enosys")
    program.jump_if(_JEQ_K, numbers["clone"], "clone")
    for name in _OWN_PROCESS:
        program.jump_if(_JEQ_K, numbers[name], "own_process")
    program.jump_if(_JEQ_K, numbers["setpriority"], "setpriority")
    program.jump_if(_JEQ_K, numbers["ioprio_set"], "ioprio_set")
    program.jump_if(_JEQ_K, numbers["prlimit64"], "prlimit")
    if not policy.network:
        program.jump_if(_JEQ_K, numbers["socket"], "socket")
    for name in _SIGNAL_CALLS:
        program.jump_if(_JEQ_K, numbers[name], "signal")
    program.ret(_RET_ALLOW)

    program.label("clone")
    program.load(_OFF_ARG0_LOW)
    program.jump_if(_JSET_K, _CLONE_NEW_NAMESPACES, "eperm")
    program.ret(_RET_ALLOW)

    # pid_t arguments are 32-bit: the low word is the whole value.
    program.label("own_process")
    program.load(_OFF_ARG0_LOW)
    program.jump_if(_JEQ_K, 0, "allow")
    program.ret(_RET_ERRNO | errno_codes.EPERM)
    for call, which in (("setpriority", _PRIO_PROCESS), ("ioprio_set", _IOPRIO_WHO_PROCESS)):
        program.label(call)
        program.load(_OFF_ARG0_LOW)
        program.jump_if(_JEQ_K, which, f"{call}_who")
        program.ret(_RET_ERRNO | errno_codes.EPERM)
        program.label(f"{call}_who")
        program.load(_OFF_ARG0_LOW + 8)
        program.jump_if(_JEQ_K, 0, "allow")
        program.ret(_RET_ERRNO | errno_codes.EPERM)

    # prlimit64(pid, resource, new, old): another process's limits may be read, not set.
    program.label("prlimit")
    program.load(_OFF_ARG0_LOW)
    program.jump_if(_JEQ_K, 0, "allow")
    program.load(_OFF_ARG0_LOW + 16)
    program.jump_if(_JEQ_K, 0, "prlimit_new_high")
    program.ret(_RET_ERRNO | errno_codes.EPERM)
    program.label("prlimit_new_high")
    program.load(_OFF_ARG0_LOW + 20)
    program.jump_if(_JEQ_K, 0, "allow")
    program.ret(_RET_ERRNO | errno_codes.EPERM)

    program.label("socket")
    program.load(_OFF_ARG0_LOW)
    program.jump_if(_JEQ_K, socket.AF_UNIX, "allow")
    program.ret(_RET_ERRNO | errno_codes.EACCES)

    # The first argument of every signal call here is the target pid (or tgid): refuse the
    # protected ones, their process groups (negative pids) and -1, "everyone I may signal".
    program.label("signal")
    program.load(_OFF_ARG0_LOW)
    program.jump_if(_JEQ_K, 0xFFFFFFFF, "eperm")
    for pid in _unique(policy.protected_pids):
        program.jump_if(_JEQ_K, pid, "eperm")
        program.jump_if(_JEQ_K, -pid & 0xFFFFFFFF, "eperm")
    program.label("allow")
    program.ret(_RET_ALLOW)

    program.label("eperm")
    program.ret(_RET_ERRNO | errno_codes.EPERM)
    program.label("enosys")
    program.ret(_RET_ERRNO | errno_codes.ENOSYS)
    return program.assemble()


def install(policy: FilterPolicy) -> None:
    """Install the filter on the calling thread. No-new-privileges must already be set."""
    code = build_filter(policy)
    count = len(code) // 8
    buffer = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(count, ctypes.addressof(buffer))
    _libc.syscall("seccomp", _SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(prog))


def _unique(pids: Iterable[int]) -> list[int]:
    return sorted({pid for pid in pids if pid > 1})
