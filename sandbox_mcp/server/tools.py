"""The MCP tools. Each is thin: check the call, ask the sandbox core, shape the answer.

No `from __future__ import annotations` here: the SDK reads the tools' annotations at
registration, and the timeout's description is built from the settings in this closure,
which string annotations could not see.
"""

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from sandbox_mcp.errors import SandboxError
from sandbox_mcp.sandbox.languages import LANGUAGES
from sandbox_mcp.sandbox.runner import RunRequest, RunResult, Sandbox, ValidationResult
from sandbox_mcp.server.schema import (
    CompileInfo,
    DiagnosticInfo,
    ExecutionResult,
    LanguageInfo,
    LanguageList,
    ValidationReport,
)

_LANGUAGE_IDS = ", ".join(language.id for language in LANGUAGES)


def register(server: MCPServer, sandbox: Sandbox) -> None:
    """Add `execute_code`, `validate_code` and `list_languages` to `server`."""
    settings = sandbox.settings
    network_closed = settings.network == "off"

    @server.tool(
        annotations=ToolAnnotations(
            title="Execute code in a sandbox",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=not network_closed,
        ),
    )
    async def execute_code(
        language: Annotated[
            str,
            Field(description=f"Language id or alias: {_LANGUAGE_IDS} (see list_languages)."),
        ],
        code: Annotated[str, Field(description="The complete program to run.")],
        stdin: Annotated[
            str, Field(description="Text given to the program on standard input.")
        ] = "",
        args: Annotated[
            list[str], Field(description="Command-line arguments passed to the program.")
        ] = [],  # noqa: B006 - pydantic copies defaults; a literal keeps the schema simple
        filename: Annotated[
            str | None,
            Field(description="Name of the main file, e.g. 'app.py'; defaults to main.<ext>."),
        ] = None,
        timeout_seconds: Annotated[
            float | None,
            Field(
                gt=0,
                description=(
                    f"Wall-clock deadline in seconds (default {settings.timeout:g}, "
                    f"at most {settings.max_timeout:g}), build included."
                ),
            ),
        ] = None,
    ) -> Annotated[CallToolResult, ExecutionResult]:
        """Run a code snippet in a fresh, isolated sandbox and return its output.

        Each call starts from nothing: a new empty working directory (the current directory,
        also $HOME and $TMPDIR), a non-root user, no state from earlier calls. Write files
        only there. Compiled languages (C, C++, Go, Rust, Java, Kotlin) are built first;
        a failed build is reported in `compile` and the program does not run. Java: a public
        class names the file; main() may be in any class. Kotlin and Scala run as scripts
        unless the code declares main. JavaScript is CommonJS unless it uses import/export.
        The run is killed at the deadline and when it exceeds its memory, CPU, process, file
        or output limits; `limit` then says which. A program that fails or exits non-zero is
        a normal result (see exit_code and stderr), not an error.
        """
        request = RunRequest(
            language=language,
            code=code,
            stdin=stdin,
            args=tuple(args),
            filename=filename,
            timeout_seconds=timeout_seconds,
        )
        try:
            result = await sandbox.run(request)
        except SandboxError as exc:
            raise ToolError(str(exc)) from exc

        return CallToolResult(
            content=[TextContent(type="text", text=summary(result))],
            structured_content=_structured(result).model_dump(mode="json"),
        )

    @server.tool(
        annotations=ToolAnnotations(
            title="Check code without running it",
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
    async def validate_code(
        language: Annotated[
            str,
            Field(description=f"Language id or alias: {_LANGUAGE_IDS}."),
        ],
        code: Annotated[str, Field(description="The complete program to check.")],
        filename: Annotated[
            str | None,
            Field(description="Name of the main file; defaults to main.<ext>."),
        ] = None,
    ) -> Annotated[CallToolResult, ValidationReport]:
        """Check a snippet's syntax (and its types, where the compiler checks them: C, C++,
        Go, Rust, Java, Kotlin, Scala, TypeScript) without running it, in the same sandbox as
        execute_code. Returns each problem with its line, column, severity and message."""
        try:
            report = await sandbox.validate(language, code, filename)
        except SandboxError as exc:
            raise ToolError(str(exc)) from exc

        structured = ValidationReport(
            run_id=report.run_id,
            language=report.language,
            filename=report.filename,
            valid=report.valid,
            diagnostics=[
                DiagnosticInfo(
                    line=found.line,
                    column=found.column,
                    severity=found.severity,  # type: ignore[arg-type]
                    message=found.message,
                )
                for found in report.diagnostics
            ],
            checker=report.checker,
            duration_ms=report.duration_ms,
            limit=report.limit,  # type: ignore[arg-type]
            notes=list(report.notes),
        )
        return CallToolResult(
            content=[TextContent(type="text", text=validation_summary(report))],
            structured_content=structured.model_dump(mode="json"),
        )

    @server.tool(
        annotations=ToolAnnotations(
            title="List the languages this sandbox runs",
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
    async def list_languages() -> LanguageList:
        """List every language with its runtime version and whether it is available here."""
        return LanguageList(
            languages=[
                LanguageInfo(
                    id=info.language.id,
                    name=info.language.name,
                    aliases=list(info.language.aliases),
                    extension=info.language.extension,
                    default_filename=info.language.default_filename,
                    available=info.available,
                    version=info.version,
                    reason=info.reason,
                    compiled=info.language.build is not None,
                    remark=info.language.remark,
                )
                for info in await sandbox.runtimes()
            ]
        )


def _structured(result: RunResult) -> ExecutionResult:
    compiled = result.compile
    return ExecutionResult(
        run_id=result.run_id,
        language=result.language,
        filename=result.filename,
        stdout=result.stdout,
        stderr=result.stderr,
        exit_code=result.exit_code,
        signal=result.signal,
        timed_out=result.timed_out,
        limit=result.limit,  # type: ignore[arg-type]
        duration_ms=result.duration_ms,
        cpu_ms=result.cpu_ms,
        peak_memory_bytes=result.peak_memory_bytes,
        stdout_bytes=result.stdout_bytes,
        stderr_bytes=result.stderr_bytes,
        stdout_truncated=result.stdout_truncated,
        stderr_truncated=result.stderr_truncated,
        timeout_seconds=result.timeout_seconds,
        compile=None
        if compiled is None
        else CompileInfo(
            exit_code=compiled.exit_code,
            signal=compiled.signal,
            stdout=compiled.stdout,
            stderr=compiled.stderr,
            duration_ms=compiled.duration_ms,
        ),
        notes=list(result.notes),
    )


_LIMIT_WORDS = {
    "timeout": "killed at the deadline of {timeout:g}s",
    "cpu": "killed: CPU time limit reached",
    "memory": "stopped: memory limit reached",
    "output": "killed: too much output",
    "processes": "failed: process limit reached",
    "file_size": "stopped: file size limit reached",
    "open_files": "failed: open file limit reached",
    "disk": "killed: workdir disk limit reached",
    "cancelled": "cancelled",
}


def summary(result: RunResult) -> str:
    """The short text the model reads: how it ended, then the output."""
    compiled = result.compile
    if compiled is not None and not compiled.succeeded:
        ending = "build failed"
        if compiled.signal:
            ending += f" ({compiled.signal})"
    elif result.exit_code is not None:
        ending = f"exit code {result.exit_code}"
    else:
        ending = f"ended by {result.signal or 'the sandbox'}"
    parts = [ending]
    if result.limit:
        parts.append(_LIMIT_WORDS[result.limit].format(timeout=result.timeout_seconds))
    if compiled is not None:
        parts.append(f"build {compiled.duration_ms:.0f} ms")
    parts.append(f"{result.duration_ms:.0f} ms")
    parts.append(f"{result.peak_memory_bytes / 1e6:.1f} MB")
    lines = [f"[{result.language} run {result.run_id}] " + ", ".join(parts)]

    if compiled is not None and (compiled.stderr.strip() or not compiled.succeeded):
        lines += ["--- compiler ---", (compiled.stderr or compiled.stdout).rstrip("\n")]
    for name, text, total, cut in (
        ("stdout", result.stdout, result.stdout_bytes, result.stdout_truncated),
        ("stderr", result.stderr, result.stderr_bytes, result.stderr_truncated),
    ):
        if total:
            heading = f"--- {name} ({total} bytes, shortened) ---" if cut else f"--- {name} ---"
            lines += [heading, text.rstrip("\n")]
    ran = compiled is None or compiled.succeeded
    if ran and not (result.stdout_bytes or result.stderr_bytes):
        lines.append("(no output)")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def validation_summary(report: ValidationResult) -> str:
    """The short text the model reads for validate_code."""
    head = f"[{report.language} validate {report.run_id}] {report.filename}: "
    if report.valid and not report.diagnostics:
        return head + f"valid ({report.checker} found no problem)"
    errors = sum(1 for found in report.diagnostics if found.severity == "error")
    head += "valid" if report.valid else f"{errors} error{'s' if errors != 1 else ''}"
    lines = [head]
    for found in report.diagnostics:
        where = "" if found.line is None else f"line {found.line}"
        if found.line is not None and found.column is not None:
            where += f", column {found.column}"
        lines.append(f"{found.severity}{f' ({where})' if where else ''}: {found.message}")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)
