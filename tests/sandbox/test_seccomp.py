"""The seccomp filter, installed for real in a child process."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap

import pytest

from sandbox_mcp.sandbox.seccomp import FilterPolicy, build_filter


def run_filtered(body: str, protected: tuple[int, ...] = (), network: bool = False) -> str:
    """Run `body` in a fresh interpreter after installing the filter; return its stdout."""
    script = textwrap.dedent(
        f"""
        import ctypes, os, signal, socket
        from sandbox_mcp.sandbox import _libc, seccomp
        _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.install(seccomp.FilterPolicy(protected_pids={protected!r}, network={network!r}))
        """
    ) + textwrap.dedent(body)
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_filter_assembles_for_each_architecture(machine: str) -> None:
    code = build_filter(FilterPolicy(protected_pids=(1234, 5678), network=False), machine)

    assert len(code) % 8 == 0
    first = struct.unpack("=HBBI", code[:8])
    assert first == (0x20, 0, 0, 4)  # load the architecture first


def test_signals_to_protected_pids_and_to_everyone_are_refused() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        out = run_filtered(
            f"""
            for target in ({sleeper.pid}, -{sleeper.pid}, -1):
                try:
                    os.kill(target, 0)
                    print(target, 'allowed')
                except PermissionError:
                    print(target, 'refused')
            print('own child', os.waitpid(os.spawnv(os.P_NOWAIT, '/bin/true', ['true']), 0)[1])
            os.kill(os.getpid(), 0)
            print('self allowed')
            """,
            protected=(sleeper.pid,),
        )
    finally:
        sleeper.kill()
        sleeper.wait()

    assert out.splitlines() == [
        f"{sleeper.pid} refused",
        f"-{sleeper.pid} refused",
        "-1 refused",
        "own child 0",
        "self allowed",
    ]


def test_ptrace_and_io_uring_are_refused() -> None:
    out = run_filtered(
        """
        libc = ctypes.CDLL(None, use_errno=True)
        print('ptrace', libc.ptrace(0, 0, 0, 0), ctypes.get_errno())
        setup = _libc.syscall_number('io_uring_setup')
        print('io_uring', libc.syscall(setup, 4, 0), ctypes.get_errno())
        """
    )

    assert out.splitlines() == ["ptrace -1 1", "io_uring -1 38"]


def test_new_namespaces_are_refused_and_threads_and_processes_still_start() -> None:
    out = run_filtered(
        """
        import subprocess, threading
        libc = ctypes.CDLL(None, use_errno=True)
        print('unshare', libc.unshare(0x10000000), ctypes.get_errno())
        print('setns', libc.setns(0, 0), ctypes.get_errno())
        clone = _libc.syscall_number('clone')
        print('clone user ns', libc.syscall(clone, 0x10000000 | 17, 0, 0, 0, 0), ctypes.get_errno())
        print('clone3', libc.syscall(_libc.syscall_number('clone3'), 0, 0), ctypes.get_errno())
        worker = threading.Thread(target=print, args=('thread ran',))
        worker.start()
        worker.join()
        print('child exit', subprocess.run(['/bin/true']).returncode)
        """
    )

    assert out.splitlines() == [
        "unshare -1 1",
        "setns -1 1",
        "clone user ns -1 1",
        "clone3 -1 38",
        "thread ran",
        "child exit 0",
    ]


def test_only_the_callers_own_limits_priority_and_scheduling_may_be_changed() -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        out = run_filtered(
            f"""
            import resource
            def attempt(name, call):
                try:
                    call()
                    print(name, 'allowed')
                except PermissionError:
                    print(name, 'refused')
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            attempt('own rlimit', lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard)))
            attempt('own prlimit', lambda: resource.prlimit(0, resource.RLIMIT_CORE, (0, 0)))
            attempt('read other', lambda: resource.prlimit({other.pid}, resource.RLIMIT_CPU))
            attempt('set other', lambda: resource.prlimit({other.pid}, resource.RLIMIT_CPU, (9, 9)))
            attempt('own nice', lambda: os.nice(1))
            attempt('other priority', lambda: os.setpriority(os.PRIO_PROCESS, {other.pid}, 19))
            attempt('user priority', lambda: os.setpriority(os.PRIO_USER, os.getuid(), 19))
            attempt('own affinity', lambda: os.sched_setaffinity(0, os.sched_getaffinity(0)))
            attempt('other affinity', lambda: os.sched_setaffinity({other.pid}, {{0}}))
            attempt('other scheduler', lambda: os.sched_setscheduler(
                {other.pid}, os.SCHED_IDLE, os.sched_param(0)))
            """
        )
    finally:
        other.kill()
        other.wait()

    assert out.splitlines() == [
        "own rlimit allowed",
        "own prlimit allowed",
        "read other allowed",
        "set other refused",
        "own nice allowed",
        "other priority refused",
        "user priority refused",
        "own affinity allowed",
        "other affinity refused",
        "other scheduler refused",
    ]


def test_network_off_allows_only_unix_sockets() -> None:
    out = run_filtered(
        """
        for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
            try:
                socket.socket(family, socket.SOCK_STREAM).close()
                print(family.name, 'allowed')
            except PermissionError:
                print(family.name, 'refused')
        """
    )

    assert out.splitlines() == ["AF_UNIX allowed", "AF_INET refused", "AF_INET6 refused"]


def test_network_on_allows_inet_sockets() -> None:
    out = run_filtered(
        "socket.socket(socket.AF_INET, socket.SOCK_STREAM).close(); print('allowed')",
        network=True,
    )

    assert out == "allowed\n"


def test_pid_arguments_compare_as_32_bit_values() -> None:
    # A protected pid must be refused however the caller widens it.
    assert os.getpid() > 1
    code = build_filter(FilterPolicy(protected_pids=(4242,), network=True), "x86_64")
    values = {struct.unpack("=HBBI", code[i : i + 8])[3] for i in range(0, len(code), 8)}

    assert 4242 in values
    assert (-4242) & 0xFFFFFFFF in values
