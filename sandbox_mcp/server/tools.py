"""The MCP tools. Each is thin: check the call, ask the sandbox core, shape the answer.

No `from __future__ import annotations` here: the SDK reads the tools' annotations at
registration, and the timeout's description is built from the settings in this closure,
which string annotations could not see.
"""

import asyncio
import dataclasses
import importlib.metadata
import inspect
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ResourceLink, TextContent, ToolAnnotations
from pydantic import Field

from sandbox_mcp import __version__
from sandbox_mcp.errors import SandboxError
from sandbox_mcp.sandbox import packages, workspace
from sandbox_mcp.sandbox.languages import LANGUAGES
from sandbox_mcp.sandbox.progress import RunProgress
from sandbox_mcp.sandbox.runner import RunRequest, RunResult, Sandbox, ValidationResult
from sandbox_mcp.sandbox.workspace import OutputFile
from sandbox_mcp.server import files as run_files
from sandbox_mcp.server.callers import NO_KEY, caller_key, log_label
from sandbox_mcp.server.inflight import InFlightCalls
from sandbox_mcp.server.metrics import RunMetrics
from sandbox_mcp.server.resources import OutputStore, file_uri, output_uri
from sandbox_mcp.server.schema import (
    CompileInfo,
    DiagnosticInfo,
    ExecutionResult,
    InputFileSpec,
    KernelLayers,
    LanguageInfo,
    LanguageList,
    ServerInfo,
    ValidationReport,
)
from sandbox_mcp.server.session_tools import file_uri as session_file_uri

_Tool = TypeVar("_Tool", bound=Callable[..., Any])

# A caller without a key (HTTP without an MCP session) could not be told apart from the
# others when it reads a whole output or an SVG back: neither is kept.
_NOT_KEPT = (
    "the whole output and embedded SVGs are not kept for reading back: this HTTP request has "
    "no MCP session to tell its caller from others (with the Python SDK, open the client with "
    'mode="legacy")'
)

logger = logging.getLogger(__name__)
# How often a call in flight reports its progress, when the client asked for it.
PROGRESS_INTERVAL = 1.0

_LANGUAGE_IDS = ", ".join(language.id for language in LANGUAGES)


def _annotations(title: str, *, read_only: bool, open_world: bool = False) -> ToolAnnotations:
    # What the tool does to the world, for clients that ask before calling: nothing here
    # destroys anything; a run changes state (its own sandbox) and may differ each time.
    return ToolAnnotations(
        title=title,
        read_only_hint=read_only,
        destructive_hint=False,
        idempotent_hint=read_only,
        open_world_hint=open_world,
    )


def _clean_doc(function: _Tool) -> _Tool:
    # The docstring is the description the model reads: without the source's indentation.
    function.__doc__ = inspect.cleandoc(function.__doc__ or "")
    return function


