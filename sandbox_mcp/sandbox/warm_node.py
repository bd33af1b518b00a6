"""Warm JavaScript runs: node is started before the call, confined, and waits for its go.

A cold JavaScript run execs `node FLAGS main.js ARGS`, and some 40 ms of it go to node's own
start. Node cannot be forked once started (its threads and its event loop do not survive a
fork), so a warm run starts it ahead of the call instead: the server keeps JavaScript runs on
standby (runner.py), whose supervisor has taken the run's uid, made its workdir, and exec'd
`node FLAGS --require warm_node.js [standby] CHANNEL` exactly where a cold run execs node,
after the session, rlimits, Landlock and seccomp are in place, with the same environment.
The preload warm_node.js says it is ready on the socket CHANNEL and blocks reading it. At
the go the supervisor writes the caller's files and main file, fills the run's stdin and
sends `[main file, ...args]`; node's own `Module.runMain` then loads the main file as the
entry point, as it does cold (CommonJS or ES module by the same rules). The deadline starts
at the go. The process serves that one run and is never reused.

Stdin: a cold run's descriptor 0 is a sealed memory file the server filled (runner.py). Node
cannot receive a descriptor over a socket, so a node on standby gets an empty memory file as
descriptor 0 when it starts, and at the go the supervisor writes the stdin into it, without
moving its offset, and seals it: a warm run's stdin is then the same kind of file, seekable,
of the same size, as a cold run's.

What a warm run can learn that a cold one cannot: nothing of another run. It is its own
process, exec'd afresh for this run; nothing was forked from a process that held another
run's data, and the server's code is not in it (the preload is this package's public file).
It learns only that it waited: see below.

Where a warm run differs from a cold one:
- `process.uptime()`, `performance.now()` and `performance.timeOrigin` count from node's
  start, which was before the call (by as long as the run was on standby).
- /proc/self/cmdline shows the standby command (`--require .../warm_node.js [standby] N`);
  `process.argv` and `process.execArgv` are a cold run's.
- `require('module').runMain` is a bound function, not node's own.
- `process.moduleLoadList` lists node's stream and net modules before the main module: the
  preload loads them while on standby, where a cold run loads them at its first output to
  stdout or stderr (most programs), which halves the time of a short run that prints.
- The preload took descriptor CHANNEL (the highest the run may open, so that node's own
  descriptors and the program's are numbered as they are cold) until the go, and a Worker
  thread reads the preload file again before its own code (it does nothing there).
- Node's start happens under the run's limits before the go, as cold: its CPU time counts in
  the run's `cpu_ms` and against its CPU limit, not in `duration_ms`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NoReturn

BOOTSTRAP = str(Path(__file__).resolve().with_name("warm_node.js"))
# Where the cold command has its main file; node resolves it but never loads it.
PLACEHOLDER = "[standby]"
_READY = b"ready"


def standby_argv(cold: list[str]) -> list[str]:
    """The command of a run on standby, from the cold command `[node, FLAGS..., main file]`."""
    return [*cold[:-1], "--require", BOOTSTRAP, PLACEHOLDER]


def program_argv(standby: list[str], cold: list[str]) -> list[str]:
    """`[main file, ...args]` for the bootstrap, from a call's cold command. Raises ValueError
    when the call's node flags are not those the run on standby was started with."""
    flags = standby[:-3]
    if cold[: len(flags)] != flags or len(cold) <= len(flags):
        raise ValueError("the call's node command does not match the run on standby")
    return cold[len(flags) :]


def exec_when_told(argv: list[str], env: dict[str, str], channel: int, max_fds: int) -> NoReturn:
    """Exec node on standby with its end of the channel to the supervisor. Never returns.

    Called in the snippet process where a cold run execs, once every limit is in place.
    """
    # The highest descriptor the run may have: node's own and the program's keep the numbers
    # they get cold, the lowest free ones.
    highest = max_fds - 1
    if highest > channel:
        os.dup2(channel, highest, inheritable=True)
        os.close(channel)
        channel = highest
    else:
        os.set_inheritable(channel, True)
    os.execve(argv[0], [*argv, str(channel)], env)  # nosec B606 # the language's own node


def is_ready(message: bytes) -> bool:
    """Whether node's first word on the channel says it waits for its go."""
    return message == _READY


def go_message(program: list[str]) -> bytes:
    """The go node reads: `[main file, ...args]` as JSON."""
    return json.dumps(program).encode()
