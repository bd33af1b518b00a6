"""The structured results the tools return, published as their output schemas.

The schema is additive: later versions add fields and never remove or retype one, so a client
written against this version keeps working.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Limit = Literal[
    "timeout",
    "cpu",
    "memory",
    "output",
    "processes",
    "file_size",
    "open_files",
    "disk",
    "cancelled",
]


class CompileInfo(BaseModel):
    """The build step of a compiled language."""

    exit_code: int | None = Field(description="The compiler's exit status; 0 means it built.")
    signal: str | None = Field(description="Signal that ended the compiler, if one did.")
    stdout: str
    stderr: str = Field(description="The compiler's diagnostics, head and tail when long.")
    duration_ms: float


class InputFileSpec(BaseModel):
    """A file execute_code writes into the working directory before the run."""

    # A misspelt key (`contents`, `mode`) is refused, not silently dropped.
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Relative path, e.g. 'lib/util.py' or 'data/input.csv'.")
    content: str = Field(description="The file's content: text, or base64 (see encoding).")
    encoding: Literal["text", "base64"] = Field(
        default="text", description="'text' (UTF-8) or 'base64' for binary content."
    )


class FileInfo(BaseModel):
    """A regular file the run created or changed in its working directory."""

    path: str = Field(description="Path relative to the working directory.")
    size: int = Field(description="Size in bytes.")
    mime_type: str = Field(description="Type from the file's first bytes, else its extension.")
    status: Literal["created", "modified"]
    content: str | None = Field(
        default=None,
        description="The file's text, for text files of at most 8 KB (64 KB in all per run) "
        "and SVG of at most 256 KB; null otherwise.",
    )
    image: bool = Field(
        default=False,
        description="Whether the file (PNG, JPEG, GIF, WEBP, at most 1 MB, 4 MB per run) is "
        "in the answer's content as an image.",
    )
    note: str | None = Field(
        default=None,
        description="Why an image is not in the content as an image (malformed header, over "
        "8000 px a side or 40 megapixels, over 8 images per answer, too large); null otherwise.",
    )


class ExecutionResult(BaseModel):
    """The result of one `execute_code` call."""

    run_id: str = Field(description="Identifier of this run, as it appears in the server log.")
    language: str = Field(description="Canonical id of the language that ran.")
    filename: str = Field(description="Name of the main file inside the run's workdir.")
    stdout: str = Field(description="Standard output; head and tail only when truncated.")
    stderr: str = Field(description="Standard error; head and tail only when truncated.")
    exit_code: int | None = Field(
        description="Exit status of the main process; null when a signal ended it."
    )
    signal: str | None = Field(description="Name of the signal that ended it, e.g. SIGKILL.")
    timed_out: bool = Field(description="True exactly when limit is 'timeout'.")
    limit: Limit | None = Field(description="The limit that ended or broke the run, if any.")
    duration_ms: float = Field(description="Wall-clock time from start to exit.")
    cpu_ms: float = Field(description="CPU time of all processes of the run.")
    peak_memory_bytes: int = Field(description="Highest resident memory seen.")
    stdout_bytes: int = Field(description="Total bytes written to stdout, also when truncated.")
    stderr_bytes: int = Field(description="Total bytes written to stderr, also when truncated.")
    stdout_truncated: bool
    stderr_truncated: bool
    timeout_seconds: float = Field(description="The deadline this run had, after clamping.")
    compile: CompileInfo | None = Field(
        default=None,
        description="The build step, for compiled languages; null for interpreted ones. When "
        "it failed the program did not run and exit_code is null.",
    )
    notes: list[str] = Field(
        default_factory=list, description="Anything the caller should know about this run."
    )
    files: list[FileInfo] = Field(
        default_factory=list,
        description="Files the run created or changed in its working directory (at most "
        "50), but .tmp/ and .build/; unchanged input files are left out.",
    )
    files_unlisted: int = Field(default=0, description="Further changed files not listed.")
    stdout_uri: str | None = Field(
        default=None,
        description="When stdout was shortened: a resource with the whole of it (first 10 "
        "MB), readable for 15 minutes.",
    )
    stderr_uri: str | None = Field(
        default=None, description="The same for stderr, when it was shortened."
    )
    session_id: str | None = Field(
        default=None,
        description="The session this run belongs to (pass it to continue); null for a "
        "fresh, single-use sandbox.",
    )
    session_state_lost: bool = Field(
        default=False,
        description="The session's interpreter was stopped by a limit or the deadline: its "
        "variables are gone, its files are not.",
    )


class DiagnosticInfo(BaseModel):
    """One problem the checker found."""

    line: int | None = Field(description="1-based line, when known.")
    column: int | None = Field(description="1-based column, when known.")
    severity: Literal["error", "warning", "note"]
    message: str


class ValidationReport(BaseModel):
    """The result of one `validate_code` call."""

    run_id: str
    language: str
    filename: str
    valid: bool = Field(description="True when the checker found no error.")
    diagnostics: list[DiagnosticInfo]
    checker: str = Field(description="The tool that checked the code.")
    duration_ms: float
    limit: Limit | None = Field(description="A limit the checker itself hit, if any.")
    notes: list[str] = Field(default_factory=list)


class LanguageInfo(BaseModel):
    """One language and what this machine has for it."""

    id: str
    name: str
    aliases: list[str]
    extension: str
    default_filename: str
    available: bool
    version: str | None
    reason: str | None = Field(description="Why the language is unavailable, when it is.")
    compiled: bool = Field(description="Whether a build step runs before the program.")
    remark: str | None = Field(
        default=None, description="What to know about this runtime, e.g. that it is old."
    )
    packages: list[str] = Field(
        default_factory=list,
        description="Installed packages beyond the standard library, as 'name version' "
        "(Python: numpy, pandas, matplotlib, ...). Nothing else can be installed.",
    )


class LanguageList(BaseModel):
    """The result of `list_languages`."""

    languages: list[LanguageInfo]


class KernelLayers(BaseModel):
    """The kernel features the launcher found and whether runs get them."""

    seccomp_available: bool
    seccomp_used: bool = Field(description="Every run gets the seccomp filter.")
    server_under_seccomp: str = Field(
        description="The server's own seccomp mode: 'filter' under Docker's default profile."
    )
    landlock_abi: int = Field(description="The kernel's Landlock ABI; 0 when missing.")
    landlock_used: bool
    landlock_scopes_signals: bool = Field(
        description="Runs cannot signal processes outside themselves (Landlock ABI 6+)."
    )
    no_new_privs: bool = Field(description="The server itself runs with no-new-privileges.")
    capabilities: list[str] = Field(description="The server's effective capabilities.")


class ServerInfo(BaseModel):
    """The result of `server_info`: the sandbox's posture, measured, not declared."""

    version: str
    sdk_version: str
    identity: Literal["pool", "shared"] = Field(
        description="pool: each run has its own uid; shared: runs use the server's uid."
    )
    server_uid: int
    uid_range: list[int] | None = Field(description="First and last uid of the pool.")
    limits: dict[str, float | int | str]
    root_filesystem_read_only: bool
    run_root: str
    run_root_exec: bool = Field(description="Programs built in a workdir can be started.")
    unavailable_languages: dict[str, str] = Field(description="Language id -> reason.")
    network_policy: Literal["off", "on"]
    network_interfaces: list[str]
    sandbox_can_open_inet_socket: bool = Field(
        description="What a real sandboxed child observed, probing 127.0.0.1 only."
    )
    network_probe: str
    kernel: KernelLayers
    workdirs_present: int = Field(
        description="Workdirs on disk now, but those of runs on standby: the runs in flight, "
        "and for a moment after each answer; anything more is a leftover."
    )
    in_flight: int = Field(
        default=0, description="Runs executing when this call began (its probe not counted)."
    )
    in_flight_high_water: int = Field(
        default=0, description="The most runs executing at once since the server started."
    )
    queued: int = Field(default=0, description="Calls waiting for a free run slot.")
    runs_on_standby: int = Field(
        description="Warm runs started ahead of their calls, each with a uid and a workdir."
    )
    sessions_open: int = Field(
        default=0,
        description="Sessions open now, each with a workdir (and in pool mode a uid) of its "
        "own; their workdirs are not counted in workdirs_present.",
    )
    warm_languages: list[str] = Field(
        description="Languages whose runs are started ahead of their calls (SANDBOX_WARM); "
        "Java's are SANDBOX_WARM_JAVA's, once the server has compiled its bootstrap."
    )
    notes: list[str] = Field(description="Where this posture is weaker than the full one.")
