"""The stdio transport, read and written by the event loop itself.

The SDK's stdio transport wraps stdin and stdout in anyio's thread-backed files: every line
read, every write and every flush is a trip to a worker thread and back, six for each call.
On two cores shared with the client and the snippets, a trip costs from a tenth to half a
millisecond (profiled with cProfile over 500 warm calls: the writes alone averaged 0.42 ms).
Here the loop watches the two descriptors and reads and writes them without blocking, and the
SDK's own message handling runs unchanged on top (its `stdio_server`, given these streams).

Requests are lines ended by "\n", as MCP's stdio transport has them; the SDK's own reader also
took a lone "\r" for an end of line, and this one does not.

Only a pipe or a socket is served this way: a terminal or a regular file on stdin or stdout
keeps the SDK's transport (the loop cannot watch a regular file, and a terminal's
non-blocking mode would reach the shell that shares it).

As the SDK does, descriptors 0 and 1 are pointed at /dev/null and stderr while serving, so
that nothing the server starts can read the client's requests or write into its answers;
the wire lives on private duplicates, and both are put back at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from mcp.server import MCPServer
from mcp.server.stdio import stdio_server

_READ_BYTES = 256 * 1024

T = TypeVar("T")


async def serve(server: MCPServer) -> None:
    """Serve `server` on stdin and stdout until the client closes stdin."""
    if not (_watchable(0) and _watchable(1)):
        await server.run_stdio_async()
        return

    async with _wire() as (lines, answers), stdio_server(lines, answers) as streams:  # type: ignore[arg-type]
        # The SDK has no public way to serve its server on given streams; this is what its
        # own run_stdio_async does with the streams of its transport.
        lowlevel = server._lowlevel_server
        await lowlevel.run(*streams, lowlevel.create_initialization_options())


def _watchable(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


# The private duplicates of the wire while serving, for `give_back_blocking`.
_serving: list[int] = []


def give_back_blocking() -> None:
    """Put the client's pipes back in blocking mode, which the process that shares them
    (the client's shell, the next program reading the same stdin) expects. For an exit that
    skips the transport's own clean-up (os._exit after SIGTERM)."""
    for fd in _serving:
        with contextlib.suppress(OSError):
            os.set_blocking(fd, True)


@contextlib.asynccontextmanager
async def _wire() -> AsyncIterator[tuple[_Lines, _Answers]]:
    wire_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    wire_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    os.set_blocking(wire_in, False)
    os.set_blocking(wire_out, False)
    _serving[:] = [wire_in, wire_out]
    try:
        yield _Lines(wire_in), _Answers(wire_out)
    finally:
        # The pipes' blocking mode is shared with whoever else holds them: give it back.
        give_back_blocking()
        _serving.clear()
        for private, fd in ((wire_in, 0), (wire_out, 1)):
            with contextlib.suppress(OSError):
                os.dup2(private, fd)
            os.close(private)


class _Lines:
    """The requests on stdin, one line each, as text (invalid UTF-8 replaced, as the SDK does).

    A line is kept whole however long it is, as with the SDK's transport: the size limits on
    code, stdin and files are applied to the parsed request.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._searched = 0
        self._ended = False

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        while True:
            end = self._buffer.find(b"\n", self._searched)
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                self._searched = 0
                return line.decode("utf-8", errors="replace")
            self._searched = len(self._buffer)
            if self._ended:
                if not self._buffer:
                    raise StopAsyncIteration
                rest = bytes(self._buffer)
                self._buffer.clear()
                return rest.decode("utf-8", errors="replace")
            chunk = await _when_ready(self._fd, True, os.read, self._fd, _READ_BYTES)
            self._ended = not chunk
            self._buffer += chunk


class _Answers:
    """The answers on stdout: each written whole before the next, waiting while the pipe is full."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8"))
        while data:
            written = await _when_ready(self._fd, False, os.write, self._fd, data)
            data = data[written:]

    async def flush(self) -> None:
        """Nothing to do: every write went to the pipe before `write` returned."""


async def _when_ready(fd: int, reading: bool, attempt: Callable[..., T], *args: object) -> T:
    """`attempt(*args)` as soon as it does not find `fd` busy (BlockingIOError)."""
    loop = asyncio.get_running_loop()
    watch = loop.add_reader if reading else loop.add_writer
    unwatch = loop.remove_reader if reading else loop.remove_writer
    while True:
        try:
            return attempt(*args)
        except BlockingIOError:
            pass
        ready = loop.create_future()
        watch(fd, _wake, ready)
        try:
            await ready
        finally:
            unwatch(fd)


def _wake(ready: asyncio.Future[None]) -> None:
    # The loop may call back again before the waiting task runs: only the first call counts.
    if not ready.done():
        ready.set_result(None)
