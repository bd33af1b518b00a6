"""The launcher outlives a run it cannot start."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from sandbox_mcp.sandbox import launcher as launcher_module
from sandbox_mcp.sandbox.launcher import Launcher


def test_a_failed_fork_closes_the_runs_descriptors_and_the_launcher_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    control, control_remote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pipes = [os.pipe() for _ in range(5)]
    fds = [read for read, _ in pipes[:2]] + [pipes[2][0], control_remote.detach()]
    fds += [pipes[3][0], pipes[4][0]]

    def no_more_processes() -> int:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(launcher_module.os, "fork", no_more_processes)
    launcher = Launcher(theirs)
    try:
        launcher.fork_supervisor(fds)

        # Every descriptor of the run is closed: the server sees its control socket end.
        for fd in fds:
            with pytest.raises(OSError):
                os.fstat(fd)
        assert control.recv(16) == b""
        assert launcher.supervisors == set()
    finally:
        # The read ends were the launcher's to close; their numbers may be in use again.
        for _read, write in pipes:
            os.close(write)
        for sock in (ours, theirs, control):
            sock.close()
