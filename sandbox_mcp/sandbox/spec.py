"""What the server asks the launcher to run, and what comes back: plain values that cross a
socket as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# The limits a run can hit, as reported in `RunOutcome.limit` and to the model.
LIMITS = (
    "timeout",
    "cpu",
    "memory",
    "output",
    "processes",
    "file_size",
    "open_files",
    "disk",
    "cancelled",
)


@dataclass(frozen=True)
class Limits:
    """The resource limits of one run."""

    timeout_seconds: float
    cpu_seconds: int
    memory_bytes: int
    max_processes: int
    max_open_files: int
    max_file_bytes: int
    max_disk_bytes: int


@dataclass(frozen=True)
class RunSpec:
    """Everything the supervisor needs to run one snippet. Paths are absolute."""

    run_id: str
    argv: list[str]
    env: dict[str, str]
    workdir: str
    main_file: str
    limits: Limits
    uid: int | None
    gid: int | None
    network: bool
    landlock_abi: int
    protected_pids: list[int] = field(default_factory=list)
    # Compiles the program first, in the same sandbox and under the same deadline.
    build_argv: list[str] | None = None
    # How much of each build output stream to keep (head and tail), and how much the build
    # may write before it is killed.
    output_bytes: int = 16 * 1024
    max_output_bytes: int = 16 * 1024 * 1024
    # Whether to install the seccomp filter (off only when the operator turned it off).
    seccomp: bool = True
    # Run the program inside the snippet process instead of exec'ing its runtime: only a warm
    # launcher, whose interpreter is the runtime, is sent such a spec (see warm.py).
    warm: bool = False
    # Start the warm program ahead of its call: confined, it waits for a go from the server
    # with its argv, main file, code, stdin and deadline (argv and the timeout here are
    # placeholders until then).
    standby: bool = False
    # Besides the run root, what the run may not read though the server can: the server's
    # secrets (an HTTP token file), which in shared mode share the run's uid.
    hidden_paths: list[str] = field(default_factory=list)
    # Symbolic links the supervisor makes in the fresh workdir: [path in it, target]
    # (matplotlib's font list for Python runs; see packages.py).
    links: list[list[str]] = field(default_factory=list)
    # Serve a session instead of one run: keep the workdir and take calls on the control
    # socket until it closes (session_supervisor.py). `session_interpreter` marks the spec a
    # session's long-lived interpreter is started with.
    session: bool = False
    session_interpreter: bool = False

    def to_json(self) -> bytes:
        # Not dataclasses.asdict: it deep-copies every list and dict on the way, about half a
        # millisecond per run; json reads the values as they are.
        fields = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        fields["limits"] = dataclasses.asdict(self.limits)
        return json.dumps(fields).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RunSpec:
        raw: dict[str, Any] = json.loads(data)
        raw["limits"] = Limits(**raw["limits"])
        return cls(**raw)


@dataclass(frozen=True)
class BuildOutcome:
    """How the build step ended. Its output is already shortened to head and tail."""

    exit_code: int | None
    signal: str | None
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    duration_ms: float

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, as the supervisor saw it.

    `exit_code` is None when a signal ended the main process (`signal` names it) or when it
    never started (`error` says why). `limit` names the limit that ended the run, if the
    supervisor knows it; the server may still infer one from the output.
    """

    exit_code: int | None
    signal: str | None
    limit: str | None
    duration_ms: float
    cpu_ms: float
    peak_memory_bytes: int
    peak_processes: int
    error: str | None = None
    build: BuildOutcome | None = None
    # A session's call whose interpreter was killed (a limit, the deadline) or died: the
    # interpreter's state is gone, the workdir is not.
    state_lost: bool = False
    # A session's call whose interpreter was found running between calls, when it should have
    # been stopped, and killed: the call ran in a fresh one.
    lost_between_calls: bool = False
    # A session's call whose input files or main file could not be written (this path; the
    # error says why): nothing ran, the session is as it was.
    unwritable_path: str | None = None

    @property
    def ran(self) -> bool:
        """Whether the program itself started (a failed build means it never did)."""
        return self.build is None or self.build.succeeded

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def failed(cls, error: str, state_lost: bool = False) -> RunOutcome:
        """A run the sandbox could not carry out, or whose end it never heard of."""
        return cls(
            exit_code=None,
            signal=None,
            limit=None,
            duration_ms=0.0,
            cpu_ms=0.0,
            peak_memory_bytes=0,
            peak_processes=0,
            error=error,
            state_lost=state_lost,
        )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunOutcome:
        build = raw.pop("build", None)
        return cls(**raw, build=BuildOutcome(**build) if build else None)
