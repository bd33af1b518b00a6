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
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from sandbox_mcp.config import Settings
from sandbox_mcp.errors import (
    CodeTooLarge,
    InvalidRequest,
    LauncherError,
    RuntimeUnavailable,
)
from sandbox_mcp.sandbox import identity as identities
from sandbox_mcp.sandbox import landlock
from sandbox_mcp.sandbox.languages import (
    LANGUAGES,
    SNIPPET_PATH,
    Language,
    RuntimeInfo,
    check_filename,
    get_language,
    probe_runtime,
)
from sandbox_mcp.sandbox.output import StreamCapture
from sandbox_mcp.sandbox.spec import Limits, RunOutcome, RunSpec

logger = logging.getLogger(__name__)

MAX_ARGS_BYTES = 64 * 1024
MAX_ARGS = 1024
MAX_STDIN_BYTES = 8 * 1024 * 1024
# How long past its deadline the server waits for a supervisor's report before giving up.
_REPORT_GRACE = 15.0

_FAILURE_PATTERNS = (
    (
        "processes",
        r"fork: (retry: )?Resource temporarily unavailable|BlockingIOError: \[Errno 11\]"
        r"|can't start new thread|pthread_create\S* .*(Resource temporarily unavailable|EAGAIN)"
        r"|spawn .*EAGAIN|Cannot fork",
    ),
    ("open_files", r"Too many open files|EMFILE"),
    ("disk", r"No space left on device|ENOSPC|Disk quota exceeded"),
    ("file_size", r"File too large|EFBIG"),
)


@dataclass(frozen=True)
class RunRequest:
    """One snippet to run. `filename` defaults to the language's `main.<ext>`."""

    language: str
    code: str
    stdin: str = ""
    args: tuple[str, ...] = ()
    filename: str | None = None
    timeout_seconds: float | None = None


@dataclass(frozen=True)
class RunResult:
    """Everything known about a finished run."""

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
    notes: tuple[str, ...] = ()

    @property
    def timed_out(self) -> bool:
        return self.limit == "timeout"


@dataclass
class _Pending:
    """Descriptors of one run, server side, closed when it ends."""

    stdout: int
    stderr: int
    control: socket.socket
    child_fds: list[int] = field(default_factory=list)


