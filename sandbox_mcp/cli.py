"""The command line: `sandbox-mcp` and `python -m sandbox_mcp` both land in `main`."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence

from sandbox_mcp import __version__
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

    configure_logging(settings.log_level)
    for adjustment in settings.adjustments():
        logger.warning("%s", adjustment)

    # Imported here so that `--version` and a bad setting answer without loading the SDK.
    from sandbox_mcp.sandbox.runner import Sandbox
    from sandbox_mcp.server.app import build

    try:
        sandbox = Sandbox(settings)
        sandbox.prepare()
    except ConfigurationError as exc:
        logger.error("refusing to start: %s", exc)
        return 2

    logger.info("sandbox-mcp %s starting on %s", __version__, args.transport)
    server = build(sandbox)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(args.transport)
    return 0


def configure_logging(level: str) -> None:
    """One line per event on stderr; stdout belongs to the MCP channel."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
