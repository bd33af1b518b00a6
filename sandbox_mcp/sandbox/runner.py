"""The sandbox core's entry point: `Sandbox.run` takes a request and returns its result.

It knows nothing about MCP. For each run it checks the request, picks the identity, builds
the spec, hands it with the run's descriptors to the launcher, reads the output as it comes,
and turns the supervisor's report into a `RunResult`. See docs/architecture.md for the life
of one run.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import subprocess  # nosec B404 # each call is judged where it is made
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sandbox_mcp.config import DEFAULT_RUN_ROOT, DEFAULT_UID_BASE, Settings
from sandbox_mcp.errors import (
    CodeTooLarge,
    ConfigurationError,
    InvalidRequest,
    LauncherError,
    RuntimeUnavailable,
    UidPoolTaken,
)
from sandbox_mcp.sandbox import (
    _libc,
    files,
    landlock,
    packages,
    posture,
    sessions,
    warm,
    warm_java,
    warm_node,
    workspace,
)
from sandbox_mcp.sandbox import diagnostics as diagnostics_module
from sandbox_mcp.sandbox import identity as identities
from sandbox_mcp.sandbox.admission import Admission
from sandbox_mcp.sandbox.diagnostics import Diagnostic
from sandbox_mcp.sandbox.languages import (
    LANGUAGES,
    PROBE_PREFIX,
    SNIPPET_PATH,
    Language,
    MainFile,
    RuntimeInfo,
    get_language,
    probe_runtime,
)
from sandbox_mcp.sandbox.launcher import RUN_MESSAGE
from sandbox_mcp.sandbox.output import StreamCapture
from sandbox_mcp.sandbox.posture import Posture
from sandbox_mcp.sandbox.progress import RunProgress
from sandbox_mcp.sandbox.spec import BuildOutcome, Limits, RunOutcome, RunSpec
from sandbox_mcp.sandbox.workspace import InputFile, Listing, OutputFile

logger = logging.getLogger(__name__)

_NOEXEC_FIX = (
    "mount it with exec (docker run --tmpfs /tmp:exec,nosuid,nodev or SANDBOX_RUN_ROOT on an "
    "exec-mounted filesystem)"
)
MAX_ARGS_BYTES = 64 * 1024
MAX_ARGS = 1024
MAX_STDIN_BYTES = 8 * 1024 * 1024
# How long past its deadline the server waits for a supervisor's report before giving up.
_REPORT_GRACE = 15.0
# Warm runs kept started ahead of their calls, per warm language. Two: a call rarely finds
# none ready, and each holds a uid, a workdir and two processes while it waits (a Python one
# about 10 MB of its own, a JavaScript one a node of about 40 MB RSS, 6 MB of it its own).
STANDBY_RUNS = 2
# How much of each output stream is kept whole, for a result whose output was cut to head
# and tail (RunResult.stdout_full): the server keeps it readable for a while.
FULL_OUTPUT_BYTES = 10 * 1024 * 1024
# What a run's outcome says when its supervisor is gone without a word.
SUPERVISOR_GONE = "the run's supervisor died without a report"
SUPERVISOR_SILENT = "the sandbox did not report the end of the run"
# How many servers with default settings may share a machine (see _free_run_root).
_DEFAULT_RUN_ROOTS = 16

_FAILURE_PATTERNS = (
    (
        "processes",
        r"fork: (retry: )?Resource temporarily unavailable|BlockingIOError: \[Errno 11\]"
        r"|can't start new thread|pthread_create\S* .*(Resource temporarily unavailable|EAGAIN)"
        r"|spawn .*EAGAIN|Cannot fork",
    ),
    ("open_files", r"Too many open files|EMFILE"),
    ("disk", r"No space left on device|ENOSPC|Disk quota exceeded"),
    ("file_size", r"File too large|EFBIG|File size limit exceeded"),
)


@dataclass(frozen=True)
class Activity:
    """How busy the sandbox is now, for metrics and readiness."""

    in_flight: int
    in_flight_high_water: int
    queued: int
    max_concurrent: int
    max_queued: int = 0
    memory_budget_mb: int = 0
    memory_reserved_mb: int = 0


@dataclass(frozen=True)
class RunRequest:
    """One snippet to run. `filename` defaults to the language's `main.<ext>`.

    `files` are written into the workdir before the build and the run (workspace.py has
    their rules).
    """

    language: str
    code: str
    stdin: str = ""
    args: tuple[str, ...] = ()
    filename: str | None = None
    timeout_seconds: float | None = None
    files: tuple[InputFile, ...] = ()
    # None: a fresh sandbox. "new": open a session; else the id of the caller's session
    # (sessions.py). `owner` is who calls: a session answers only the owner that opened it.
    session_id: str | None = None
    owner: str = ""
    # Who asked, when the transport knows (an authenticated HTTP client): for the log only.
    caller: str | None = None


@dataclass(frozen=True)
class RunResult:
    """Everything known about a finished run.

    `exit_code`, `signal` and `duration_ms` are the program's own; when its build failed the
    program never ran, `exit_code` and `signal` are None and `compile` says why. `files` are
    the regular files the run created or changed in its workdir (at most
    `workspace.MAX_LISTED`; `files_unlisted` more). `stdout_full` and `stderr_full` hold a
    stream's first `FULL_OUTPUT_BYTES` when it was cut to head and tail, else None.
    """

    run_id: str
    language: str
    filename: str
    stdout: str
    stderr: str
    exit_code: int | None
    signal: str | None
    limit: str | None
    duration_ms: float
    cpu_ms: float
    peak_memory_bytes: int
    stdout_bytes: int
    stderr_bytes: int
    stdout_truncated: bool
    stderr_truncated: bool
    timeout_seconds: float
    compile: BuildOutcome | None = None
    notes: tuple[str, ...] = ()
    files: tuple[OutputFile, ...] = ()
    files_unlisted: int = 0
    stdout_full: bytes | None = field(default=None, repr=False)
    stderr_full: bytes | None = field(default=None, repr=False)
    # The session the run belongs to, and whether its interpreter's state was lost in it.
    session_id: str | None = None
    session_state_lost: bool = False

    @property
    def timed_out(self) -> bool:
        return self.limit == "timeout"


@dataclass(frozen=True)
class ValidationResult:
    """What the language's checker found, without running the program."""

    run_id: str
    language: str
    filename: str
    valid: bool
    diagnostics: tuple[Diagnostic, ...]
    checker: str
    duration_ms: float
    limit: str | None
    output: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Prepared:
    """A request checked and turned into what the launcher needs."""

    language: Language
    main: MainFile
    code: bytes
    stdin: bytes
    files: tuple[InputFile, ...] = ()

    @property
    def payload(self) -> bytes:
        """The main file and the caller's files, as the supervisor reads them."""
        return workspace.pack(self.code, self.files)


