"""The whole output of runs whose output was cut, as MCP resources for a while.

When a stream was shortened to head and tail, its first `FULL_OUTPUT_BYTES` (the core keeps
them) stay readable as `sandbox://runs/{run_id}/stdout` (or `stderr`) for `KEEP_SECONDS`; so
does the text of an SVG a fresh run made, as `sandbox://runs/{run_id}/files/{path}`, since its
workdir is gone once the answer is out. They
are held in this process's memory, never on disk where a run could reach them, at most
`MAX_TOTAL_BYTES` in all: the oldest go first when a new one needs room. Each belongs to the
caller whose run made it (callers.py): another caller reads "not found", as for an unknown
run, since a run id is no secret (it names the run's workdir, which appears in /proc).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceNotFoundError

from sandbox_mcp.server.callers import caller_key

KEEP_SECONDS = 15 * 60
MAX_TOTAL_BYTES = 64 * 1024 * 1024
URI_TEMPLATE = "sandbox://runs/{run_id}/{stream}"
FILE_TEMPLATE = "sandbox://runs/{run_id}/files/{+path}"
STREAMS = ("stdout", "stderr")


def output_uri(run_id: str, stream: str) -> str:
    """The resource URI of one stream of one run."""
    return URI_TEMPLATE.format(run_id=run_id, stream=stream)


def file_uri(run_id: str, path: str) -> str:
    """The resource URI of a file a run made, kept in the store under `files/<path>`."""
    return f"sandbox://runs/{run_id}/files/{path}"


class OutputStore:
    """Bounded, expiring storage of whole output streams, by (run id, stream), each with the
    caller it belongs to."""

    def __init__(self, keep_seconds: float = KEEP_SECONDS, max_bytes: int = MAX_TOTAL_BYTES):
        self.keep_seconds = keep_seconds
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], tuple[float, bytes, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, run_id: str, stream: str, data: bytes, owner: str = "") -> bool:
        """Keep `data` for `owner`; False when it alone is larger than the store."""
        if len(data) > self.max_bytes:
            return False
        with self._lock:
            self._expire(time.monotonic())
            while self._entries and self._bytes + len(data) > self.max_bytes:
                _key, (_at, dropped, _owner) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)
            self._entries[(run_id, stream)] = (time.monotonic(), data, owner)
            self._bytes += len(data)
        return True

    def get(self, run_id: str, stream: str, owner: str = "") -> bytes | None:
        """The stream, or None when it expired, was dropped, never was or is not `owner`'s."""
        with self._lock:
            self._expire(time.monotonic())
            entry = self._entries.get((run_id, stream))
        return entry[1] if entry and entry[2] == owner else None

    def _expire(self, now: float) -> None:
        while self._entries:
            key, (at, data, _owner) = next(iter(self._entries.items()))
            if now - at < self.keep_seconds:
                return
            del self._entries[key]
            self._bytes -= len(data)


def register(server: MCPServer, store: OutputStore) -> None:
    """Publish the stored streams as the resource template `URI_TEMPLATE`."""

    @server.resource(
        URI_TEMPLATE,
        name="run_output",
        title="Whole output of a run",
        description="The whole stdout or stderr of a run whose output the answer shortened "
        f"(first 10 MB), readable for {KEEP_SECONDS // 60} minutes after the run.",
        mime_type="text/plain",
    )
    def run_output(run_id: str, stream: str, ctx: Context) -> str:
        owner = caller_key(ctx) or ""
        data = store.get(run_id, stream, owner) if stream in STREAMS else None
        if data is None:
            raise ResourceNotFoundError(
                f"no stored {stream} for run {run_id}: only shortened output is kept, for "
                f"{KEEP_SECONDS // 60} minutes"
            )
        return data.decode("utf-8", errors="replace")

    @server.resource(
        FILE_TEMPLATE,
        name="run_file",
        title="An SVG a run made",
        description="The text of an SVG file a run without a session made, as its answer "
        f"embedded it, readable for {KEEP_SECONDS // 60} minutes after the run.",
        mime_type="image/svg+xml",
    )
    def run_file(run_id: str, path: str, ctx: Context) -> str:
        data = store.get(run_id, f"files/{path}", caller_key(ctx) or "")
        if data is None:
            raise ResourceNotFoundError(
                f"no stored file {path!r} for run {run_id}: a run's workdir is removed after "
                f"it; only the SVGs its answer embedded are kept, for {KEEP_SECONDS // 60} "
                "minutes, for a caller with an MCP session (a session keeps all its files)"
            )
        return data.decode("utf-8", errors="replace")
