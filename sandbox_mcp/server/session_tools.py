"""The MCP surface of sessions: `reset_session`, and a session's files as resources.

`execute_code` itself takes `session_id` (tools.py); the core keeps the sessions
(sandbox/sessions.py). Every entry point here passes `caller_key(ctx)` as the owner, so a
caller only ever reaches its own sessions.
"""

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from sandbox_mcp.errors import SandboxError
from sandbox_mcp.sandbox.runner import Sandbox
from sandbox_mcp.sandbox.sessions import MAX_FILE_BYTES
from sandbox_mcp.server.callers import NO_KEY, caller_key

FILE_TEMPLATE = "sandbox://sessions/{session_id}/files/{+path}"


def file_uri(session_id: str, path: str) -> str:
    """The resource URI of a file in a session's workdir."""
    return f"sandbox://sessions/{session_id}/files/{path}"


class ResetReport(BaseModel):
    """The result of `reset_session`."""

    ended: list[str] = Field(description="The ids of the sessions ended, now gone for good.")


def register(server: MCPServer, sandbox: Sandbox) -> None:
    """Add `reset_session` and the session file resource template to `server`."""

    @server.tool(
        annotations=ToolAnnotations(
            title="End sandbox sessions",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=False,
        )
    )
    async def reset_session(
        ctx: Context,
        session_id: Annotated[
            str | None,
            Field(description='A session id from execute_code, or "all" for all of yours.'),
        ] = None,
        language: Annotated[
            str | None,
            Field(description='End your sessions of this language, or "all" for every one.'),
        ] = None,
    ) -> Annotated[CallToolResult, ResetReport]:
        """End sessions opened with execute_code(session_id="new"): their interpreter, its
        variables and its files are gone, and their ids stop working. Give `session_id` (one
        id, or "all"), or `language` (a language id, or "all"). Only your own sessions are
        ever touched. Sessions also end by themselves after a while unused."""
        if session_id is None and language is None:
            raise ToolError('give session_id (an id or "all") or language (an id or "all")')
        owner = caller_key(ctx)
        if owner is None:
            raise ToolError(NO_KEY)
        try:
            ended = await sandbox.sessions.reset(owner, session_id, language)
        except SandboxError as exc:
            raise ToolError(str(exc)) from exc
        text = (
            f"ended {len(ended)} session{'s' if len(ended) != 1 else ''}: " + ", ".join(ended)
            if ended
            else "no session of yours matched: nothing to end"
        )
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content=ResetReport(ended=ended).model_dump(mode="json"),
        )

    @server.resource(
        FILE_TEMPLATE,
        name="session_file",
        title="A file in a sandbox session",
        description=(
            "A file in the working directory of one of your sessions, by its relative path "
            f"(no '..', no links; regular files up to {MAX_FILE_BYTES // (1024 * 1024)} MiB)."
        ),
    )
    async def session_file(session_id: str, path: str, ctx: Context) -> str | bytes:
        owner = caller_key(ctx)
        if owner is None:
            raise ResourceError(NO_KEY)
        try:
            content = await sandbox.sessions.read_file(owner, session_id, path)
        except SandboxError as exc:
            raise ResourceError(str(exc)) from exc
        # Text when it is text, so that a model can read it; else the bytes, as a blob.
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError:
            return content