@dataclass
class _Pending:
    """Descriptors of one run, server side, closed when it ends."""

    stdout: int
    stderr: int
    control: socket.socket
    child_fds: list[int] = field(default_factory=list)


@dataclass
class _Standby:
    """A warm run started ahead of its call, confined and waiting for its go."""

    spec: RunSpec
    uid: int | None
    pending: _Pending


class Sandbox:
    """Runs snippets, each in a fresh sandbox. `await start()` before use, `close()` after."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.identity = identities.choose(settings.identity, settings.uid_base, settings.uid_count)
        # The operator may turn a kernel layer off (SANDBOX_DISABLE); the posture says so.
        self.landlock_abi = 0 if "landlock" in settings.disable else landlock.abi_version()
        self.posture: Posture | None = None
        self._pool = (
            identities.UidPool(settings.uid_base, settings.uid_count)
            if self.identity.mode == "pool"
            else None
        )
        # Java runs on standby (warm_java.py): each JVM holds its memory while it waits, out
        # of the budget runs are admitted against. None while its bootstrap is not compiled.
        self._java_standby_runs = _java_standby_runs(settings)
        self._java_bootstrap: str | None = None
        self._admission = Admission(
            settings.max_concurrent_runs,
            settings.memory_budget_mb - self._java_standby_runs * warm_java.STANDBY_MEMORY_MB,
            settings.max_queued,
            settings.queue_timeout,
        )
        # The runs in flight by id, with the means to kill them (at shutdown).
        self._running: dict[str, _FloodGuard] = {}
        self._runtimes: dict[str, RuntimeInfo] = {}
        self._launcher: _LauncherProcess | None = None
        # The warm launcher for Python runs (warm.py), when SANDBOX_WARM allows it, the
        # languages whose runs are warm, and their runs on standby for the next calls.
        self._template: _LauncherProcess | None = None
        self._warm: tuple[str, ...] = ()
        self._standby: dict[str, list[_Standby]] = {}
        # Run ids of runs on standby, ready or still starting: their workdirs are expected.
        self._standby_ids: set[str] = set()
        self._standing_up: dict[str, set[asyncio.Task[None]]] = {}
        self._java_preparing: asyncio.Future[None] | None = None
        # Waits for supervisors to exit after their answers, to give their uids back.
        self._finishing: set[asyncio.Task[None]] = set()
        # Files and directories of the server's that runs must not read though their uid
        # may (shared mode), such as the HTTP token file; Landlock hides them.
        self.hidden_paths: list[str] = []
        if settings.auth_token_file is not None:
            self.hidden_paths = _token_paths(str(settings.auth_token_file))
        self._prepared = False
        self._root_lock: int | None = None
        self._probing: asyncio.Future[None] | None = None
        self._probe_home: str | None = None
        self.sessions = sessions.Sessions(self)

    # --- lifecycle ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Claim the uid pool and prepare the run root; raises `ConfigurationError` if unsafe.

        Synchronous so that the CLI can refuse to start before it serves anything.
        """
        if self._prepared:
            return
        _make_dumpable(False)
        if self._pool is not None:
            sessions.check_pool(
                self.settings,
                STANDBY_RUNS * len(self.settings.warm_languages) + self._java_standby_runs,
            )
            self._claim_uid_pool()
        try:
            self._prepare_run_root()
        except BaseException:
            if self._pool is not None:
                self._pool.release_claim()
            raise
        self.posture = posture.measure(str(self.settings.run_root))
        if not self.posture.run_root_exec:
            logger.warning(
                "run root %s is mounted noexec: %s cannot run their programs; %s",
                self.settings.run_root,
                ", ".join(language.id for language in LANGUAGES if language.runs_from_workdir),
                _NOEXEC_FIX,
            )
        self._prepared = True

    @property
    def warm_pid(self) -> int | None:
        """The pid of the warm Python template, when Python runs are warm."""
        return self._template.pid if self._template is not None else None

    @property
    def warm_languages(self) -> tuple[str, ...]:
        """The languages whose runs are started before their calls."""
        return self._warm

    @property
    def standby_ready(self) -> int:
        """How many warm runs wait, started, for their calls."""
        return sum(len(ready) for ready in self._standby.values())

    def activity(self) -> Activity:
        """Runs executing now, their most at once since start, and calls waiting for a slot."""
        admission = self._admission
        return Activity(
            in_flight=admission.in_flight,
            in_flight_high_water=admission.in_flight_high_water,
            queued=admission.queued,
            max_concurrent=admission.max_runs,
            max_queued=admission.max_queued,
            memory_budget_mb=admission.budget_mb,
            memory_reserved_mb=admission.reserved_mb,
        )

    @property
    def seccomp_enabled(self) -> bool:
        """Whether runs get the seccomp filter: the kernel has it and nobody turned it off."""
        available = self.posture is None or self.posture.seccomp_available
        return available and "seccomp" not in self.settings.disable

    async def start(self) -> None:
        """Prepare, start the launcher, and begin reading the runtimes' versions."""
        self.prepare()
        self._launcher = _LauncherProcess.start(
            [sys.executable, "-I", "-m", "sandbox_mcp.sandbox.launcher"],
            {"PATH": SNIPPET_PATH, "LANG": "C.UTF-8"},
        )
        self._template = self._start_template()
        self._warm = self._warm_languages()
        for language_id in self._warm:
            self._refill_standby(language_id)
        self.sessions.start()
        # Reading versions starts a JVM or two and takes seconds: it goes on in the
        # background, and only list_languages waits for it.
        self._probe_home = tempfile.mkdtemp(prefix=PROBE_PREFIX)
        self._probing = asyncio.ensure_future(self._probe_runtimes())
        if self._java_standby_runs:
            self._java_preparing = asyncio.ensure_future(self._prepare_java_standby())
        logger.info(
            "sandbox ready: identity=%s landlock_abi=%d run_root=%s",
            self.identity.mode,
            self.landlock_abi,
            self.settings.run_root,
        )

    async def drain(self, grace: float) -> None:
        """Refuse new runs, give those in flight `grace` seconds to end, then end the rest.

        Runs ended here finish with `limit` "cancelled" and their callers get that answer.
        Call `close` after it.
        """
        self._admission.close()
        if await self._admission.wait_idle(grace):
            return
        logger.warning(
            "shutting down: %d runs still going after %gs, ending them",
            len(self._running),
            grace,
        )
        for guard in list(self._running.values()):
            guard.kill("cancelled")
        await self._admission.wait_idle(_REPORT_GRACE)

    async def close(self) -> None:
        """Stop the launcher; it ends every run still going and removes its workdir."""
        if not self._prepared:
            return
        if self._probing is not None:
            self._probing.cancel()
            self._probing = None
        if self._probe_home is not None:
            # A probe still going when its server leaves cannot clean up after itself (it
            # runs in a thread); left to each probe, their directories piled up in /tmp.
            shutil.rmtree(self._probe_home, ignore_errors=True)
            self._probe_home = None
        if self._java_preparing is not None:
            # Cancelled before it runs again: it never starts compiling once the probes end.
            self._java_preparing.cancel()
            await asyncio.gather(self._java_preparing, return_exceptions=True)
            self._java_preparing = None
        if self._java_bootstrap is not None:
            # Early, as the probes' HOME: a server stopped by its client may not get to the end.
            # No run is in flight by now (drain); JVMs on standby are ended below.
            warm_java.remove_bootstrap(self._java_bootstrap)
            self._java_bootstrap = None
        await self.sessions.close()
        starting = [task for tasks in self._standing_up.values() for task in tasks]
        for task in starting:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        for ready in self._standby.values():
            while ready:
                self._let_go(ready.pop())
        self._warm = ()
        for launcher in (self._template, self._launcher):
            if launcher is not None:
                await launcher.stop()
        self._launcher = self._template = None
        await asyncio.gather(*self._finishing, return_exceptions=True)
        if self._pool is not None:
            self._pool.release_claim()
        # An empty run root is this server's alone; one that still holds something is not.
        with contextlib.suppress(OSError):
            self.settings.run_root.rmdir()
        if self._root_lock is not None:
            files.unlock_file(f"{self.settings.run_root}.lock", self._root_lock)
            self._root_lock = None
        self._prepared = False

    async def runtimes(self) -> list[RuntimeInfo]:
        """Every language of the registry with what this machine has for it."""
        if self._probing is not None:
            await asyncio.shield(self._probing)
        elif not self._runtimes:
            await self._probe_runtimes()
        infos = []
        for language in LANGUAGES:
            info = self._runtimes[language.id]
            blocked = self._noexec_reason(language)
            if info.available and blocked:
                info = dataclasses.replace(info, available=False, reason=blocked)
            infos.append(info)
        return infos

    def _probe_dir(self, language: Language) -> str | None:
        """An empty HOME of its own for one language's version probe, inside the server's."""
        if self._probe_home is None:
            return None
        home = os.path.join(self._probe_home, language.id)
        os.makedirs(home, mode=0o700, exist_ok=True)
        return home

    def _noexec_reason(self, language: Language) -> str | None:
        if self.posture is None or self.posture.run_root_exec or not language.runs_from_workdir:
            return None
        return (
            f"the run root {self.settings.run_root} is mounted noexec, so a compiled program "
            f"cannot be started from it; {_NOEXEC_FIX}"
        )

    async def _probe_runtimes(self) -> None:
        infos = await asyncio.gather(
            *(
                asyncio.to_thread(probe_runtime, language, self._probe_dir(language))
                for language in LANGUAGES
            )
        )
        self._runtimes = {info.language.id: info for info in infos}
        available = [info.language.id for info in infos if info.available]
        missing = [f"{info.language.id} ({info.reason})" for info in infos if not info.available]
        logger.info("runtimes: %s", ", ".join(available) or "none")
        if missing:
            logger.warning("runtimes missing: %s", "; ".join(missing))

    # --- one run -----------------------------------------------------------------------------

    async def run(self, request: RunRequest, progress: RunProgress | None = None) -> RunResult:
        """Run one snippet in a fresh sandbox and return its result.

        The run first waits for a slot and its language's share of the memory budget; that
        wait does not count against its deadline. `progress`, when given, is kept up to date
        with the run's live figures for the caller to read while it waits.

        Raises `InvalidRequest` (and subclasses) for a request that cannot be run as given,
        `RuntimeUnavailable` when the language's runtime is missing and `LauncherError` when
        the sandbox machinery failed, and `ServerBusy` when it waited too long for a slot or
        too many calls wait already. A snippet that fails, crashes or hits a limit, or whose
        build fails, is a normal result, not an exception. Cancelling the calling task kills
        the run. With `request.session_id` the run belongs to a session (sessions.py), which
        raises `UnknownSession`, `SessionEnded` and `TooManySessions` besides.
        """
        if request.session_id is not None:
            return await self.sessions.run(request, progress)
        prepared = self._check(request.language, request.code, request.filename, request)
        timeout = self.settings.clamp_timeout(request.timeout_seconds)
        language, main = prepared.language, prepared.main

        def spec_for(run_id: str, uid: int | None) -> RunSpec:
            values = language.values(main, self._workdir(run_id), self.settings.memory_mb)
            build, run = language.commands(main)
            argv = [*language.command(run, values), *request.args]
            build_argv = language.command(build, values) if build else None
            spec = self._spec(run_id, language, main, values, argv, build_argv, timeout, uid)
            if self._template is not None and language.id == "python":
                spec = dataclasses.replace(spec, warm=True)
            return spec

        spec, outcome, stdout, stderr, listing = await self._launch(
            language,
            spec_for,
            prepared.payload,
            prepared.stdin,
            "run",
            warm=language.id in self._warm or language.id == "java",
            progress=progress,
        )
        return self._result(
            spec, prepared, outcome, stdout, stderr, timeout, listing, request.caller
        )

    async def validate(
        self, language_name: str, code: str, filename: str | None = None
    ) -> ValidationResult:
        """Check `code` with its language's checker, under the same isolation, without
        running it. Raises like `run` for a request that cannot be checked."""
        prepared = self._check(language_name, code, filename, None)
        timeout = self.settings.clamp_timeout(None)
        language, main = prepared.language, prepared.main
        source, shift = language.validation_source(code)

        def spec_for(run_id: str, uid: int | None) -> RunSpec:
            values = language.values(main, self._workdir(run_id), self.settings.memory_mb)
            argv = language.command(language.validate, values)
            return self._spec(run_id, language, main, values, argv, None, timeout, uid)

        payload = workspace.pack(source.encode("utf-8", errors="surrogatepass"), ())
        spec, outcome, stdout, stderr, _listing = await self._launch(
            language, spec_for, payload, b"", "validate"
        )
        output = (stdout.result().text + "\n" + stderr.result().text).strip()
        diagnostics = [
            _shifted(found, shift)
            for found in diagnostics_module.parse(language.id, output, main.name)
            if not any(re.search(pattern, found.message) for pattern in language.validate_ignore)
        ]
        if outcome.limit is not None or outcome.exit_code is None:
            reason = outcome.limit or outcome.signal or outcome.error or "it did not finish"
            message = f"the checker did not finish: {reason}"
            diagnostics.append(diagnostics_module.Diagnostic(None, None, "error", message))
        valid = not any(found.severity == "error" for found in diagnostics)
        if valid and outcome.exit_code not in (0, None) and not language.validate_ignore:
            # The checker failed without saying where: keep its words.
            diagnostics.append(diagnostics_module.Diagnostic(None, None, "error", output[:300]))
            valid = False
        result = ValidationResult(
            run_id=spec.run_id,
            language=language.id,
            filename=main.name,
            valid=valid,
            diagnostics=tuple(diagnostics),
            checker=language.validate[0],
            duration_ms=outcome.duration_ms,
            limit=outcome.limit,
            output=output,
            notes=main.notes,
        )
        logger.info(
            "validate %s %s valid=%s diagnostics=%d %.0fms",
            spec.run_id,
            language.id,
            valid,
            len(diagnostics),
            outcome.duration_ms,
        )
        return result

    async def probe_network(self) -> tuple[bool, str]:
        """Ask a real sandboxed child to open an internet socket and connect to loopback.

        Returns whether it could open the socket and what it saw. Only 127.0.0.1 is ever
        tried, on the discard port; nothing leaves the machine.
        """
        code = (
            "import socket\n"
            "try:\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
            "except OSError as e:\n"
            "    print('refused', e.strerror)\n"
            "else:\n"
            "    s.settimeout(1)\n"
            "    try:\n"
            "        s.connect(('127.0.0.1', 9))\n"
            "        print('opened', 'connected to 127.0.0.1:9')\n"
            "    except OSError as e:\n"
            "        print('opened', 'connect to 127.0.0.1:9:', e.strerror)\n"
        )
        result = await self.run(RunRequest(language="python", code=code, timeout_seconds=10))
        verdict, _, detail = result.stdout.strip().partition(" ")
        return verdict == "opened", f"{verdict}: {detail}".strip() if verdict else result.stderr

    def workdirs_present(self) -> int:
        """How many workdirs exist under the run root now, besides those of runs on standby
        and of open sessions."""
        expected = self._standby_ids | self.sessions.workdir_names()
        try:
            names = [entry.name for entry in self.settings.run_root.iterdir()]
            return sum(1 for name in names if name not in expected)
        except OSError:
            return 0

    def _workdir(self, run_id: str) -> str:
        return str(self.settings.run_root / run_id)

    async def _launch(
        self,
        language: Language,
        spec_for: Callable[[str, int | None], RunSpec],
        code: bytes,
        stdin: bytes,
        kind: str,
        warm: bool = False,
        progress: RunProgress | None = None,
    ) -> tuple[RunSpec, RunOutcome, StreamCapture, StreamCapture, Listing]:
        """Take a slot, a run on standby or a uid, hand the run over and follow it."""
        need_mb = max(16, int(self.settings.memory_mb * language.expected_memory_share))
        async with self._admission.slot(need_mb):
            return await self._launch_in_slot(
                language, spec_for, code, stdin, kind, warm, progress or RunProgress()
            )

    async def _launch_in_slot(
        self,
        language: Language,
        spec_for: Callable[[str, int | None], RunSpec],
        code: bytes,
        stdin: bytes,
        kind: str,
        warm: bool,
        progress: RunProgress,
    ) -> tuple[RunSpec, RunOutcome, StreamCapture, StreamCapture, Listing]:
        pending = None
        standby = self._take_standby(language.id) if warm else None
        if standby is not None:
            uid = standby.uid
            spec = spec_for(standby.spec.run_id, uid)
            pending = self._go(standby, spec, code, stdin)
        if pending is None:
            uid = await self._pool.acquire() if self._pool else None
            spec = spec_for(secrets.token_hex(6), uid)
            try:
                pending = self._open(spec, code, stdin)
            except BaseException:
                self._finish_later(None, uid)
                raise
        run_id = spec.run_id
        logger.info(
            "%s %s %s start timeout=%gs memory=%dMB uid=%s%s",
            kind,
            run_id,
            language.id,
            spec.limits.timeout_seconds,
            self.settings.memory_mb,
            uid if uid is not None else os.getuid(),
            " (was on standby)" if pending is (standby and standby.pending) else "",
        )
        # The deadline counts from here, in the supervisor, not from the call's arrival.
        progress.start(run_id, spec.limits.timeout_seconds)
        try:
            outcome, stdout, stderr, listing = await self._follow(spec, pending, uid, progress)
        except asyncio.CancelledError:
            fields = {
                "event": "cancelled",
                "kind": kind,
                "run_id": run_id,
                "language": language.id,
                "duration_ms": round(progress.elapsed * 1000, 1),
                "limit": "cancelled",
                "output_bytes": progress.output_bytes,
            }
            logger.info(
                "%s %s %s cancelled by the caller after %.0fms",
                kind,
                run_id,
                language.id,
                progress.elapsed * 1000,
                extra={"fields": fields},
            )
            raise
        never_started = outcome.exit_code is None and outcome.signal is None
        if outcome.error and never_started and outcome.build is None:
            raise LauncherError(f"{kind} {run_id} could not start: {outcome.error}")
        return spec, outcome, stdout, stderr, listing

    # --- runs on standby ---------------------------------------------------------------------

    def _refill_standby(self, language_id: str) -> None:
        """Start warm runs of a language ahead of their calls, as many as it keeps."""
        ready = self._standby.setdefault(language_id, [])
        starting = self._standing_up.setdefault(language_id, set())
        while len(ready) + len(starting) < self._standby_wanted(language_id):
            task = asyncio.ensure_future(self._stand_up(get_language(language_id)))
            starting.add(task)
            task.add_done_callback(starting.discard)

    def _standby_wanted(self, language_id: str) -> int:
        """Runs on standby a language keeps: SANDBOX_WARM's languages `STANDBY_RUNS` each,
        Java SANDBOX_WARM_JAVA once its bootstrap is compiled."""
        if language_id == "java":
            return self._java_standby_runs if self._java_bootstrap is not None else 0
        return STANDBY_RUNS if language_id in self._warm else 0

    def _take_standby(self, language_id: str) -> _Standby | None:
        ready = self._standby.get(language_id)
        standby = ready.pop(0) if ready else None
        if standby is not None:
            self._standby_ids.discard(standby.spec.run_id)
        self._refill_standby(language_id)
        return standby

    async def _prepare_java_standby(self) -> None:
        """Compile the warm JVM's bootstrap (warm_java.py), then keep Java runs on standby.

        After the runtimes' versions are read: both start JVMs, and on a small machine the
        server's first answers should not wait behind all of them at once.
        """
        if self._probing is not None:
            await asyncio.gather(asyncio.shield(self._probing), return_exceptions=True)
        javac = shutil.which("javac", path=SNIPPET_PATH)
        if javac is None:
            return
        compiling = asyncio.ensure_future(asyncio.to_thread(warm_java.compile_bootstrap, javac))
        try:
            self._java_bootstrap = await asyncio.shield(compiling)
        except asyncio.CancelledError:
            # The thread runs on: wait for its directory, so as to remove it.
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                warm_java.remove_bootstrap(await compiling)
            raise
        except (OSError, subprocess.SubprocessError) as exc:
            logger.warning("warm Java runs are off: the bootstrap did not compile: %s", exc)
            return
        self._refill_standby("java")

    async def _stand_up(self, language: Language) -> None:
        """Start one warm run that waits for its call; keep it once it says it is ready."""
        # Never with one of the last uids: calls that are not warm must not wait for them.
        uid = None
        if self._pool is not None:
            if self._pool.free <= self.settings.max_concurrent_runs:
                return
            uid = await self._pool.acquire_now()
            if uid is None:
                return
        run_id = secrets.token_hex(6)
        main = language.main_file("", None)
        values = language.values(main, self._workdir(run_id), self.settings.memory_mb)
        if language.id == "java" and self._java_bootstrap is not None:
            argv = warm_java.standby_argv(language, main, values, self._java_bootstrap)
        else:
            argv = language.command(language.run, values)
        spec = self._spec(run_id, language, main, values, argv, None, self.settings.timeout, uid)
        if language.id == "python":
            spec = dataclasses.replace(spec, warm=True, standby=True)
        elif language.id == "java":
            spec = dataclasses.replace(spec, standby=True)
        else:
            spec = dataclasses.replace(spec, argv=warm_node.standby_argv(argv), standby=True)
        self._standby_ids.add(run_id)
        try:
            pending = self._open(spec, b"", b"")
        except LauncherError as exc:
            logger.warning("no %s run on standby: %s", language.id, exc)
            self._standby_ids.discard(run_id)
            self._finish_later(None, uid)
            return

        standby = _Standby(spec, uid, pending)
        loop = asyncio.get_running_loop()
        try:
            message = await loop.sock_recv(pending.control, 4096)
            ready = json.loads(message).get("event") == "standing by" if message else False
        except (OSError, ValueError, asyncio.CancelledError):
            self._let_go(standby)
            raise
        if ready and self._standby_wanted(language.id):
            self._standby.setdefault(language.id, []).append(standby)
        else:
            if not ready:
                logger.warning("%s run %s on standby failed to start", language.id, run_id)
            self._let_go(standby)

    def _go(self, standby: _Standby, spec: RunSpec, code: bytes, stdin: bytes) -> _Pending | None:
        """Send a run on standby its go; None if it is no longer there to take it."""
        go = {
            "op": "go",
            "argv": spec.argv,
            "main_file": spec.main_file,
            "timeout": spec.limits.timeout_seconds,
            "build_argv": spec.build_argv,  # Java builds in the warm JVM (warm_java.py)
        }
        fds: list[int] = []
        try:
            fds = [_sealed_memfd("stdin", stdin), _sealed_memfd("payload", code)]
            standby.pending.control.sendmsg(
                [json.dumps(go).encode()],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))],
            )
        except OSError as exc:
            logger.warning("run %s on standby could not be started: %s", spec.run_id, exc)
            self._let_go(standby)
            return None
        finally:
            for fd in fds:
                os.close(fd)
        return standby.pending

    def _let_go(self, standby: _Standby) -> None:
        """End a run on standby unused: its supervisor sees the end of the channel."""
        pending = standby.pending
        self._standby_ids.discard(standby.spec.run_id)
        for fd in (pending.stdout, pending.stderr):
            os.close(fd)
        with contextlib.suppress(OSError):
            pending.control.shutdown(socket.SHUT_WR)
        self._finish_later(pending.control, standby.uid)

    def _finish_later(self, control: socket.socket | None, uid: int | None) -> None:
        """Give `uid` back once the run's supervisor has exited (at once with no supervisor)."""
        task = asyncio.ensure_future(self._finish(control, uid))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(self, control: socket.socket | None, uid: int | None) -> None:
        gone = True
        if control is not None:
            try:
                gone = await _await_exit(asyncio.get_running_loop(), control)
            finally:
                control.close()
        if self._pool is None or uid is None:
            return
        if gone:
            self._pool.release(uid)
        else:
            # Something of the run may still live as that uid: never hand it out again.
            logger.error("uid %d kept out of the pool: its supervisor did not exit", uid)

    def _check(
        self, name: str, code_text: str, filename: str | None, request: RunRequest | None
    ) -> _Prepared:
        language = get_language(name)
        # Checking (request None) writes its products to the workdir but never runs them.
        blocked = self._noexec_reason(language) if request is not None else None
        if blocked:
            raise RuntimeUnavailable(f"{language.id} is not available here: {blocked}")
        if language.resolved_executable() is None:
            info = self._runtimes.get(language.id)
            reason = info.reason if info else f"{language.executable} not found on PATH"
            raise RuntimeUnavailable(f"{language.id} is not available here: {reason}")

        code = code_text.encode("utf-8", errors="surrogatepass")
        if len(code) > self.settings.max_code_bytes:
            raise CodeTooLarge(
                f"code is {len(code)} bytes; the limit is {self.settings.max_code_bytes} bytes "
                "(SANDBOX_MAX_CODE_BYTES)"
            )
        stdin = b""
        if request is not None:
            stdin = request.stdin.encode("utf-8", errors="surrogatepass")
            if len(stdin) > MAX_STDIN_BYTES:
                raise InvalidRequest(f"stdin is {len(stdin)} bytes; the limit is {MAX_STDIN_BYTES}")
            if len(request.args) > MAX_ARGS:
                raise InvalidRequest(f"{len(request.args)} args; at most {MAX_ARGS} are allowed")
            if sum(len(arg.encode()) + 1 for arg in request.args) > MAX_ARGS_BYTES:
                raise InvalidRequest(f"args add up to more than {MAX_ARGS_BYTES} bytes")
            if any("\0" in arg for arg in request.args):
                raise InvalidRequest("args cannot contain NUL characters")

        main = language.main_file(code_text, filename)
        inputs = request.files if request is not None else ()
        workspace.check_inputs(inputs, main.name, self.settings.max_files_bytes)
        return _Prepared(language, main, code, stdin, inputs)

    def _spec(
        self,
        run_id: str,
        language: Language,
        main: MainFile,
        values: dict[str, str],
        argv: list[str],
        build_argv: list[str] | None,
        timeout: float,
        uid: int | None,
    ) -> RunSpec:
        settings = self.settings
        workdir = self._workdir(run_id)
        env = {**_snippet_environment(workdir, values["tmp"]), **language.environment(values)}
        limits = Limits(
            timeout_seconds=timeout,
            cpu_seconds=settings.cpu_seconds,
            memory_bytes=settings.memory_bytes,
            max_processes=settings.max_processes,
            max_open_files=settings.max_open_files,
            max_file_bytes=settings.max_file_bytes,
            max_disk_bytes=settings.max_disk_bytes,
        )
        assert self._launcher is not None, "Sandbox.start() was not called"  # noqa: S101
        launchers = [self._launcher.pid] + ([self._template.pid] if self._template else [])
        # kill() and tkill() accept any thread's id, and the server has several threads. Where
        # Landlock cannot scope signals (before Linux 6.12) this list is all that guards them
        # in shared mode; a thread started after the run began is not on it (README, "Identity
        # modes").
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
        return RunSpec(
            run_id=run_id,
            argv=argv,
            env=env,
            workdir=workdir,
            main_file=main.name,
            limits=limits,
            uid=uid,
            gid=uid,
            network=settings.network == "on",
            landlock_abi=self.landlock_abi,
            protected_pids=sorted({os.getpid(), os.getpgid(0), os.getppid(), *launchers, *threads}),
            build_argv=build_argv,
            output_bytes=settings.output_bytes,
            max_output_bytes=settings.max_output_bytes,
            seccomp=self.seccomp_enabled,
            hidden_paths=list(self.hidden_paths),
            links=packages.workdir_links() if language.id == "python" else [],
        )

    async def _follow(
        self,
        spec: RunSpec,
        pending: _Pending,
        uid: int | None,
        progress: RunProgress,
        keep_control: bool = False,
    ) -> tuple[RunOutcome, StreamCapture, StreamCapture, Listing]:
        """Follow a run handed over to its supervisor to its end.

        The answer does not wait for the supervisor to exit (it removes the workdir after
        its report): its uid goes back to the pool in the background once it has. A
        session's call (`keep_control`) leaves the supervisor and its uid to the session.
        """
        loop = asyncio.get_running_loop()
        stdout = StreamCapture(self.settings.output_bytes, FULL_OUTPUT_BYTES)
        stderr = StreamCapture(self.settings.output_bytes, FULL_OUTPUT_BYTES)
        listing = Listing()
        flood = _FloodGuard(self.settings.max_output_bytes, pending.control, progress)
        self._running[spec.run_id] = flood

        readers = [
            asyncio.ensure_future(_drain(loop, pending.stdout, stdout, flood)),
            asyncio.ensure_future(_drain(loop, pending.stderr, stderr, flood)),
        ]
        try:
            outcome, listing = await asyncio.wait_for(
                _await_outcome(loop, pending.control), spec.limits.timeout_seconds + _REPORT_GRACE
            )
            await asyncio.wait_for(asyncio.gather(*readers), _REPORT_GRACE)
        except TimeoutError:
            logger.error("run %s: the supervisor did not report in time", spec.run_id)
            outcome = RunOutcome.failed(SUPERVISOR_SILENT)
        except asyncio.CancelledError:
            flood.kill("cancelled")
            raise
        finally:
            for reader in readers:
                reader.cancel()
            self._running.pop(spec.run_id, None)
            if not keep_control:
                self._finish_later(pending.control, uid)

        if flood.tripped and outcome.limit in (None, "cancelled"):
            outcome = dataclasses.replace(outcome, limit="output")
        return outcome, stdout, stderr, listing

    def _open(self, spec: RunSpec, code: bytes, stdin: bytes) -> _Pending:
        """Create the run's descriptors and send them with the spec to the launcher."""
        stdout_read, stdout_write = os.pipe2(os.O_CLOEXEC)
        stderr_read, stderr_write = os.pipe2(os.O_CLOEXEC)
        control, control_remote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stdin_fd = _sealed_memfd("stdin", stdin)
        payload_fd = _sealed_memfd("payload", code)
        spec_fd = _sealed_memfd("spec", spec.to_json())
        child_fds = [
            stdin_fd,
            stdout_write,
            stderr_write,
            control_remote.fileno(),
            payload_fd,
            spec_fd,
        ]

        try:
            launcher = self._template if spec.warm else self._launcher
            if launcher is None:
                raise LauncherError("the launcher is not running")
            launcher.channel.sendmsg(
                [RUN_MESSAGE],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", child_fds))],
            )
        except OSError as exc:
            for fd in (stdout_read, stderr_read):
                os.close(fd)
            control.close()
            raise LauncherError(f"could not hand the run to the launcher: {exc}") from exc
        finally:
            for fd in (stdin_fd, stdout_write, stderr_write, payload_fd, spec_fd):
                os.close(fd)
            control_remote.close()

        for fd in (stdout_read, stderr_read):
            os.set_blocking(fd, False)
        control.setblocking(False)
        return _Pending(stdout_read, stderr_read, control)

    def _result(
        self,
        spec: RunSpec,
        prepared: _Prepared,
        outcome: RunOutcome,
        stdout: StreamCapture,
        stderr: StreamCapture,
        timeout: float,
        listing: Listing,
        caller: str | None = None,
    ) -> RunResult:
        language = prepared.language
        out, err = stdout.result(), stderr.result()
        compiled = outcome.build
        limit = outcome.limit
        if limit is None and outcome.ran:
            limit = _limit_from_output(language, outcome, err.text, spec.limits)
        elif limit is None and compiled is not None:
            limit = _limit_from_build(language, compiled)

        notes = list(prepared.main.notes)
        if compiled is not None and not outcome.ran:
            notes.append("the build failed, so the program did not run: see compile.stderr")
        if outcome.error:
            notes.append(outcome.error)
        if language.id == "python":
            notes.extend(packages.missing_module_hints(err.text))

        result = RunResult(
            run_id=spec.run_id,
            language=language.id,
            filename=prepared.main.name,
            stdout=out.text,
            stderr=err.text,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            limit=limit,
            duration_ms=outcome.duration_ms,
            cpu_ms=outcome.cpu_ms,
            peak_memory_bytes=outcome.peak_memory_bytes,
            stdout_bytes=out.total_bytes,
            stderr_bytes=err.total_bytes,
            stdout_truncated=out.truncated,
            stderr_truncated=err.truncated,
            timeout_seconds=timeout,
            compile=compiled,
            notes=tuple(notes),
            files=listing.files,
            files_unlisted=listing.unlisted,
            stdout_full=stdout.full() if out.truncated else None,
            stderr_full=stderr.full() if err.truncated else None,
        )
        # One line per run; its fields also go to the JSON log as they are (logs.py).
        fields = {
            "event": "run",
            "run_id": result.run_id,
            "language": result.language,
            "duration_ms": round(result.duration_ms, 1),
            "exit_code": result.exit_code,
            "signal": result.signal,
            "limit": result.limit,
            "build_exit_code": None if compiled is None else compiled.exit_code,
            "peak_memory_bytes": result.peak_memory_bytes,
            "stdout_bytes": result.stdout_bytes,
            "stderr_bytes": result.stderr_bytes,
            "caller": caller,
        }
        logger.info(
            "run %s %s %sexit=%s%s%s %.0fms %.1fMB out=%dB err=%dB%s",
            result.run_id,
            result.language,
            "" if compiled is None else f"build={compiled.exit_code} ",
            result.exit_code,
            f" signal={result.signal}" if result.signal else "",
            f" limit={result.limit}" if result.limit else "",
            result.duration_ms,
            result.peak_memory_bytes / 1e6,
            result.stdout_bytes,
            result.stderr_bytes,
            f" caller={caller}" if caller else "",
            extra={"fields": fields},
        )
        return result

    # --- setup -------------------------------------------------------------------------------

    def _prepare_run_root(self) -> None:
        # Startup removes what a dead server left in the run root: that must never be the
        # workdirs of a live one. A lock next to the root says whose it is.
        root, lock = self._claim_run_root()
        try:
            root.mkdir(parents=True, exist_ok=True)
            _refuse_a_root_not_ours(root)
        except BaseException:
            files.unlock_file(f"{root}.lock", lock)
            raise
        self._root_lock = lock
        # Pool-mode runs create their workdirs themselves, as their own uid: the root is
        # writable by all and sticky, and not listable, like a private /tmp.
        os.chmod(root, 0o1733 if self.identity.mode == "pool" else 0o700)
        for stale in root.iterdir():
            # Left by a server that died without cleaning up.
            try:
                files.remove_tree(str(stale))
            except OSError as exc:
                logger.warning("stale workdir %s could not be removed: %s", stale, exc)

    def _claim_uid_pool(self) -> None:
        """Lock the uid pool; with the default range, the first next range no server holds.

        As with the run root (below): two root servers started with the same defaults, by two
        MCP clients outside a container, take two ranges instead of the second refusing. A
        range that was asked for stays a refusal.
        """
        assert self._pool is not None  # noqa: S101 - pool mode only
        count = self.settings.uid_count
        for number in range(1, _DEFAULT_RUN_ROOTS):
            try:
                self._pool.claim()
                return
            except UidPoolTaken:
                if self.settings.uid_base != DEFAULT_UID_BASE + (number - 1) * count:
                    raise
            base = DEFAULT_UID_BASE + number * count
            logger.info("uids from %d are another server's: trying %d", base - count, base)
            self.settings = dataclasses.replace(self.settings, uid_base=base)
            self.identity = dataclasses.replace(self.identity, uid_base=base)
            self._pool = identities.UidPool(base, count)
        self._pool.claim()

    def _claim_run_root(self) -> tuple[Path, int]:
        """Lock the run root; with the default one, the first of its siblings no server holds.

        Two MCP clients on one desktop (Claude Desktop and Claude Code, say) each start a
        server with the same default settings: the second takes /tmp/sandbox-mcp-2 and so on
        instead of refusing to start. A run root that was asked for stays a refusal.
        """
        root = self.settings.run_root
        if root != DEFAULT_RUN_ROOT:
            return root, _lock_beside(root)
        for number in range(2, _DEFAULT_RUN_ROOTS + 1):
            try:
                return root, _lock_beside(root)
            except ConfigurationError:
                busy = root
                root = DEFAULT_RUN_ROOT.with_name(f"{DEFAULT_RUN_ROOT.name}-{number}")
                logger.info("run root %s is another server's: trying %s", busy, root)
                self.settings = dataclasses.replace(self.settings, run_root=root)
        return root, _lock_beside(root)

    def _warm_languages(self) -> tuple[str, ...]:
        """The languages whose runs go warm: those SANDBOX_WARM names that can here."""
        warm = []
        for language_id in self.settings.warm_languages:
            if language_id == "python" and self._template is None:
                continue
            if language_id == "javascript" and not _node_can_stand_by():
                continue
            warm.append(language_id)
        return tuple(warm)

    def _start_template(self) -> _LauncherProcess | None:
        """Start the warm launcher on the snippets' own Python, or say why not."""
        python = get_language("python")
        interpreter = python.resolved_executable()
        if "python" not in self.settings.warm_languages or interpreter is None:
            return None
        # The environment every Python run gets, with placeholders where a run has its own
        # values: it is what /proc/self/environ shows a warm snippet (see warm.py).
        env = {**_snippet_environment("/", "/"), **python.environment({"tmp": "/"})}
        package_parent = str(Path(__file__).resolve().parent.parent.parent)
        try:
            return _LauncherProcess.start(
                [interpreter, "-u", "-B", "-c", warm.BOOTSTRAP], env, package_parent
            )
        except OSError as exc:
            logger.warning("warm Python runs are off: the template did not start: %s", exc)
            return None