def register(
    server: MCPServer,
    sandbox: Sandbox,
    metrics: RunMetrics,
    outputs: OutputStore | None = None,
    calls: InFlightCalls | None = None,
) -> None:
    """Add `execute_code`, `validate_code` and `list_languages` to `server`.

    Each execute_code call is counted in `metrics` when it ends; whole outputs that an
    answer shortened go to `outputs` (see resources.py); each call in flight is in `calls`,
    where a dropped HTTP connection cancels it (inflight.py).
    """
    settings = sandbox.settings
    outputs = outputs if outputs is not None else OutputStore()
    calls = calls if calls is not None else InFlightCalls()
    network_closed = settings.network == "off"

    @server.tool(
        annotations=_annotations(
            "Execute code in a sandbox", read_only=False, open_world=not network_closed
        )
    )
    @_clean_doc
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
        files: Annotated[
            list[InputFileSpec],
            Field(
                description="Files written into the working directory before the build and "
                "the run: other modules, classes, data. Relative paths without '..'; at most "
                f"{workspace.MAX_INPUT_FILES} files, {settings.max_files_bytes} bytes in all."
            ),
        ] = [],  # noqa: B006 - as args
        session_id: Annotated[
            str | None,
            Field(
                description='Leave out for a fresh sandbox. "new" opens a session; pass the '
                "session_id it returns to run the next call in the same session."
            ),
        ] = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, ExecutionResult]:
        """Run a code snippet in an isolated sandbox and return its output.

        Without session_id each call starts from nothing: a new working directory (the
        current directory, also $HOME) holding only the code and the `files` you send, a
        non-root user, no state from earlier calls. Write files only there. With session_id
        "new" the call opens a session and the answer gives its session_id; later calls with
        that id (same language) find the files it wrote, and for Python and JavaScript its
        variables, functions and imports, like notebook cells. A timeout or limit in a
        session loses the interpreter's state (session_state_lost) but keeps the files.
        Sessions end with reset_session or after a while unused. Files a run creates or
        changes are listed in `files` (not those under .tmp/, which is $TMPDIR, nor build
        products): images (PNG, JPEG, GIF, WEBP up to 1 MB, 8000 px a side, well-formed; the
        first 8 per answer, the rest only listed) come back as images, small text
        files (up to 8 KB) and SVG as text, others by name and size only. Python has numpy,
        pandas, matplotlib, scipy, sympy, pillow and tabulate (list_languages has the
        versions); nothing else can be installed. matplotlib draws headless: plt.show()
        saves each figure as figure_N.png, which comes back as an image, as does savefig.
        Output longer than shown is cut to head and tail; the whole (first 10 MB) is then
        readable for 15 minutes at the resource in stdout_uri / stderr_uri. Compiled
        languages (C, C++, Go, Rust, Java, Kotlin with a main) are built first; a failed build is
        reported in `compile` and the program does not run. Java: a public class names the
        file; main() may be in any class. Other source files sent in `files` are compiled in
        for Java (found by class name) and Kotlin (every .kt), and Rust follows `mod x;`; C,
        C++ and Go build the main file alone (headers aside), TypeScript transpiles only the
        main file. Kotlin and Scala run as scripts unless the code declares main.
        JavaScript is CommonJS unless it uses import/export.
        The run is killed at the deadline and when it exceeds its memory, CPU, process, file
        or output limits; `limit` then says which. A program that fails or exits non-zero is
        a normal result (see exit_code and stderr), not an error. When the server is busy
        the call may wait for a free slot (not counted against the deadline) or be refused
        with "server busy": wait a little and call again.
        """
        owner = caller_key(ctx)
        if owner is None and session_id is not None:
            raise ToolError(NO_KEY)
        progress = RunProgress()
        # A plain task, not a task group: a group would wrap SandboxError in a group.
        reporter = asyncio.ensure_future(_report_progress(ctx, progress)) if ctx else None
        try:
            request = RunRequest(
                language=language,
                code=code,
                stdin=stdin,
                args=tuple(args),
                filename=filename,
                timeout_seconds=timeout_seconds,
                files=tuple(
                    workspace.decode_input(item.path, item.content, item.encoding) for item in files
                ),
                session_id=session_id,
                owner=owner or "",
                caller=log_label(owner),
            )
            request_id = ctx.request_context.request_id if ctx else None
            with calls.track(owner, request_id) as tracked:
                result = await sandbox.run(request, progress)
            if tracked.cancelled_caught:
                raise ToolError("cancelled: the client's connection closed before the answer")
        except SandboxError as exc:
            metrics.record_error(language, exc)
            raise ToolError(str(exc)) from exc
        finally:
            if reporter is not None:
                reporter.cancel()
        metrics.record_result(result)
        shown = run_files.shown(result)
        cut = result.stdout_full is not None or result.stderr_full is not None
        if owner is None and (cut or run_files.embeds_svg(shown)):
            result = dataclasses.replace(result, notes=(*result.notes, _NOT_KEPT))

        structured = _structured(result, shown)
        links: list[ResourceLink] = []
        for stream, full in (("stdout", result.stdout_full), ("stderr", result.stderr_full)):
            if (
                full is not None
                and owner is not None
                and outputs.put(result.run_id, stream, full, owner)
            ):
                uri = output_uri(result.run_id, stream)
                setattr(structured, f"{stream}_uri", uri)
                links.append(
                    ResourceLink(
                        type="resource_link",
                        name=f"{stream} of run {result.run_id}",
                        uri=uri,
                        mime_type="text/plain",
                        size=len(full),
                    )
                )
        return CallToolResult(
            content=[
                TextContent(type="text", text=summary(result, shown)),
                *run_files.content_blocks(
                    shown, lambda found: _readable_uri(result, found, outputs, owner)
                ),
                *links,
            ],
            structured_content=structured.model_dump(mode="json"),
        )

    @server.tool(annotations=_annotations("Check code without running it", read_only=True))
    @_clean_doc
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

    @server.tool(annotations=_annotations("Report the sandbox's security posture", read_only=True))
    @_clean_doc
    async def server_info() -> Annotated[CallToolResult, ServerInfo]:
        """Report what this sandbox really runs in, measured now: identity mode and uids,
        limits, read-only root, whether compiled programs can run, the network policy and
        what a sandboxed child actually observed when it tried a socket (loopback only),
        and the kernel layers in use (seccomp, Landlock). Call it to check the isolation
        before trusting it."""
        try:
            info = await posture_report(sandbox)
        except SandboxError as exc:
            raise ToolError(str(exc)) from exc
        lines = [
            f"sandbox-mcp {info.version} (MCP SDK {info.sdk_version}), identity {info.identity}"
            f" (server uid {info.server_uid})",
            f"network {info.network_policy}; sandboxed socket probe: {info.network_probe}",
            f"root filesystem read-only: {info.root_filesystem_read_only}; "
            f"run root {info.run_root} exec: {info.run_root_exec}",
            f"seccomp: {info.kernel.seccomp_used}; Landlock ABI {info.kernel.landlock_abi}, "
            f"used: {info.kernel.landlock_used}",
            *(f"note: {note}" for note in info.notes),
        ]
        return CallToolResult(
            content=[TextContent(type="text", text="\n".join(lines))],
            structured_content=info.model_dump(mode="json"),
        )

    @server.tool(annotations=_annotations("List the languages this sandbox runs", read_only=True))
    @_clean_doc
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
                    packages=[f"{name} {version}" for name, version in packages.installed()]
                    if info.language.id == "python"
                    else [],
                )
                for info in await sandbox.runtimes()
            ]
        )


