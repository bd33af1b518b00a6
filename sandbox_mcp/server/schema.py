"""The structured results the tools return, published as their output schemas.

The schema is additive: later versions add fields and never remove or retype one, so a client
written against this version keeps working.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

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


class LanguageList(BaseModel):
    """The result of `list_languages`."""

    languages: list[LanguageInfo]
