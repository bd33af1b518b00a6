"""Sessions: a workdir, an identity and, for Python and JavaScript, an interpreter that live
across calls, for the one caller that opened them.

The server's side of a session: the registry of open sessions, their owners, their idle
expiry and the cap on their number. The other side is one long-lived supervisor per session
(session_supervisor.py), forked by the launcher like a run's, that serves the session's calls
one at a time over its control socket.

- A session keeps all of a run's isolation: its own uid (pool mode: leased from the pool for
  the session's life, shared with nothing else) or the server's (shared mode), the same
  rlimits, Landlock domain, seccomp filter and scrubbed environment, and a deadline per call.
- Its id is a secret of 192 bits, and belongs to the caller (`owner`) that opened it: another
  caller's id is answered exactly as an unknown one. The log names a session by its workdir,
  never by its id.
- It ends when its owner resets it, after `session_idle_seconds` unused, or when a new
  session needs room (`max_sessions`; the least recently used idle one goes). Ending kills
  its processes, removes its workdir and gives its uid back. A call on an ended session is
  told why, for as long as the registry remembers it (the last `_REMEMBERED` ended).
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox_mcp.errors import (
    ConfigurationError,
    InvalidPath,
    InvalidRequest,
    LauncherError,
    SessionEnded,
    TooManySessions,
    UnknownSession,
)
from sandbox_mcp.sandbox import runner as runner_module
from sandbox_mcp.sandbox import session_drivers
from sandbox_mcp.sandbox.languages import Language, get_language
from sandbox_mcp.sandbox.progress import RunProgress
from sandbox_mcp.sandbox.spec import RunSpec

if TYPE_CHECKING:
    from sandbox_mcp.config import Settings
    from sandbox_mcp.sandbox.runner import RunRequest, RunResult, Sandbox

logger = logging.getLogger(__name__)

NEW = "new"
ALL = "all"
# The largest session file a client may read through the resource.
MAX_FILE_BYTES = 8 * 1024 * 1024
# How many ended sessions are remembered, so that a call on one is told why it is gone.
_REMEMBERED = 4096
_READY_WAIT = 15.0
# The largest call message a session's socket takes at its default size (212992 bytes on
# Linux), with room to spare: 64 KiB of arguments, twice (argv and args), as UTF-8, fits.
_MAX_CALL_MESSAGE = 192 * 1024
_END_WAIT = 15.0


def check_pool(settings: Settings, standby: int) -> None:
    """Refuse pool sizes that leave stateless runs without uids once sessions hold theirs.

    Each session holds a uid for its life; runs need `max_concurrent_runs` more, and warm
    runs on standby `standby` more.
    """
    needed = settings.max_sessions + settings.max_concurrent_runs + standby
    if needed > settings.uid_count:
        raise ConfigurationError(
            f"SANDBOX_UID_COUNT {settings.uid_count} is too small: SANDBOX_MAX_SESSIONS "
            f"({settings.max_sessions}) + SANDBOX_MAX_CONCURRENT_RUNS "
            f"({settings.max_concurrent_runs}) + {standby} runs on standby need {needed} uids"
        )


@dataclass
class Session:
    """One open session, as the server holds it."""

    id: str
    owner: str
    language: str
    spec: RunSpec
    uid: int | None
    control: socket.socket
    last_used: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    busy: bool = False
    ended: str | None = None
    # Calls cancelled by their caller whose outcomes the supervisor has yet to send.
    unreported: int = 0
    # A cancelled call's outcome, read late, said the interpreter was lost: the next answer
    # tells it, since the cancelled call's never went out.
    lost_unreported: bool = False

    @property
    def label(self) -> str:
        """What the log calls the session: its workdir's name, never its secret id."""
        return self.spec.run_id