async def _report_progress(ctx: Context, progress: RunProgress) -> None:
    """Tell the client every `PROGRESS_INTERVAL` how the run goes (a no-op without a token)."""
    while True:
        await anyio.sleep(PROGRESS_INTERVAL)
        try:
            # The time since the call arrived: progress values must only grow, and the
            # run's own time (from 0 once it starts) would not while it waits for a slot.
            await ctx.report_progress(round(progress.since_arrival, 1), None, progress.describe())
        except Exception as exc:  # progress is a courtesy: the run goes on without it
            logger.debug("progress not sent: %s", exc)
            return


async def posture_report(sandbox: Sandbox) -> ServerInfo:
    """Gather the posture from the core and shape it as `ServerInfo`."""
    settings = sandbox.settings
    posture = sandbox.posture
    assert posture is not None, "the sandbox was not prepared"  # noqa: S101
    identity = sandbox.identity
    # Counted before the probe, whose own workdir is removed just after its answer.
    workdirs = sandbox.workdirs_present()
    activity = sandbox.activity()
    can_open, probe = await sandbox.probe_network()
    runtimes = await sandbox.runtimes()
    landlock_used = sandbox.landlock_abi > 0

    notes = []
    if identity.mode == "shared":
        notes.append(
            "runs share the server's uid and groups: they share one process limit and may "
            "reach Unix sockets the uid can; use pool mode (--cap-add SETUID --cap-add "
            "SETGID) to separate"
        )
    if not posture.proc_hides_pids:
        notes.append(
            "runs see the command lines of other processes in /proc, other runs' included, "
            "in either mode (/proc is not mounted with hidepid): pass secrets in stdin, not args"
        )
    if settings.network == "on":
        notes.append("the network is on: snippets have whatever network the server has")
    if not posture.no_new_privs:
        notes.append("the server runs without no-new-privileges (--security-opt no-new-privileges)")
    extra = sorted(set(posture.capabilities) - {"SETUID", "SETGID"})
    if extra:
        notes.append(f"the server holds more capabilities than it needs: {', '.join(extra)}")
    if not posture.root_read_only:
        notes.append("the root filesystem is writable (--read-only keeps the image unchanged)")
    if not landlock_used:
        notes.append(
            "no Landlock: runs may write anywhere their uid may, read other workdirs of the "
            "same uid, and (shared mode) signal other runs"
        )
    elif sandbox.landlock_abi < 6:
        notes.append("Landlock ABI below 6: signals between concurrent runs are not scoped")
    if not sandbox.seccomp_enabled:
        notes.append(
            "no seccomp filter: the network policy, the refusal of ptrace, SysV IPC, keyrings, "
            "memfd and io_uring, and the protection of the server's pids are all off"
        )
    if settings.network == "off" and can_open:
        notes.append("the network is meant to be off but a sandboxed child opened a socket")
    if not posture.run_root_exec:
        notes.append(
            "the run root is noexec: compiled languages cannot run (validate_code checks them)"
        )

    return ServerInfo(
        version=__version__,
        sdk_version=_sdk_version(),
        identity=identity.mode,  # type: ignore[arg-type]
        server_uid=identity.server_uid,
        uid_range=None
        if identity.uid_base is None or identity.uid_count is None
        else [identity.uid_base, identity.uid_base + identity.uid_count - 1],
        limits={
            "timeout_seconds": settings.timeout,
            "max_timeout_seconds": settings.max_timeout,
            "memory_mb": settings.memory_mb,
            "cpu_seconds": settings.cpu_seconds,
            "max_processes": settings.max_processes,
            "max_open_files": settings.max_open_files,
            "max_file_bytes": settings.max_file_bytes,
            "max_disk_bytes": settings.max_disk_bytes,
            "output_bytes": settings.output_bytes,
            "max_output_bytes": settings.max_output_bytes,
            "max_code_bytes": settings.max_code_bytes,
            "max_files_bytes": settings.max_files_bytes,
            "max_concurrent_runs": settings.max_concurrent_runs,
            "max_sessions": settings.max_sessions,
            "session_idle_seconds": settings.session_idle_seconds,
            "max_queued": settings.max_queued,
            "queue_timeout_seconds": settings.queue_timeout,
            "memory_budget_mb": settings.memory_budget_mb,
        },
        root_filesystem_read_only=posture.root_read_only,
        run_root=str(settings.run_root),
        run_root_exec=posture.run_root_exec,
        unavailable_languages={
            info.language.id: info.reason or "unavailable"
            for info in runtimes
            if not info.available
        },
        network_policy=settings.network,  # type: ignore[arg-type]
        network_interfaces=list(posture.network_interfaces),
        sandbox_can_open_inet_socket=can_open,
        network_probe=probe,
        kernel=KernelLayers(
            seccomp_available=posture.seccomp_available,
            seccomp_used=sandbox.seccomp_enabled,
            server_under_seccomp=posture.server_seccomp,
            landlock_abi=posture.landlock_abi,
            landlock_used=landlock_used,
            landlock_scopes_signals=sandbox.landlock_abi >= 6,
            no_new_privs=posture.no_new_privs,
            capabilities=list(posture.capabilities),
        ),
        workdirs_present=workdirs,
        in_flight=activity.in_flight,
        in_flight_high_water=activity.in_flight_high_water,
        queued=activity.queued,
        runs_on_standby=sandbox.standby_ready,
        sessions_open=sandbox.sessions.count(),
        warm_languages=list(sandbox.warm_languages),
        notes=notes,
    )


def _sdk_version() -> str:
    try:
        return importlib.metadata.version("mcp")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _readable_uri(
    result: RunResult, found: OutputFile, outputs: OutputStore, owner: str | None
) -> str:
    """Where a client can read a file the answer embeds: a session's file stays in its workdir;
    a fresh run's is gone with it, so its text is kept with the run's whole output."""
    if result.session_id is not None:
        return session_file_uri(result.session_id, found.path)
    if owner is not None:
        outputs.put(result.run_id, f"files/{found.path}", (found.text or "").encode(), owner)
    return file_uri(result.run_id, found.path)


def _structured(result: RunResult, shown: list[run_files.Shown]) -> ExecutionResult:
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
        files=run_files.file_infos(shown),
        files_unlisted=result.files_unlisted,
        session_id=result.session_id,
        session_state_lost=result.session_state_lost,
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


def summary(result: RunResult, shown: list[run_files.Shown]) -> str:
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
    where = f" in session {result.session_id}" if result.session_id else ""
    lines = [f"[{result.language} run {result.run_id}{where}] " + ", ".join(parts)]

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
    lines += run_files.summary_lines(result, shown)
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