class _FloodGuard:
    """Counts a run's output and asks for the run to be killed once it floods."""

    def __init__(self, max_bytes: int, control: socket.socket, progress: RunProgress) -> None:
        self.max_bytes = max_bytes
        self.control = control
        self.progress = progress
        self.total = 0
        self.tripped = False
        self._sent = False

    def add(self, count: int) -> None:
        self.total += count
        self.progress.output_bytes = self.total
        if self.total > self.max_bytes and not self.tripped:
            self.tripped = True
            self.kill("output")

    def kill(self, reason: str) -> None:
        if self._sent:
            return
        self._sent = True
        with contextlib.suppress(OSError):
            self.control.send(json.dumps({"op": "kill", "reason": reason}).encode())


async def _drain(
    loop: asyncio.AbstractEventLoop, fd: int, capture: StreamCapture, flood: _FloodGuard
) -> None:
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, 256 * 1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            capture.feed(data)
            flood.add(len(data))
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _await_outcome(
    loop: asyncio.AbstractEventLoop, control: socket.socket
) -> tuple[RunOutcome, Listing]:
    """The supervisor's report, and the listing of the run's files that comes beside it."""
    while True:
        data, fds = await _receive(loop, control)
        listing = Listing()
        for fd in fds:
            try:
                if not listing.files:
                    listing = workspace.read_listing(fd)
            except Exception as exc:  # a listing that cannot be read costs the files only
                logger.warning("the run's file listing could not be read: %s", exc)
            finally:
                os.close(fd)
        if not data:
            return RunOutcome.failed(SUPERVISOR_GONE), Listing()
        message = json.loads(data)
        if message.get("event") == "exited":
            return RunOutcome.from_dict(message["outcome"]), listing


