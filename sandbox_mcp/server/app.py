"""The MCP server: tools on top of one `Sandbox`, with instructions that state the truth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server import MCPServer

from sandbox_mcp import __version__
from sandbox_mcp.sandbox import packages
from sandbox_mcp.sandbox.runner import Sandbox
from sandbox_mcp.server import resources, session_tools, tools
from sandbox_mcp.server.arguments import StrictArguments
from sandbox_mcp.server.inflight import InFlightCalls
from sandbox_mcp.server.metrics import RunMetrics


def build(
    sandbox: Sandbox, metrics: RunMetrics | None = None, calls: InFlightCalls | None = None
) -> MCPServer:
    """An MCP server whose tools run code in `sandbox`. It starts and stops the sandbox.

    Its execute_code calls are counted in `metrics` (the HTTP transport serves them) and held
    in `calls` while in flight (the HTTP transport cancels those whose client left).
    """

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[None]:
        await sandbox.start()
        try:
            yield
        finally:
            await sandbox.close()

    server = MCPServer(
        name="sandbox-mcp",
        title="Code sandbox",
        version=__version__,
        instructions=instructions(sandbox),
        lifespan=lifespan,
        log_level=sandbox.settings.log_level.upper(),  # type: ignore[arg-type]
    )
    outputs = resources.OutputStore()
    tools.register(
        server, sandbox, metrics if metrics is not None else RunMetrics(), outputs, calls
    )
    resources.register(server, outputs)
    session_tools.register(server, sandbox)
    server.middleware.append(StrictArguments(server))
    return server


def instructions(sandbox: Sandbox) -> str:
    """What the model should know before it calls a tool, from the settings in force."""
    settings = sandbox.settings
    network = (
        "The network is closed: snippets cannot open internet sockets, so packages cannot "
        "be installed (no pip install, no npm install); use the standard library and what "
        "is preinstalled."
        if settings.network == "off"
        else "Snippets may open network connections."
    )
    curated = packages.curated()
    python_packages = f"Python has {', '.join(curated)} installed. " if curated else ""
    return (
        "Runs code snippets in isolated sandboxes. Without session_id each execute_code call "
        "gets a fresh working directory holding only its code and the files it sends, and a "
        'non-root user; nothing persists between calls. With session_id "new" a call opens '
        "a session, and later calls with the session_id it returns keep its files and, for "
        "Python and JavaScript, its variables, functions and imports; a timeout or limit "
        "loses that state but not the files; reset_session ends it, and it ends by itself "
        f"after {settings.session_idle_seconds:g} s unused. "
        "Write files only in the current directory: the files a run creates there are listed "
        "in the answer, images (a matplotlib plt.show() or savefig) shown as images and small "
        f"text files given as text. {python_packages}In shell code write errors with >&2, not "
        "> /dev/stderr, which the sandbox refuses. "
        f"Limits per run: {settings.timeout:g} s wall clock by default (at most "
        f"{settings.max_timeout:g} s), {settings.memory_mb} MB of memory, "
        f"{settings.cpu_seconds} s of CPU, {settings.max_processes} processes, "
        f"{settings.output_bytes // 1024} KB of each output stream shown (head and tail). "
        f"{network} Use list_languages to see the runtimes and their versions. A non-zero "
        "exit is a normal result: read stderr, fix the code and run again. A call refused "
        "with 'server busy' ran nothing: wait a few seconds and call again."
    )