class Sessions:
    """The sessions of one `Sandbox`. `start()` with it, `close()` before it stops."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._open: dict[str, Session] = {}
        self._ended: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()
        self._opening = 0
        # Sessions ended whose supervisors have yet to exit, by id.
        self._closing: dict[str, Session] = {}
        self._expiry: asyncio.Task[None] | None = None

    @property
    def settings(self) -> Settings:
        return self._sandbox.settings

    def start(self) -> None:
        """Begin ending sessions idle for longer than `session_idle_seconds`."""
        self._expiry = asyncio.ensure_future(self._expire())

    async def close(self) -> None:
        """End every session: processes killed, workdirs removed, uids given back."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for session in list(self._open.values()):
            self._end(session, "the server stopped")
        await self._wait_closed(list(self._closing.values()))

    def count(self) -> int:
        """How many sessions are open now."""
        return len(self._open)

    def workdir_names(self) -> set[str]:
        """The names of the open sessions' workdirs under the run root."""
        return {session.label for session in self._open.values()}

    # --- calls -------------------------------------------------------------------------------

    async def run(self, request: RunRequest, progress: RunProgress | None = None) -> RunResult:
        """Run `request` in the session it names (`"new"` opens one) and return its result;
        `progress`, when given, is kept up to date as for any run."""
        sandbox = self._sandbox
        prepared = sandbox._check(request.language, request.code, request.filename, request)
        timeout = self.settings.clamp_timeout(request.timeout_seconds)
        notes: list[str] = []
        if request.session_id == NEW:
            session = await self._open_session(request.owner, prepared.language, notes)
        else:
            session = self._find(request.owner, str(request.session_id))
            if session.language != prepared.language.id:
                raise InvalidRequest(
                    f"this session runs {session.language}, not {prepared.language.id}: a "
                    'session keeps one language; pass session_id "new" to open another'
                )

        async with session.lock:
            if session.ended is not None:
                raise self._ended_error(session.id, session.ended)
            session.busy = True
            try:
                result = await self._call(session, prepared, request, timeout, progress)
            finally:
                session.busy = False
                session.last_used = time.monotonic()
                if session.ended is not None:
                    self._close(session)

        disk_full = session.ended == _disk_reason(session)
        if disk_full:
            notes.append(
                f"the session's files went past the disk limit of "
                f"{session.spec.limits.max_disk_bytes} bytes: the session was ended; open a "
                'new one (session_id "new")'
            )
        if session.ended is not None and not disk_full:
            notes.append(f"the session has ended: {session.ended}")
        return dataclasses.replace(result, notes=(*result.notes, *notes))

    async def read_file(self, owner: str, session_id: str, path: str) -> bytes:
        """The content of the regular file `path` (relative) in the owner's session.

        Refuses absolute paths, `..`, links on the way, anything but a regular file and files
        above `MAX_FILE_BYTES` (`InvalidRequest`); unknown ids as `run` does.
        """
        session = self._find(owner, session_id)
        async with session.lock:
            if session.ended is not None:
                raise self._ended_error(session.id, session.ended)
            await self._catch_up(session)
            message = {"op": "read", "path": path, "max_bytes": MAX_FILE_BYTES}
            session.control.send(json.dumps(message).encode())
            data, fds = await runner_module._receive(asyncio.get_running_loop(), session.control)
            session.last_used = time.monotonic()
        try:
            if not data:
                raise LauncherError("the session's sandbox is gone")
            reply = json.loads(data)
            if reply.get("error") or not fds:
                raise InvalidRequest(f"cannot read {path!r} in the session: {reply.get('error')}")
            return os.pread(fds[0], int(reply["size"]), 0)
        finally:
            for fd in fds:
                os.close(fd)

    async def reset(
        self, owner: str, session_id: str | None = None, language: str | None = None
    ) -> list[str]:
        """End the owner's sessions: one id, `"all"`, or those of `language` (`"all"`: every
        one). Returns the ids ended, once their processes and files are gone."""
        if session_id is not None and session_id != ALL:
            targets = [self._find(owner, session_id)]
        else:
            wanted = None if language in (None, ALL) else get_language(str(language)).id
            targets = [
                session
                for session in self._open.values()
                if session.owner == owner and wanted in (None, session.language)
            ]
        for session in targets:
            self._end(session, "it was reset")
        await self._wait_closed(targets)
        return [session.id for session in targets]

    # --- opening, finding, ending -----------------------------------------------------------

    async def _open_session(self, owner: str, language: Language, notes: list[str]) -> Session:
        sandbox = self._sandbox
        self._make_room(owner, notes)
        self._opening += 1
        try:
            uid = None
            if sandbox._pool is not None:
                uid = await sandbox._pool.acquire_now()
                if uid is None:
                    raise TooManySessions(
                        "no uid is free for a new session now (SANDBOX_UID_COUNT); try again "
                        "when runs in flight have ended, or end a session with reset_session"
                    )
            name = "session-" + secrets.token_hex(6)
            main = language.main_file("", None)
            values = language.values(main, sandbox._workdir(name), self.settings.memory_mb)
            spec = sandbox._spec(name, language, main, values, [], None, self.settings.timeout, uid)
            spec = dataclasses.replace(spec, session=True)
            try:
                pending = sandbox._open(spec, b"", b"")
            except BaseException:
                sandbox._finish_later(None, uid)
                raise
            for fd in (pending.stdout, pending.stderr):
                os.close(fd)
            try:
                ready = await asyncio.wait_for(
                    asyncio.get_running_loop().sock_recv(pending.control, 4096), _READY_WAIT
                )
            except (OSError, TimeoutError, asyncio.CancelledError):
                ready = b""
            if not ready or json.loads(ready).get("event") != "session ready":
                pending.control.shutdown(socket.SHUT_WR)
                sandbox._finish_later(pending.control, uid)
                raise LauncherError("the session's sandbox did not start")
            session = Session(
                id=secrets.token_urlsafe(24),
                owner=owner,
                language=language.id,
                spec=spec,
                uid=uid,
                control=pending.control,
                last_used=time.monotonic(),
            )
            self._open[session.id] = session
        finally:
            self._opening -= 1
        logger.info(
            "session %s %s opened uid=%s (%d open)",
            session.label,
            language.id,
            uid if uid is not None else os.getuid(),
            len(self._open),
        )
        return session

    def _make_room(self, owner: str, notes: list[str]) -> None:
        """Below the caps, nothing. A caller holding half the sessions makes room among its
        own; at the cap, the least recently used idle session goes."""
        limit = self.settings.max_sessions
        share = max(1, limit // 2)
        own = [session for session in self._open.values() if session.owner == owner]
        if len(own) >= share:
            # One caller cannot push every other caller's sessions out.
            candidates = own
            cap = f"a caller holds at most {share} sessions (half of SANDBOX_MAX_SESSIONS)"
        elif len(self._open) + self._opening < limit:
            return
        else:
            candidates = list(self._open.values())
            cap = f"the sandbox holds at most {limit} sessions (SANDBOX_MAX_SESSIONS)"
        idle = sorted(
            (session for session in candidates if not session.busy),
            key=lambda session: session.last_used,
        )
        if not idle:
            raise TooManySessions(
                f"{cap} and every one is in a call; end one of yours with reset_session, or "
                "try again"
            )
        victim = idle[0]
        self._end(
            victim,
            f"it was evicted to make room for a newer session ({cap}; the least recently used "
            "idle one goes first)",
        )
        whose = f"your session {victim.id}" if victim.owner == owner else "another caller's session"
        notes.append(
            f"{cap}: {whose}, the least recently used idle one, was ended to make room for this one"
        )

    def _find(self, owner: str, session_id: str) -> Session:
        session = self._open.get(session_id)
        if session is not None and session.owner == owner:
            return session
        ended = self._ended.get(session_id)
        if ended is not None and ended[0] == owner:
            raise self._ended_error(session_id, ended[1])
        # Another caller's session, alive or not, is answered as an unknown one.
        raise UnknownSession(
            "unknown session_id: no session of yours has this id. Pass "
            'session_id "new" to open one, or leave it out for a fresh sandbox'
        )

    @staticmethod
    def _ended_error(session_id: str, reason: str) -> SessionEnded:
        return SessionEnded(
            f"this session has ended: {reason}. Its variables and files are gone; "
            'pass session_id "new" to open another'
        )

    def _end(self, session: Session, reason: str) -> None:
        """End `session` now if it is idle, or as soon as its call is over."""
        if session.ended is not None:
            return
        session.ended = reason
        self._open.pop(session.id, None)
        self._ended[session.id] = (session.owner, reason)
        while len(self._ended) > _REMEMBERED:
            self._ended.popitem(last=False)
        logger.info("session %s %s ending: %s", session.label, session.language, reason)
        if session.busy:
            with contextlib.suppress(OSError):
                session.control.send(json.dumps({"op": "kill", "reason": "cancelled"}).encode())
        else:
            self._close(session)

    def _close(self, session: Session) -> None:
        """Let the supervisor go (it kills, removes the workdir, exits); then the uid."""
        self._closing[session.id] = session
        with contextlib.suppress(OSError):
            session.control.shutdown(socket.SHUT_WR)

        async def finish() -> None:
            try:
                await self._sandbox._finish(session.control, session.uid)
            finally:
                session.closed.set()
                self._closing.pop(session.id, None)

        task = asyncio.ensure_future(finish())
        self._sandbox._finishing.add(task)
        task.add_done_callback(self._sandbox._finishing.discard)

    async def _wait_closed(self, sessions: list[Session]) -> None:
        waits = [session.closed.wait() for session in sessions]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), _END_WAIT)

    async def _expire(self) -> None:
        idle = self.settings.session_idle_seconds
        while True:
            await asyncio.sleep(min(30.0, max(0.05, idle / 4)))
            now = time.monotonic()
            for session in list(self._open.values()):
                if not session.busy and now - session.last_used > idle:
                    self._end(session, f"it was unused for more than {idle:g} s")

    # --- one call ----------------------------------------------------------------------------

    async def _call(
        self,
        session: Session,
        prepared: Any,
        request: RunRequest,
        timeout: float,
        progress: RunProgress | None,
    ) -> RunResult:
        sandbox = self._sandbox
        language, main = prepared.language, prepared.main
        await self._catch_up(session)
        values = language.values(main, session.spec.workdir, self.settings.memory_mb)
        build, run = language.commands(main)
        run_argv = language.command(run, values)
        argv = [*run_argv, *request.args]
        build_argv = language.command(build, values) if build else None
        persistent = session_drivers.persistent(language.id)
        run_id = secrets.token_hex(6)
        message = {
            "op": "call",
            "run_id": run_id,
            "argv": argv,
            "args": list(request.args),
            "build_argv": build_argv,
            "main_file": main.name,
            "timeout": timeout,
            "language": language.id,
            "driver": run_argv if persistent else None,
        }
        encoded = json.dumps(message, ensure_ascii=False).encode()
        if len(encoded) > _MAX_CALL_MESSAGE:
            # One message on the session's socket, which has a size limit; nothing is sent.
            raise InvalidRequest(
                f"the call's arguments take {len(encoded)} bytes once encoded, more than a "
                f"session call carries ({_MAX_CALL_MESSAGE}); nothing ran and the session "
                "goes on: pass large data as stdin or a file"
            )
        spec = dataclasses.replace(
            session.spec,
            run_id=run_id,
            argv=argv,
            build_argv=build_argv,
            main_file=main.name,
            limits=dataclasses.replace(session.spec.limits, timeout_seconds=timeout),
        )

        progress = progress or RunProgress()
        need_mb = max(16, int(self.settings.memory_mb * language.expected_memory_share))
        async with sandbox._admission.slot(need_mb):
            progress.start(run_id, timeout)
            logger.info(
                "run %s %s start in session %s timeout=%gs",
                run_id,
                language.id,
                session.label,
                timeout,
            )
            pending = self._send_call(session, encoded, prepared.payload, prepared.stdin)
            try:
                outcome, stdout, stderr, listing = await sandbox._follow(
                    spec, pending, session.uid, progress, keep_control=True
                )
            except asyncio.CancelledError:
                session.unreported += 1
                raise
        if outcome.unwritable_path is not None:
            # Nothing ran: the caller can pass another path or remove what is in the way.
            raise InvalidPath(
                f"{outcome.error}. Nothing ran and the session goes on: send the file under "
                "another path (the main file: another `filename`), or remove what is there"
            )
        sandbox_failed = outcome.error in (
            runner_module.SUPERVISOR_GONE,
            runner_module.SUPERVISOR_SILENT,
        )
        if sandbox_failed:
            # Known shortcoming: a supervisor killed from outside leaves the workdir it would
            # have removed, until the next start clears the run root (README, "Sessions").
            self._end(session, "its sandbox failed")
        disk_full = outcome.limit == "disk"
        if disk_full:
            self._end(session, _disk_reason(session))
        result = sandbox._result(
            spec, prepared, outcome, stdout, stderr, timeout, listing, request.caller
        )
        lost = (
            disk_full
            or sandbox_failed
            or (
                persistent
                and (outcome.state_lost or session.lost_unreported or outcome.lost_between_calls)
            )
        )
        note = None
        if persistent and outcome.state_lost and not disk_full:
            note = (
                "the session's interpreter was stopped by this call's "
                f"{result.limit or 'end'}: its state (variables, functions, imports) is lost; "
                "the files in its working directory remain, and the next call starts a "
                "fresh interpreter there"
            )
        elif persistent and session.lost_unreported:
            note = (
                "an earlier call of this session was cancelled, which stopped its "
                "interpreter: this call ran in a fresh one, without the earlier state"
            )
        elif persistent and outcome.lost_between_calls:
            note = (
                "the session's interpreter ran between calls, when it must be stopped (a "
                "timer or signal of its own resumed it), so the sandbox killed it: this call "
                "ran in a fresh one, without the earlier state"
            )
        session.lost_unreported = False
        return dataclasses.replace(
            result,
            session_id=session.id,
            session_state_lost=lost,
            notes=(*result.notes, note) if note else result.notes,
        )

    def _send_call(
        self, session: Session, message: bytes, code: bytes, stdin: bytes
    ) -> runner_module._Pending:
        stdout_read, stdout_write = os.pipe2(os.O_CLOEXEC)
        stderr_read, stderr_write = os.pipe2(os.O_CLOEXEC)
        fds = [
            runner_module._sealed_memfd("stdin", stdin),
            stdout_write,
            stderr_write,
            runner_module._sealed_memfd("payload", code),
        ]
        try:
            session.control.sendmsg(
                [message],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))],
            )
        except OSError as exc:
            os.close(stdout_read)
            os.close(stderr_read)
            self._end(session, "its sandbox failed")
            raise LauncherError(f"could not hand the call to the session: {exc}") from exc
        finally:
            for fd in fds:
                os.close(fd)
        for fd in (stdout_read, stderr_read):
            os.set_blocking(fd, False)
        return runner_module._Pending(stdout_read, stderr_read, session.control)

    async def _catch_up(self, session: Session) -> None:
        """Read the outcomes of cancelled calls, so that the next one reads its own."""
        loop = asyncio.get_running_loop()
        while session.unreported:
            wait = self.settings.max_timeout + 15.0
            try:
                outcome, _listing = await asyncio.wait_for(
                    runner_module._await_outcome(loop, session.control), wait
                )
                session.lost_unreported |= outcome.state_lost
            except TimeoutError:
                self._end(session, "its sandbox failed")
                raise LauncherError("the session's sandbox did not answer") from None
            session.unreported -= 1


def _disk_reason(session: Session) -> str:
    return f"its files went past the disk limit of {session.spec.limits.max_disk_bytes} bytes"
