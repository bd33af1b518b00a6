"""The command line: `sandbox-mcp` and `python -m sandbox_mcp` both land in `main`."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence

from sandbox_mcp import __version__, logs
from sandbox_mcp.config import Settings
from sandbox_mcp.errors import ConfigurationError

logger = logging.getLogger("sandbox_mcp")


def main(argv: Sequence[str] | None = None) -> int:
    """Read the settings, then serve MCP on the chosen transport until the client leaves."""
    try:
        settings, args = Settings.load(argv)
    except ConfigurationError as exc:
        print(f"sandbox-mcp: {exc}", file=sys.stderr)
        return 2
    if args.version:
        print(f"sandbox-mcp {__version__}")
        return 0

    logs.configure(settings.log_level, settings.log_format)
    for adjustment in settings.adjustments():
        logger.warning("%s", adjustment)

    # Imported here so that `--version` and a bad setting answer without loading the SDK.
    import anyio

    from sandbox_mcp.sandbox.runner import Sandbox
    from sandbox_mcp.server.app import build
    from sandbox_mcp.server.shutdown import serve_until_terminated

    try:
        sandbox = Sandbox(settings)
        sandbox.prepare()
    except ConfigurationError as exc:
        logger.error("refusing to start: %s", exc)
        return 2

    logger.info(
        "sandbox-mcp %s starting on %s: at most %d runs at once, %d MB memory budget, "
        "%d calls may wait %gs",
        __version__,
        args.transport,
        settings.max_concurrent_runs,
        settings.memory_budget_mb,
        settings.max_queued,
        settings.queue_timeout,
    )
    server = build(sandbox)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve_until_terminated, server.run_stdio_async, sandbox)
    return 0
