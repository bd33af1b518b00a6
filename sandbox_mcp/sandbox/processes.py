"""Reading and ending the process tree of a run, through /proc.

The run's supervisor is a child subreaper, so every process the snippet starts stays below it
in the tree whatever it does: an orphan (a double fork, a `setsid` daemon) is re-parented to
the supervisor, never to init. Walking the supervisor's descendants therefore finds all of
a run's processes, in both identity modes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class TreeSample:
    """One look at a run's processes: how many, how many threads, memory in total (PSS)."""

    processes: int
    threads: int
    rss_bytes: int


# A task's state letters (proc(5)) once it has exited: zombie, dead.
_DEAD = (b"Z", b"X")


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from every one of its threads."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                found.extend(int(part) for part in handle.read().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, parents before their children."""
    order: list[int] = []
    pending = children(pid)
    seen: set[int] = set()
    while pending:
        child = pending.pop()
        if child in seen:
            continue
        seen.add(child)
        order.append(child)
        pending.extend(children(child))
    return order


def sample(pid: int) -> TreeSample:
    """Count the processes and threads below `pid` and add up their memory.

    Memory is the proportional set size (PSS): a page shared by n processes counts 1/n in
    each. Plain RSS would count a forked runtime's shared pages once per process, and a
    hundred small forks would look like gigabytes.
    """
    processes = threads = memory = 0
    for child in descendants(pid):
        try:
            with open(f"/proc/{child}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        processes += 1
        # Fields after the command name: state is [0]; num_threads is field 20 of
        # proc(5), [17] here; rss (pages) is field 24, [21] here.
        threads += int(fields[17])
        # The state just read spares the common case a second read of the same file.
        task = f"/proc/{child}" if fields[0] not in _DEAD else live_task(child)
        if task is not None:
            memory += _pss(task, fallback=int(fields[21]) * _PAGE)
    return TreeSample(processes, threads, memory)


def live_task(pid: int) -> str | None:
    """The /proc directory of a thread of `pid` that has not exited: the process's own, or,
    when its main thread has exited (the kernel then shows the process as a zombie, and its
    memory as none, while its other threads run on), one of those. None when all have."""
    if state(f"/proc/{pid}") not in _DEAD:
        return f"/proc/{pid}"
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        task = f"/proc/{pid}/task/{tid}"
        if state(task) not in _DEAD:
            return task
    return None


def state(task: str) -> bytes:
    """The state letter (proc(5)) of the process or thread whose /proc directory is `task`;
    X (dead) when it cannot be read."""
    try:
        with open(f"{task}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return b"X"


def _pss(task: str, fallback: int) -> int:
    try:
        with open(f"{task}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return fallback


def kill_tree(
    pid: int, *, sweep_uid: bool, on_reap: Callable[[int, int, Any], None], deadline: float = 5.0
) -> int:
    """SIGKILL every process below `pid` (the caller) and reap them; return how many died.

    With `sweep_uid` the caller owns a uid of its own (pool mode) and `kill(-1)` also takes
    every process of that uid in one call, as a second net behind the tree walk. The loop
    repeats until nothing is left below `pid`, so a fork bomb racing the kill still ends.
    """
    killed = 0
    give_up = time.monotonic() + deadline
    while True:
        alive = False
        if sweep_uid:
            # kill(-1) reports success whenever any other process exists, so its answer
            # says nothing; the walk below decides whether anything is left.
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)
        for child in descendants(pid):
            try:
                os.kill(child, signal.SIGKILL)
                killed += 1
                alive = True
            except ProcessLookupError:
                continue
        for reaped in reap():
            on_reap(*reaped)
        if not alive and not children(pid):
            return killed
        if time.monotonic() > give_up:
            return killed
        time.sleep(0.001)


def reap() -> list[tuple[int, int, Any]]:
    """Collect every child that has exited, without blocking: (pid, status, rusage)."""
    reaped = []
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, status, usage))
