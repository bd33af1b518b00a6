"""The command line: `sandbox-mcp` and `python -m sandbox_mcp` both land in `main`."""

from __future__ import annotations

import contextlib
import functools
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
    from sandbox_mcp.server import stdio
    from sandbox_mcp.server.app import build
    from sandbox_mcp.server.inflight import InFlightCalls
    from sandbox_mcp.server.metrics import RunMetrics
    from sandbox_mcp.server.shutdown import serve_until_terminated

    try:
        sandbox = Sandbox(settings)
        sandbox.prepare()
    except ConfigurationError as exc:
        logger.error("refusing to start: %s", exc)
        return 2

    metrics = RunMetrics()
    calls = InFlightCalls()
    server = build(sandbox, metrics, calls)
    if settings.transport == "http":
        # Only now: a stdio server does not load the HTTP app or build it.
        from sandbox_mcp.server.http import serve

        log_http_start(settings)
        log_admission(settings)
        serve(server, sandbox, metrics, calls)
        return 0

    logger.info("sandbox-mcp %s starting on stdio", __version__)
    log_admission(settings)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve_until_terminated, functools.partial(stdio.serve, server), sandbox)
    return 0


def log_admission(settings: Settings) -> None:
    """Say how many runs go at once, and how many calls may wait how long."""
    logger.info(
        "at most %d runs at once, %d MB memory budget; %d calls may wait %gs",
        settings.max_concurrent_runs,
        settings.memory_budget_mb,
        settings.max_queued,
        settings.queue_timeout,
    )


def log_http_start(settings: Settings) -> None:
    """Say where the HTTP transport listens and who may use it; never the token."""
    logger.info(
        "sandbox-mcp %s starting on http://%s:%d/mcp, %s",
        __version__,
        settings.host,
        settings.port,
        "bearer token required" if settings.auth_token else "no token",
    )
    if settings.auth_token is None:
        logger.warning(
            "no auth token: any process on this machine that can reach port %d can run code; "
            "set SANDBOX_AUTH_TOKEN or --auth-token-file",
            settings.port,
        )