async def _receive(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> tuple[bytes, list[int]]:
    """One message from a non-blocking socket and the descriptors it carried."""
    fds = array.array("i")
    while True:
        try:
            data, ancillary, _flags, _addr = sock.recvmsg(
                64 * 1024, socket.CMSG_SPACE(4 * fds.itemsize)
            )
            break
        except BlockingIOError:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(sock.fileno(), _settle, ready)
            try:
                await ready
            finally:
                loop.remove_reader(sock.fileno())
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


async def _await_exit(loop: asyncio.AbstractEventLoop, control: socket.socket) -> bool:
    """Wait for the supervisor to close its end: then every process of the run is gone."""
    try:
        while await asyncio.wait_for(loop.sock_recv(control, 4096), 5.0):
            pass
    except TimeoutError:
        return False
    return True


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _node_can_stand_by() -> bool:
    """Whether JavaScript runs can be started before their calls: node is there, and every
    run's uid can read the preload it waits in (warm_node.js)."""
    if get_language("javascript").resolved_executable() is None:
        return False
    try:
        readable = os.stat(warm_node.BOOTSTRAP).st_mode & stat.S_IROTH
    except OSError:
        readable = 0
    if not readable:
        logger.warning(
            "warm JavaScript runs are off: %s is not readable by all", warm_node.BOOTSTRAP
        )
    return bool(readable)


def _token_paths(token_file: str) -> list[str]:
    """What hides a token file: the file, where its links lead, and, when it is a link, its
    directory. A symlinked token is a secret volume's (Kubernetes: `token -> ..data/token`),
    whose next version appears beside it as a new directory when the secret is rotated."""
    paths = {token_file, os.path.realpath(token_file)}
    if os.path.islink(token_file):
        paths.add(os.path.dirname(os.path.abspath(token_file)))
    return sorted(paths)


def _lock_beside(root: Path) -> int:
    """Hold the lock `<root>.lock` (`files.lock_file`), or raise `ConfigurationError`."""
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = files.lock_file(f"{root}.lock")
    except PermissionError:
        raise ConfigurationError(
            f"the run root {root} belongs to another user's sandbox-mcp ({root}.lock is "
            "theirs); give this server its own SANDBOX_RUN_ROOT"
        ) from None
    if fd is None:
        raise ConfigurationError(
            f"the run root {root} is in use by another sandbox-mcp; give each server its own "
            "SANDBOX_RUN_ROOT"
        )
    return fd


def _java_standby_runs(settings: Settings) -> int:
    """How many Java runs to keep on standby: SANDBOX_WARM_JAVA, unless warm runs are off, the
    memory budget could not hold the JVMs and one Java run besides, or a run's memory limit
    is so small that a warm compiler's share of it would make programs fail that run cold."""
    runs = settings.warm_java if settings.warm != "off" else 0
    if runs and settings.memory_mb < 2 * warm_java.STANDBY_MEMORY_MB:
        logger.warning(
            "warm Java runs are off: a JVM with its compiler warm takes some %d MB of a run's "
            "%d MB (SANDBOX_MEMORY_MB); they need at least %d MB",
            warm_java.STANDBY_MEMORY_MB,
            settings.memory_mb,
            2 * warm_java.STANDBY_MEMORY_MB,
        )
        return 0
    if runs and settings.memory_budget_mb - runs * warm_java.STANDBY_MEMORY_MB < settings.memory_mb:
        logger.warning(
            "warm Java runs are off: a memory budget of %d MB cannot hold %d JVMs on standby "
            "(%d MB each) and a %d MB run",
            settings.memory_budget_mb,
            runs,
            warm_java.STANDBY_MEMORY_MB,
            settings.memory_mb,
        )
        return 0
    return runs


def _snippet_environment(workdir: str, tmp: str) -> dict[str, str]:
    """The whole environment of a run but its language's own variables: nothing inherited."""
    return {
        "PATH": SNIPPET_PATH,
        "HOME": workdir,
        "PWD": workdir,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "USER": "sandbox",
        "LOGNAME": "sandbox",
    }


@dataclass
class _LauncherProcess:
    """A launcher (launcher.py, or warm.py's template) and the socket that feeds it runs."""

    process: subprocess.Popen[bytes]
    channel: socket.socket

    @classmethod
    def start(cls, command: list[str], env: dict[str, str], *args: str) -> _LauncherProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = subprocess.Popen(  # nosec B603 # our own launcher on a known interpreter
                [*command, str(theirs.fileno()), *args],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # never the MCP channel
                env=env,
                cwd="/",
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(process, ours)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self) -> None:
        """Close the channel: the launcher ends its runs, removes their workdirs and exits."""
        self.channel.close()
        try:
            await asyncio.to_thread(self.process.wait, 10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _refuse_a_root_not_ours(root: Path) -> None:
    """Raise `ConfigurationError` if `root` is a symbolic link or belongs to another uid."""
    # In a shared directory such as /tmp (the default), another local user could make the run
    # root before the server starts. The owner of a sticky directory may rename or remove
    # what is in it: adopting theirs would hand them every run's workdir.
    status = os.lstat(root)
    if stat.S_ISLNK(status.st_mode):
        raise ConfigurationError(
            f"the run root {root} is a symbolic link; give its real path as SANDBOX_RUN_ROOT"
        )
    if status.st_uid != os.geteuid():
        raise ConfigurationError(
            f"the run root {root} belongs to uid {status.st_uid}, not to this server's uid "
            f"{os.geteuid()}: remove it, or give another SANDBOX_RUN_ROOT"
        )


def _sealed_memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.lseek(fd, 0, os.SEEK_SET)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, files.STDIN_SEALS)
    return fd


def _shifted(found: Diagnostic, lines: int) -> Diagnostic:
    if not lines or found.line is None:
        return found
    line = found.line - lines
    return dataclasses.replace(found, line=line if line >= 1 else None)


def _limit_from_build(language: Language, build: BuildOutcome) -> str | None:
    # Compilers have their own words for the limits they run into.
    if build.signal == "SIGXFSZ" or "File too large" in build.stderr:
        return "file_size"
    if language.is_out_of_memory(build.stderr) or re.search(
        r"out of memory|Cannot allocate memory|OutOfMemoryError", build.stderr
    ):
        return "memory"
    return None


def _limit_from_output(
    language: Language, outcome: RunOutcome, stderr_text: str, limits: Limits
) -> str | None:
    # A shell whose forks failed goes on and may exit 0 (a fork bomb's does): with its
    # processes seen near the limit and the refusals on stderr, the limit was hit.
    forks_refused = re.search(_FAILURE_PATTERNS[0][1], stderr_text) is not None
    if forks_refused and outcome.peak_processes >= 0.9 * limits.max_processes:
        return "processes"
    # Otherwise only a run that failed can have failed because of a limit.
    if outcome.exit_code == 0:
        return None
    if language.is_out_of_memory(stderr_text):
        return "memory"
    # A program that does not check malloc() dies of SIGSEGV (or aborts) when the data
    # limit refuses it more memory: a failure at the limit's edge is the limit's doing.
    if outcome.peak_memory_bytes >= 0.9 * limits.memory_bytes:
        return "memory"
    if outcome.peak_processes >= limits.max_processes:
        return "processes"
    for limit, pattern in _FAILURE_PATTERNS:
        if re.search(pattern, stderr_text):
            return limit
    return None


def _make_dumpable(dumpable: bool) -> None:
    # Non-dumpable: no core file, and no process of the same uid may ptrace this one or read
    # its memory through /proc, whatever else fails.
    _libc.prctl(_libc.PR_SET_DUMPABLE, 1 if dumpable else 0)


__all__ = ["RunRequest", "RunResult", "Sandbox"]
