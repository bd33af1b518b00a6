"""The launcher: a small single-threaded process that forks one supervisor per run.

The MCP server is threaded (its transports use worker threads), and forking a threaded
process to run Python code before exec is unsafe. So the server starts this process once, at
startup, and sends it each run over a Unix socket: the run's descriptors (stdin, stdout,
stderr, the control socket, the payload, and the JSON `RunSpec` in a memory file). The
launcher forks, and the child reads the spec and becomes the run's supervisor. Forking this
small process costs about a millisecond.

The launcher itself never reads a spec: what one run asked for (its arguments, say) must not
linger in memory that the next run's processes are forked from. That matters for the warm
launcher (warm.py), whose snippets run in a fork of it.

It is a child subreaper: if a supervisor ever died before its run's processes, they would be
re-parented here, and the launcher kills any child it did not start itself. When the server
goes away (EOF on the socket, or the parent-death signal), it stops every supervisor, which
kill their runs and remove their workdirs, and exits.

Run it as `python -I -m sandbox_mcp.sandbox.launcher FD` with FD the inherited socket.
"""

from __future__ import annotations

import array
import contextlib
import os
import selectors
import signal
import socket
import sys
import time

from sandbox_mcp.sandbox import _libc
from sandbox_mcp.sandbox.processes import children
from sandbox_mcp.sandbox.spec import RunSpec
from sandbox_mcp.sandbox.supervisor import RunFds, supervise

_FDS_PER_RUN = 6
# What the server sends with the descriptors: a fixed marker, never run data.
RUN_MESSAGE = b"run"


class Launcher:
    """Receives runs on `channel` and forks a supervisor for each."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.supervisors: set[int] = set()
        self.stopping = False

    def serve(self) -> None:
        """Serve until the server closes the channel or asks us to stop."""
        # SIGCHLD wakes the loop through a pipe, so that a finished supervisor is reaped at
        # once instead of lingering as a zombie until the next run.
        wakeup_read, wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup_write)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

        with selectors.DefaultSelector() as selector:
            selector.register(self.channel, selectors.EVENT_READ, "channel")
            selector.register(wakeup_read, selectors.EVENT_READ, "child")
            while not self.stopping:
                for key, _ in selector.select(timeout=1.0):
                    if key.data == "child":
                        _drain(wakeup_read)
                    else:
                        self.receive()
                self.reap()
        self.stop_all()

    def receive(self) -> None:
        fds = array.array("i")
        try:
            data, ancillary, _flags, _addr = self.channel.recvmsg(
                len(RUN_MESSAGE), socket.CMSG_SPACE(_FDS_PER_RUN * fds.itemsize)
            )
        except (ConnectionResetError, BrokenPipeError):
            data, ancillary = b"", []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])

        if not data:
            self.stopping = True
            return
        if len(fds) != _FDS_PER_RUN:
            for fd in fds:
                os.close(fd)
            return
        self.fork_supervisor(list(fds))

    def fork_supervisor(self, fds: list[int]) -> None:
        stdin, stdout, stderr, control_fd, payload, spec_fd = fds
        try:
            pid = os.fork()
        except OSError as exc:
            # Out of processes (a run's fork bomb against a pids limit, say): this run cannot
            # start, and the server learns it when its control socket closes. The launcher
            # must live on for the next runs.
            print(f"launcher: could not fork a supervisor: {exc}", file=sys.stderr, flush=True)
            for fd in fds:
                os.close(fd)
            return
        if pid == 0:
            status = 0
            try:
                self.channel.close()
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGTERM)
                control = socket.socket(fileno=control_fd)
                spec = RunSpec.from_json(_read_all(spec_fd))
                os.close(spec_fd)
                supervise(spec, RunFds(stdin, stdout, stderr, payload), control)
            except BaseException:
                status = 1
            finally:
                os._exit(status)

        self.supervisors.add(pid)
        for fd in fds:
            os.close(fd)

    def reap(self) -> None:
        """Collect exited supervisors; kill any child that is not one (an orphan)."""
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            self.supervisors.discard(pid)

        for pid in children(os.getpid()):
            if pid not in self.supervisors:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue

    def stop_all(self, grace: float = 5.0) -> None:
        """Ask every supervisor to end its run and clean up, then wait for them."""
        for pid in list(self.supervisors):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                self.supervisors.discard(pid)
        give_up = time.monotonic() + grace
        while self.supervisors and time.monotonic() < give_up:
            self.reap()
            time.sleep(0.01)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass


def main(argv: list[str]) -> int:
    return serve(int(argv[1]))


def serve(fd: int) -> int:
    """Be the launcher on the inherited socket `fd` until the server goes away."""
    channel = socket.socket(fileno=fd)
    channel.setblocking(True)

    # Die with the server, stay out of its way: no core, no ptrace, no reparented orphans.
    _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGTERM)
    _libc.prctl(_libc.PR_SET_CHILD_SUBREAPER, 1)
    _libc.prctl(_libc.PR_SET_DUMPABLE, 0)

    launcher = Launcher(channel)

    def stop(signum: int, frame: object) -> None:
        launcher.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    launcher.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