class Sandbox:
    """Runs snippets, each in a fresh sandbox. `await start()` before use, `close()` after."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.identity = identities.choose(settings.identity, settings.uid_base, settings.uid_count)
        self.landlock_abi = landlock.abi_version()
        self._pool = (
            identities.UidPool(settings.uid_base, settings.uid_count)
            if self.identity.mode == "pool"
            else None
        )
        self._slots = asyncio.Semaphore(settings.max_concurrent_runs)
        self._runtimes: dict[str, RuntimeInfo] = {}
        self._launcher: subprocess.Popen[bytes] | None = None
        self._prepared = False
        self._channel: socket.socket | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Claim the uid pool and prepare the run root; raises `ConfigurationError` if unsafe.

        Synchronous so that the CLI can refuse to start before it serves anything.
        """
        if self._prepared:
            return
        _make_dumpable(False)
        if self._pool is not None:
            self._pool.claim()
        self._prepare_run_root()
        self._prepared = True

    async def start(self) -> None:
        """Prepare, read the runtimes' versions and start the launcher."""
        self.prepare()
        infos = await asyncio.gather(
            *(asyncio.to_thread(probe_runtime, language) for language in LANGUAGES)
        )
        self._runtimes = {info.language.id: info for info in infos}
        self._start_launcher()
        logger.info(
            "sandbox ready: identity=%s landlock_abi=%d run_root=%s languages=%s",
            self.identity.mode,
            self.landlock_abi,
            self.settings.run_root,
            ",".join(i.language.id for i in infos if i.available) or "none",
        )

    async def close(self) -> None:
        """Stop the launcher; it ends every run still going and removes its workdir."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._launcher is not None:
            try:
                await asyncio.to_thread(self._launcher.wait, 10)
            except subprocess.TimeoutExpired:
                self._launcher.kill()
            self._launcher = None
        if self._pool is not None:
            self._pool.release_claim()
        self._prepared = False

    def runtimes(self) -> list[RuntimeInfo]:
        """Every language of the registry with what this machine has for it."""
        return [
            self._runtimes.get(language.id) or probe_runtime(language) for language in LANGUAGES
        ]

    # --- one run -----------------------------------------------------------------------------

    async def run(self, request: RunRequest) -> RunResult:
        """Run one snippet in a fresh sandbox and return its result.

        Raises `InvalidRequest` (and subclasses) for a request that cannot be run as given,
        `RuntimeUnavailable` when the language's runtime is missing and `LauncherError` when
        the sandbox machinery failed. A snippet that fails, crashes or hits a limit is a
        normal result, not an exception. Cancelling the calling task kills the run.
        """
        language, filename, code, stdin = self._check(request)
        timeout = self.settings.clamp_timeout(request.timeout_seconds)

        async with self._slots:
            uid = await self._pool.acquire() if self._pool else None
            released = False
            try:
                run_id = secrets.token_hex(6)
                spec = self._spec(run_id, language, filename, request.args, timeout, uid)
                logger.info(
                    "run %s %s start timeout=%gs memory=%dMB uid=%s",
                    run_id,
                    language.id,
                    timeout,
                    self.settings.memory_mb,
                    uid if uid is not None else os.getuid(),
                )
                try:
                    outcome, stdout, stderr, released = await self._execute(spec, code, stdin)
                except asyncio.CancelledError:
                    logger.info("run %s %s cancelled by the caller", run_id, language.id)
                    raise
            finally:
                if self._pool and uid is not None and released:
                    self._pool.release(uid)

        return self._result(spec, language, filename, outcome, stdout, stderr, timeout)

    def _check(self, request: RunRequest) -> tuple[Language, str, bytes, bytes]:
        language = get_language(request.language)
        info = self._runtimes.get(language.id)
        if info is not None and not info.available:
            raise RuntimeUnavailable(f"{language.id} is not available here: {info.reason}")

        code = request.code.encode("utf-8", errors="surrogatepass")
        if len(code) > self.settings.max_code_bytes:
            raise CodeTooLarge(
                f"code is {len(code)} bytes; the limit is {self.settings.max_code_bytes} bytes "
                "(SANDBOX_MAX_CODE_BYTES)"
            )
        stdin = request.stdin.encode("utf-8", errors="surrogatepass")
        if len(stdin) > MAX_STDIN_BYTES:
            raise InvalidRequest(f"stdin is {len(stdin)} bytes; the limit is {MAX_STDIN_BYTES}")
        if len(request.args) > MAX_ARGS:
            raise InvalidRequest(f"{len(request.args)} args; at most {MAX_ARGS} are allowed")
        if sum(len(arg.encode()) + 1 for arg in request.args) > MAX_ARGS_BYTES:
            raise InvalidRequest(f"args add up to more than {MAX_ARGS_BYTES} bytes")
        if any("\0" in arg for arg in request.args):
            raise InvalidRequest("args cannot contain NUL characters")

        filename = (
            language.default_filename
            if request.filename is None
            else check_filename(request.filename)
        )
        return language, filename, code, stdin

    def _spec(
        self,
        run_id: str,
        language: Language,
        filename: str,
        args: Sequence[str],
        timeout: float,
        uid: int | None,
    ) -> RunSpec:
        settings = self.settings
        workdir = str(settings.run_root / run_id)
        env = {
            "PATH": SNIPPET_PATH,
            "HOME": workdir,
            "PWD": workdir,
            "TMPDIR": f"{workdir}/.tmp",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TERM": "dumb",
            "USER": "sandbox",
            "LOGNAME": "sandbox",
            **language.env,
        }
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
        return RunSpec(
            run_id=run_id,
            argv=language.command(filename, tuple(args), settings.memory_mb),
            env=env,
            workdir=workdir,
            main_file=filename,
            limits=limits,
            uid=uid,
            gid=uid,
            network=settings.network == "on",
            landlock_abi=self.landlock_abi,
            protected_pids=sorted({os.getpid(), os.getpgid(0), os.getppid(), self._launcher.pid}),
        )

    async def _execute(
        self, spec: RunSpec, code: bytes, stdin: bytes
    ) -> tuple[RunOutcome, StreamCapture, StreamCapture, bool]:
        """Hand the run to the launcher and follow it to its end.

        Returns the outcome, the two captures, and whether the supervisor is known to be gone
        (only then may its uid go back to the pool).
        """
        loop = asyncio.get_running_loop()
        stdout = StreamCapture(self.settings.output_bytes)
        stderr = StreamCapture(self.settings.output_bytes)
        pending = self._open(spec, code, stdin)
        flood = _FloodGuard(self.settings.max_output_bytes, pending.control)

        readers = [
            asyncio.ensure_future(_drain(loop, pending.stdout, stdout, flood)),
            asyncio.ensure_future(_drain(loop, pending.stderr, stderr, flood)),
        ]
        gone = False
        try:
            outcome = await asyncio.wait_for(
                _await_outcome(loop, pending.control), spec.limits.timeout_seconds + _REPORT_GRACE
            )
            await asyncio.wait_for(asyncio.gather(*readers), _REPORT_GRACE)
            gone = await _await_exit(loop, pending.control)
        except TimeoutError:
            logger.error("run %s: the supervisor did not report in time", spec.run_id)
            outcome = _failed_outcome("the sandbox did not report the end of the run")
        except asyncio.CancelledError:
            flood.kill("cancelled")
            raise
        finally:
            for reader in readers:
                reader.cancel()
            pending.control.close()

        if flood.tripped and outcome.limit in (None, "cancelled"):
            outcome = _replace(outcome, limit="output")
        return outcome, stdout, stderr, gone

    def _open(self, spec: RunSpec, code: bytes, stdin: bytes) -> _Pending:
        """Create the run's descriptors and send them with the spec to the launcher."""
        stdout_read, stdout_write = os.pipe2(os.O_CLOEXEC)
        stderr_read, stderr_write = os.pipe2(os.O_CLOEXEC)
        control, control_remote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stdin_fd = _sealed_memfd("stdin", stdin)
        payload_fd = _sealed_memfd("payload", code)
        child_fds = [stdin_fd, stdout_write, stderr_write, control_remote.fileno(), payload_fd]

        try:
            if self._channel is None:
                raise LauncherError("the launcher is not running")
            self._channel.sendmsg(
                [spec.to_json()],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", child_fds))],
            )
        except OSError as exc:
            for fd in (stdout_read, stderr_read):
                os.close(fd)
            control.close()
            raise LauncherError(f"could not hand the run to the launcher: {exc}") from exc
        finally:
            for fd in (stdin_fd, stdout_write, stderr_write, payload_fd):
                os.close(fd)
            control_remote.close()

        for fd in (stdout_read, stderr_read):
            os.set_blocking(fd, False)
        control.setblocking(False)
        return _Pending(stdout_read, stderr_read, control)

    def _result(
        self,
        spec: RunSpec,
        language: Language,
        filename: str,
        outcome: RunOutcome,
        stdout: StreamCapture,
        stderr: StreamCapture,
        timeout: float,
    ) -> RunResult:
        out, err = stdout.result(), stderr.result()
        limit = outcome.limit or _limit_from_output(language, outcome, err.text, spec.limits)
        notes: list[str] = []
        if outcome.error:
            notes.append(outcome.error)
        if outcome.error and outcome.exit_code is None and outcome.signal is None:
            raise LauncherError(f"run {spec.run_id} could not start: {outcome.error}")

        result = RunResult(
            run_id=spec.run_id,
            language=language.id,
            filename=filename,
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
            notes=tuple(notes),
        )
        logger.info(
            "run %s %s exit=%s%s%s %.0fms %.1fMB out=%dB err=%dB",
            result.run_id,
            result.language,
            result.exit_code,
            f" signal={result.signal}" if result.signal else "",
            f" limit={result.limit}" if result.limit else "",
            result.duration_ms,
            result.peak_memory_bytes / 1e6,
            result.stdout_bytes,
            result.stderr_bytes,
        )
        return result

    # --- setup -------------------------------------------------------------------------------

    def _prepare_run_root(self) -> None:
        root = self.settings.run_root
        root.mkdir(parents=True, exist_ok=True)
        # Pool-mode runs create their workdirs themselves, as their own uid: the root is
        # writable by all and sticky, and not listable, like a private /tmp.
        os.chmod(root, 0o1733 if self.identity.mode == "pool" else 0o700)
        for stale in root.iterdir():
            # Left by a server that died without cleaning up.
            shutil.rmtree(stale, ignore_errors=True)
            if stale.exists():
                logger.warning("stale workdir %s could not be removed", stale)

    def _start_launcher(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._launcher = subprocess.Popen(
            [sys.executable, "-I", "-m", "sandbox_mcp.sandbox.launcher", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # never the MCP channel
            env={"PATH": SNIPPET_PATH, "LANG": "C.UTF-8"},
            cwd="/",
        )
        theirs.close()
        self._channel = ours


class _FloodGuard:
    """Counts a run's output and asks for the run to be killed once it floods."""

    def __init__(self, max_bytes: int, control: socket.socket) -> None:
        self.max_bytes = max_bytes
        self.control = control
        self.total = 0
        self.tripped = False
        self._sent = False

    def add(self, count: int) -> None:
        self.total += count
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


async def _await_outcome(loop: asyncio.AbstractEventLoop, control: socket.socket) -> RunOutcome:
    while True:
        data = await loop.sock_recv(control, 64 * 1024)
        if not data:
            return _failed_outcome("the run's supervisor died without a report")
        message = json.loads(data)
        if message.get("event") == "exited":
            return RunOutcome(**message["outcome"])


async def _await_exit(loop: asyncio.AbstractEventLoop, control: socket.socket) -> bool:
    """Wait for the supervisor to close its end: then every process of the run is gone."""
    try:
        while await asyncio.wait_for(loop.sock_recv(control, 4096), 5.0):
            pass
    except TimeoutError:
        return False
    return True


def _sealed_memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.lseek(fd, 0, os.SEEK_SET)
    # Sealed: the snippet reads exactly what the caller sent, and cannot grow it.
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd


def _limit_from_output(
    language: Language, outcome: RunOutcome, stderr_text: str, limits: Limits
) -> str | None:
    # Only a run that failed can have failed because of a limit.
    if outcome.exit_code == 0:
        return None
    if language.is_out_of_memory(stderr_text):
        return "memory"
    if outcome.peak_processes >= limits.max_processes:
        return "processes"
    for limit, pattern in _FAILURE_PATTERNS:
        if re.search(pattern, stderr_text):
            return limit
    return None


def _failed_outcome(error: str) -> RunOutcome:
    return RunOutcome(
        exit_code=None,
        signal=None,
        limit=None,
        duration_ms=0.0,
        cpu_ms=0.0,
        peak_memory_bytes=0,
        peak_processes=0,
        error=error,
    )


def _replace(outcome: RunOutcome, **changes: object) -> RunOutcome:
    import dataclasses

    return dataclasses.replace(outcome, **changes)  # type: ignore[arg-type]


def _make_dumpable(dumpable: bool) -> None:
    # Non-dumpable: no core file, and no process of the same uid may ptrace this one or read
    # its memory through /proc, whatever else fails.
    from sandbox_mcp.sandbox import _libc

    _libc.prctl(_libc.PR_SET_DUMPABLE, 1 if dumpable else 0)


__all__ = ["RunRequest", "RunResult", "Sandbox"]
