"""Who is calling: the key that sessions belong to.

Over stdio there is one client, so one key. Over HTTP each MCP session (the `Mcp-Session-Id`
header the server hands out at initialisation) is a caller of its own, so that two clients of
one server never reach each other's sessions; an HTTP request without one (a stateless
transport) has no key, and gets no sessions, since every such caller would share one. An
authenticated transport should add the token's subject here; this is the one place that
decides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from mcp.server.mcpserver import Context
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

STDIO = "stdio"


NO_KEY = (
    "sessions need to know who calls: over HTTP, an MCP session (the Mcp-Session-Id header); "
    "this request has none (the 2026-07-28 revision has no MCP sessions: with the Python "
    'SDK, open the client with mode="legacy"). Leave session_id out for a fresh sandbox'
)


def caller_key(ctx: Context[Any, Any] | None) -> str | None:
    """The owner key of whoever sent the current request; None when it cannot be told."""
    if ctx is None:
        return STDIO
    try:
        request = ctx.request_context.request
    except ValueError:  # outside a request: the stdio client's own call path
        return STDIO
    if request is None:  # stdio carries no HTTP request
        return STDIO
    headers = getattr(request, "headers", None)
    if headers is None:
        return None
    return key_from_headers(headers)


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The owner key an HTTP request's headers give: its MCP session's, or None."""
    # A request of a protocol revision without the initialize handshake is served with no MCP
    # session at all: an Mcp-Session-Id it carries was never issued or checked by the SDK,
    # so it is a name the client chose, not a key.
    version = headers.get("mcp-protocol-version")
    if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
        return None
    session = headers.get("mcp-session-id")
    return f"http:{session}" if session else None


def log_label(owner: str | None) -> str | None:
    """A name for the caller in the log that does not give its key away: an MCP session id is
    a bearer credential for that session's sandboxes. None for stdio's one client."""
    if owner is None or owner == STDIO:
        return None
    return "http-" + hashlib.sha256(owner.encode()).hexdigest()[:12]
