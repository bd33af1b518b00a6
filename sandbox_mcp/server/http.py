"""The Streamable HTTP transport: MCP at `/mcp`, health and readiness probes, metrics.

Imported only when `--transport http` is chosen: a stdio server neither loads nor builds it
(the SDK itself imports starlette and uvicorn either way).

Routes:
  /mcp      MCP Streamable HTTP (the SDK's transport, with its Host and Origin checks)
  /healthz  liveness: answers while the process serves; no token, reveals nothing
  /readyz   readiness: runtimes probed, at least one available, run root writable; no token
  /metrics  Prometheus text format, with the same Host and Origin checks as /mcp

When a token is set, every route but the two probes needs `Authorization: Bearer <token>`;
a request without it is answered 401 before any of the server sees it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from typing import Any

import uvicorn
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox_mcp.config import MIB, Settings
from sandbox_mcp.sandbox import workspace
from sandbox_mcp.sandbox.runner import MAX_ARGS_BYTES, MAX_STDIN_BYTES, Sandbox
from sandbox_mcp.server.inflight import CancelOnDisconnect, InFlightCalls
from sandbox_mcp.server.metrics import CONTENT_TYPE, RunMetrics

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
# The probes answer without a token and without Host checks: an orchestrator calls them by
# the container's address, which no allow list can know in advance.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# How long /readyz waits for the runtimes' versions before it answers "starting".
_READY_WAIT_SECONDS = 0.5
_NO_STORE = {"Cache-Control": "no-store"}
# Time for the answers of runs ended at shutdown to be written out (see _DrainingServer).
_ANSWER_FLUSH_SECONDS = 1.0
# MCP sessions (not the sandbox's): each costs some 35 KB while open. The SDK's own bound is
# in the thousands; 256 clients is more than one server's run slots can serve anyway.
MAX_MCP_SESSIONS = 256
# An MCP session unused this long is closed; its sandbox sessions can no longer be reached
# and end at their own idle time (SANDBOX_SESSION_IDLE_SECONDS).
MCP_SESSION_IDLE_SECONDS = 1800.0
# After the drain, how long uvicorn waits for connections to close before it cuts them: a
# client that never finishes its request body must not hold the shutdown open.
_CONNECTIONS_CLOSE_SECONDS = 5


def serve(server: MCPServer, sandbox: Sandbox, metrics: RunMetrics, calls: InFlightCalls) -> None:
    """Serve `server` over Streamable HTTP until SIGINT or SIGTERM; uvicorn owns the loop."""
    settings = sandbox.settings
    config = uvicorn.Config(
        build_app(server, sandbox, metrics, calls),
        host=settings.host.strip("[]"),
        port=settings.port,
        # The process's logging is already set up (logs.configure): one line per
        # event on stderr. uvicorn's own request log is too chatty below debug.
        log_config=None,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        # No version in a response header, and the peer address as it connected.
        server_header=False,
        proxy_headers=False,
        lifespan="on",
        timeout_graceful_shutdown=_CONNECTIONS_CLOSE_SECONDS,
    )
    _DrainingServer(config, sandbox).run()


class _DrainingServer(uvicorn.Server):
    """uvicorn, but on SIGTERM the runs in flight first get `SANDBOX_SHUTDOWN_GRACE` to end.

    `Sandbox.drain` refuses new runs, waits for those in flight, and ends the rest with limit
    "cancelled" so that their callers still get an answer; uvicorn then closes the
    connections and the lifespan closes the sandbox, as for stdio (shutdown.py).
    """

    def __init__(self, config: uvicorn.Config, sandbox: Sandbox) -> None:
        super().__init__(config)
        self.sandbox = sandbox

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        await self.sandbox.drain(self.sandbox.settings.shutdown_grace)
        # The answers of the last runs are on their way through the SDK's streams: let them
        # reach their connections before uvicorn closes those.
        await asyncio.sleep(_ANSWER_FLUSH_SECONDS)
        await super().shutdown(sockets)


def build_app(
    server: MCPServer, sandbox: Sandbox, metrics: RunMetrics, calls: InFlightCalls | None = None
) -> ASGIApp:
    """The ASGI application: the SDK's Streamable HTTP app with our routes, behind the gate;
    a POST whose client leaves before its answer has its calls in `calls` cancelled."""
    settings = sandbox.settings
    security = transport_security(settings)
    host_check = TransportSecurityMiddleware(security)

    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers=_NO_STORE)

    @server.custom_route("/readyz", methods=["GET"])
    async def readyz(_: Request) -> Response:
        status, facts = await readiness(sandbox)
        code = 200 if status == "ready" else 503
        return JSONResponse({"status": status, **facts}, status_code=code, headers=_NO_STORE)

    @server.custom_route("/metrics", methods=["GET"])
    async def metrics_route(request: Request) -> Response:
        refused = await host_check.validate_request(request, is_post=False)
        if refused is not None:
            return refused
        body = metrics.render(sandbox.activity())
        return PlainTextResponse(body, media_type=CONTENT_TYPE, headers=_NO_STORE)

    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=security,
        host=settings.host,
        max_request_body_size=request_body_limit(settings),
        max_sessions=MAX_MCP_SESSIONS,
        session_idle_timeout=MCP_SESSION_IDLE_SECONDS,
    )
    # The SDK logs each MCP session's id at INFO; the id is a credential for that session
    # (and its sandbox sessions) to anyone who also holds the token.
    logging.getLogger("mcp.server.streamable_http_manager").setLevel(logging.WARNING)
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
    if calls is not None:
        app = CancelOnDisconnect(app, calls, request_body_limit(settings))
    return BearerGate(app, settings.auth_token)


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """The SDK's DNS-rebinding protection, always on.

    The allow lists are the operator's; on loopback they default to the loopback names with
    the server's port (a browser page may reach only an origin on this machine). Beyond
    loopback the settings refuse to start without allowed hosts, and no browser origin is
    allowed unless listed.
    """
    hosts = list(settings.allowed_hosts)
    origins = list(settings.allowed_origins)
    if settings.binds_loopback:
        names = [
            f"127.0.0.1:{settings.port}",
            f"localhost:{settings.port}",
            f"[::1]:{settings.port}",
        ]
        hosts = hosts or names
        origins = origins or [f"http://{name}" for name in names]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def request_body_limit(settings: Settings) -> int:
    """The largest request body taken: room for the largest call the tools accept.

    Code, stdin and arguments at their limits, the files at theirs as base64 (a third
    larger) with 4 KiB each for their paths, and a mebibyte for the JSON around them. Text
    that JSON must escape heavily (control characters) can still make a call that the
    sandbox would take too large for one request; it is answered 413.
    """
    files = -(-settings.max_files_bytes * 4 // 3) + workspace.MAX_INPUT_FILES * 4096
    return settings.max_code_bytes + MAX_STDIN_BYTES + MAX_ARGS_BYTES + files + MIB


async def readiness(sandbox: Sandbox) -> tuple[str, dict[str, Any]]:
    """Whether the sandbox can take runs now, as a status word and coarse facts.

    No paths, versions or uids: the probes answer anyone who can reach the port.
    """
    try:
        runtimes = await asyncio.wait_for(sandbox.runtimes(), _READY_WAIT_SECONDS)
    except TimeoutError:
        return "starting", {"reason": "runtimes are still being probed"}
    available = sum(1 for info in runtimes if info.available)
    if available == 0:
        return "not ready", {"reason": "no language runtime is available"}
    root = sandbox.settings.run_root
    if not (root.is_dir() and os.access(root, os.W_OK | os.X_OK)):
        return "not ready", {"reason": "the run root is not writable"}
    return "ready", {"languages_available": available}


class BearerGate:
    """ASGI middleware: with a token set, refuse every request without it, except the probes.

    The comparison takes the same time however much of the token a caller got right.
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = token.encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._token is None or scope["type"] == "lifespan" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            # No route takes a WebSocket; refuse one outright rather than judge its headers.
            await send({"type": "websocket.close", "code": 1008})
            return
        problem = self._problem(Request(scope))
        if problem is None:
            await self.app(scope, receive, send)
            return

        client = scope.get("client")
        logger.warning(
            "http: refused %s %s from %s: %s",
            scope["method"],
            # Decoded already: quoted so that a %0a in it cannot forge a log line.
            repr(scope["path"][:200]),
            client[0] if client else "?",
            problem,
        )
        challenge = 'Bearer realm="sandbox-mcp"'
        if problem == "wrong bearer token":
            challenge += ', error="invalid_token"'
        response = PlainTextResponse(
            f"401 Unauthorized: {problem}; send Authorization: Bearer <token>\n",
            status_code=401,
            headers={"WWW-Authenticate": challenge, **_NO_STORE},
        )
        await response(scope, receive, send)

    def _problem(self, request: Request) -> str | None:
        assert self._token is not None  # noqa: S101 - checked by the caller
        header = request.headers.get("authorization")
        if header is None:
            return "missing bearer token"
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return "not a bearer token"
        if not hmac.compare_digest(presented.strip().encode(), self._token):
            return "wrong bearer token"
        return None
