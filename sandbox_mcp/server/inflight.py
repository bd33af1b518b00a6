"""Calls over HTTP whose connection dropped are cancelled: their answer can reach no one.

With an MCP session (the 2025 revisions of the protocol), the SDK answers a `tools/call` on
the stream of the POST that carried it. This server keeps no event store, so a client cannot
come back for an answer once that connection dropped; yet the SDK lets the handler run on,
and the run with it, to the run's deadline. This module links the two ends:
`InFlightCalls` holds a cancel scope for each call in flight, by its caller's key and its
JSON-RPC id, and `CancelOnDisconnect`, around the MCP app, watches each POST's body go by and
its `http.disconnect`, and cancels the calls that body carried. The cancelled handler ends
its run as a `notifications/cancelled` would.

A request without an MCP session (the 2026-07-28 revision) is served within its own HTTP
request: the SDK ends its handler with the connection already.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox_mcp.server.callers import key_from_headers

logger = logging.getLogger(__name__)


class InFlightCalls:
    """The cancel scopes of the calls in flight, by (caller key, JSON-RPC id as JSON).

    The id is kept as JSON, so that `2` and `"2"`, two ids to JSON-RPC, stay two. A second
    call under an id already in flight (JSON-RPC forbids it) is not tracked: a dropped
    connection cannot cancel the other caller's call by mistake, only fail to cancel this one.
    """

    def __init__(self) -> None:
        self._scopes: dict[tuple[str, str], anyio.CancelScope] = {}

    @contextlib.contextmanager
    def track(self, owner: str | None, request_id: object) -> Iterator[anyio.CancelScope]:
        """Run the block in a scope that `cancel` can end; `cancelled_caught` says if it did."""
        key = (owner, json.dumps(request_id)) if owner and request_id is not None else None
        with anyio.CancelScope() as scope:
            if key in self._scopes:
                key = None
            if key is not None:
                self._scopes[key] = scope
            try:
                yield scope
            finally:
                if key is not None and self._scopes.get(key) is scope:
                    del self._scopes[key]

    def cancel(self, owner: str, request_ids: list[str]) -> int:
        """Cancel the caller's calls with these ids; how many were in flight."""
        cancelled = 0
        for request_id in request_ids:
            scope = self._scopes.get((owner, request_id))
            if scope is not None:
                scope.cancel()
                cancelled += 1
        return cancelled


class CancelOnDisconnect:
    """ASGI middleware for the MCP endpoint: a POST whose client leaves before its answer
    has its calls cancelled (see the module's docstring)."""

    def __init__(self, app: ASGIApp, calls: InFlightCalls, max_body: int) -> None:
        self.app = app
        self.calls = calls
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        owner = None
        if scope["type"] == "http" and scope["method"] == "POST":
            owner = key_from_headers(Headers(scope=scope))
        if owner is None:
            await self.app(scope, receive, send)
            return

        body = bytearray()
        request_ids: list[str] = []

        async def watched() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) <= self.max_body:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    # Only the ids are needed from here on: the body's copy goes at once.
                    request_ids.extend(_request_ids(bytes(body)))
                    body.clear()
            elif message["type"] == "http.disconnect":
                cancelled = self.calls.cancel(owner, request_ids)
                if cancelled:
                    logger.info("a client left before its answer: %d call(s) cancelled", cancelled)
            return message

        await self.app(scope, watched, send)


def _request_ids(body: bytes) -> list[str]:
    """The ids of the requests in a JSON-RPC body (one message, or a batch), as JSON."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return []
    messages = parsed if isinstance(parsed, list) else [parsed]
    return [
        json.dumps(message["id"])
        for message in messages
        if isinstance(message, dict) and message.get("id") is not None and "method" in message
    ]
