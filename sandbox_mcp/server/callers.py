"""Who is calling: the key that sessions belong to.

Over stdio there is one client, so one key. Over HTTP each MCP session (the `Mcp-Session-Id`
header the server hands out at initialisation) is a caller of its own, so that two clients of
one server never reach each other's sessions. An authenticated transport should add the
token's subject here; this is the one place that decides.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context

STDIO = "stdio"


def caller_key(ctx: Context[Any, Any] | None) -> str:
    """The owner key of whoever sent the current request."""
    if ctx is None:
        return STDIO
    try:
        request = ctx.request_context.request
    except ValueError:  # outside a request: the stdio client's own call path
        return STDIO
    headers = getattr(request, "headers", None)
    session = headers.get("mcp-session-id") if headers is not None else None
    return f"http:{session}" if session else STDIO
