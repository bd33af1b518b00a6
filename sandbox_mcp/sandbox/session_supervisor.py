"""The supervisor of a session: one process for the session's whole life, forked by the launcher.

Like a run's supervisor (supervisor.py, whose steps it reuses) it takes the session's identity,
becomes a child subreaper and makes the workdir. Then, instead of running one program, it
serves the calls the server sends on the control socket, one at a time, until the socket
closes or the launcher stops it; then it kills every process of the session and removes the
workdir.

A call brings its run id, argv, build argv, main file and deadline, with four descriptors:
stdin, stdout, stderr and the code. It is answered with a `RunOutcome`, as a run is.
- A language without a driver (session_drivers.py) runs each call as a run runs: build, then
  program, in the session's workdir, under the same limits; nothing it started outlives it.
- Python and JavaScript calls go to the session's interpreter, started at the first call (and
  again after it was lost) with every limit a run's program gets. Its output arrives on pipes
  that this process copies to the call's own stdout and stderr. The deadline, the memory,
  disk and output limits and the server's kill requests apply to each call as to a run; the
  CPU limit applies to each call's CPU (the soft RLIMIT_CPU is moved forward before each
  call, and the watchdog measures the interpreter's CPU since the call began). Any of them
  kills the whole interpreter: the outcome says `state_lost`, the workdir stays, and the
  next call starts a new interpreter. A call that ends normally keeps the interpreter;
  processes it started are killed, and the interpreter is stopped (SIGSTOP) until the next
  call, so that nothing of the session runs between calls. A stopped process can still be
  resumed by a signal it arranged for itself (a POSIX timer that sends SIGCONT, say): this
  process hears every stop and continue of its child (SIGCHLD) and looks at the interpreter
  at least every `_IDLE_CHECK` s, and an interpreter found to have moved between calls is
  killed at once; the next call starts a new one and says the state was lost. It may have run
  for the moment that took (milliseconds), never beyond.
- Nothing this process writes to the interpreter can hold it past the call's deadline: the
  request goes down a non-blocking pipe, and one the driver does not take in time (the code
  of an earlier call holds it, say) ends the call as a timeout.
- Every call ends with a measure of the workdir: a call shorter than the disk sampling, or
  the input files it brought, can put it past the disk limit too; its limit is then `disk`,
  and the server ends the session.
- A call whose input files or main file cannot be written (something an earlier call left is
  in the way) fails alone, with `unwritable_path`: the interpreter is not touched.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import errno
import json
import math
import os
import resource
import select
import selectors
import signal
import socket
import stat
import sys
import time
from dataclasses import dataclass
from typing import Any

from sandbox_mcp.sandbox import _libc, files, processes, session_drivers, workspace
from sandbox_mcp.sandbox.spec import RunOutcome, RunSpec
from sandbox_mcp.sandbox.supervisor import (
    _MAX_ENTRIES,
    RunFds,
    _become,
    _build,
    _close_quietly,
    _disk_usage,
    _drain,
    _exit_of,
    _kill_everything,
    _limit_from_signal,
    _list_files,
    _make_workdir,
    _outcome,
    _over_limit,
    _own_peak_rss,
    _read_control,
    _remove_workdir,
    _report,
    _run_step,
    _sample_interval,
    _start,
    _Step,
    _stop,
    _Watch,
    _write_main,
)

_DISK_EVERY = 0.5
_CALL_FDS = 4
# Where the call's stdin waits for the driver, which opens it as descriptor 0 and removes it.
_STDIN_FILE = ".session-stdin"
_TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
_MAX_REPLY = 4096
# How long the output left in the interpreter's pipes is copied after it was killed.
_LAST_OUTPUT_WAIT = 2.0
# Between calls, how often the stopped interpreter is looked at besides each SIGCHLD.
_IDLE_CHECK = 1.0
# How long a stop the supervisor sent may take to reach the interpreter.
_STOP_WAIT = 2.0


@dataclass
class _Interpreter:
    """The session's long-lived interpreter and this process's ends of its pipes."""

    pid: int
    requests: int
    replies: int
    stdout: int
    stderr: int

    def close(self) -> None:
        _close_quietly(self.requests, self.replies, self.stdout, self.stderr)


def serve(spec: RunSpec, fds: RunFds, control: socket.socket) -> None:
    """Serve the session `spec` until the server closes `control`. Never raises."""
    _stop.listen()
    # Every stop and continue of the interpreter wakes the wait for the next call.
    signal.signal(signal.SIGCHLD, _note_child)
    interpreter: _Interpreter | None = None
    lost_between_calls = False
    # The launch's own descriptors carry nothing: each call brings its own.
    _close_quietly(fds.stdin, fds.stdout, fds.stderr, fds.payload)
    try:
        # 1. Become the session's identity and make its workdir, as a run does.
        _become(spec)
        _libc.prctl(_libc.PR_SET_CHILD_SUBREAPER, 1)
        _libc.prctl(_libc.PR_SET_DUMPABLE, 0)
        _make_workdir(spec)
        control.send(json.dumps({"event": "session ready"}).encode())

        # 2. Serve calls, one at a time, until the server lets the session go.
        while (received := _receive(control, interpreter)) is not None:
            message, call_fds = received
            if message["op"] == "moved":
                # The interpreter ran while it should have been stopped: it goes, now.
                assert interpreter is not None  # noqa: S101 - only with an interpreter
                interpreter.close()
                interpreter = None
                _kill_everything(_Watch(), spec.uid is not None)
                lost_between_calls = True
                continue
            if message["op"] == "read":
                _read_for_server(control, spec.workdir, message)
                continue
            listing = None
            try:
                outcome, interpreter, listing = _serve_call(
                    spec, message, call_fds, control, interpreter
                )
                if lost_between_calls and message.get("driver") is not None:
                    outcome = dataclasses.replace(outcome, lost_between_calls=True)
                    lost_between_calls = False
            except Exception as exc:  # reported to the server, never lost
                if interpreter is not None:
                    interpreter.close()
                    interpreter = None
                _kill_everything(_Watch(), spec.uid is not None)
                outcome = RunOutcome.failed(f"{type(exc).__name__}: {exc}", state_lost=True)
            finally:
                _close_quietly(*call_fds)
            _report(control, outcome, listing)
    except Exception as exc:
        print(f"session {spec.run_id}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    finally:
        # 3. Nothing of the session survives it.
        if interpreter is not None:
            interpreter.close()
        _kill_everything(_Watch(), spec.uid is not None)
        _remove_workdir(spec)


def _receive(
    control: socket.socket, interpreter: _Interpreter | None
) -> tuple[dict[str, Any], list[int]] | None:
    """The next call or file read, or `{"op": "moved"}` as soon as the stopped interpreter is
    seen to have moved; None when the session ends. Stale kills are ignored."""
    while True:
        readable, _, _ = select.select([control, _stop.wakeup], [], [], _IDLE_CHECK)
        if _stop.wakeup in readable:
            _drain(_stop.wakeup)
        if _stop.requested:
            return None
        if interpreter is not None and _moved_while_stopped(interpreter.pid):
            return {"op": "moved"}, []
        if control not in readable:
            continue
        fds = array.array("i")
        try:
            data, ancillary, _flags, _addr = control.recvmsg(
                1 << 20, socket.CMSG_SPACE(_CALL_FDS * fds.itemsize)
            )
        except OSError:
            return None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if not data:
            return None
        message = json.loads(data)
        if message.get("op") == "call" and len(fds) == _CALL_FDS:
            return message, list(fds)
        if message.get("op") == "read" and not fds:
            return message, []
        _close_quietly(*fds)  # a kill for a call already over, or something malformed


def _serve_call(
    spec: RunSpec,
    message: dict[str, Any],
    fds: list[int],
    control: socket.socket,
    interpreter: _Interpreter | None,
) -> tuple[RunOutcome, _Interpreter | None]:
    """Run one call; returns its outcome, the interpreter as it stands after it, and the
    listing of the files the call created or changed (a memory file, or None)."""
    stdin, stdout, stderr, payload = fds
    call = dataclasses.replace(
        spec,
        run_id=str(message["run_id"]),
        argv=[str(arg) for arg in message["argv"]],
        build_argv=message.get("build_argv"),
        main_file=str(message["main_file"]),
        limits=dataclasses.replace(spec.limits, timeout_seconds=float(message["timeout"])),
    )
    try:
        _write_main(call, payload, replace=True)
    except workspace.NotWritable as exc:
        # Something an earlier call left is in the way: the caller's to clear, and nothing
        # of the session (its interpreter included) is touched.
        failed = dataclasses.replace(RunOutcome.failed(str(exc)), unwritable_path=exc.path)
        return failed, interpreter, None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    watch = _Watch()
    # Files from earlier calls are not this call's: only what changes from here is listed.
    watch.before = workspace.snapshot(call.workdir)
    # ru_maxrss of the children covers the session's whole life: only a new peak counts.
    watch.fork_rss = max(before.ru_maxrss * 1024, _own_peak_rss())
    watch.deadline = time.monotonic() + call.limits.timeout_seconds

    driver = message.get("driver")
    if driver is None:
        if call.build_argv:
            watch.build = _build(call, control, watch)
        if watch.limit is None and (watch.build is None or watch.build.succeeded):
            watch.program = _Step()
            _run_step(call, call.argv, (stdin, stdout, stderr), control, watch, watch.program)
        _kill_everything(watch, spec.uid is not None)
        _measure_disk(call, watch)
        outcome = _outcome(call, watch)
        spent = _children_cpu_ms() - _cpu_ms(before)
        outcome = dataclasses.replace(outcome, cpu_ms=round(max(spent, 0.0), 3))
        return outcome, None, _list_files(call, watch)

    outcome, interpreter = _call_interpreter(
        call, message, (stdin, stdout, stderr), control, watch, interpreter
    )
    # The interpreter is stopped or dead now: nothing of the session changes the workdir.
    return outcome, interpreter, _list_files(call, watch)


def _call_interpreter(
    call: RunSpec,
    message: dict[str, Any],
    stdio: tuple[int, int, int],
    control: socket.socket,
    watch: _Watch,
    interpreter: _Interpreter | None,
) -> tuple[RunOutcome, _Interpreter | None]:
    """Hand the call to the session's interpreter, relay its output and watch it."""
    stdin, stdout, stderr = stdio
    children_before = _children_cpu_ms()
    if interpreter is None:
        interpreter = _start_interpreter(call, str(message["language"]), list(message["driver"]))
    else:
        os.kill(interpreter.pid, signal.SIGCONT)
        # Our own continue: taken here, so that only one the interpreter made counts later.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, interpreter.pid, os.WCONTINUED | os.WNOHANG)

    # 1. The call's stdin as a file, its CPU budget from now, then the request.
    _write_stdin(call.workdir, stdin)
    cpu_before = _process_cpu_ms(interpreter.pid)
    budget = math.ceil(cpu_before / 1000) + call.limits.cpu_seconds
    resource.prlimit(interpreter.pid, resource.RLIMIT_CPU, (budget, resource.RLIM_INFINITY))
    step = watch.program = _Step(pid=interpreter.pid, started=time.monotonic())
    watch.steps.append(step)
    request = {
        "file": os.path.join(call.workdir, call.main_file),
        "name": call.main_file,
        "stdin": os.path.join(call.workdir, _STDIN_FILE),
        "argv": [str(arg) for arg in message.get("args", [])],
    }
    handed = _hand_over(interpreter.requests, (json.dumps(request) + "\n").encode(), watch)
    control.send(json.dumps({"event": "started", "pid": interpreter.pid}).encode())

    # 2. Watch the call until the driver replies, the interpreter dies or a limit is hit.
    status = None
    if handed:
        status = _watch_call(call, interpreter, (stdout, stderr), control, watch, cpu_before)

    # 3. A call that ended normally keeps its interpreter, stopped until the next call;
    #    otherwise the interpreter and everything else of the session are killed.
    cpu_ms = 0.0
    exit_code = signal_name = None
    lost = status is None
    if not lost:
        cpu_ms = _process_cpu_ms(interpreter.pid) - cpu_before
        # Stopped first, so that none of its threads forks while the others are killed.
        if not _stopped(interpreter.pid):
            # Not stopped in time: it cannot be left to run, so it goes like a lost one.
            watch.errors.append("the session's interpreter did not stop after the call")
            lost = True
        elif not _end_strays(interpreter.pid):
            watch.errors.append("the processes the call started would not end")
            lost = True
        else:
            exit_code = status
    if lost:
        _kill_everything(watch, call.uid is not None)
        _relay(interpreter.stdout, stdout, until_eof=True)
        _relay(interpreter.stderr, stderr, until_eof=True)
        interpreter.close()
        interpreter = None
        cpu_ms = -cpu_before
        exit_code, signal_name = _exit_of(step.status)
        if step.status is None:
            signal_name = "SIGKILL"
        elif os.WIFSIGNALED(step.status) and watch.limit is None:
            watch.limit = _limit_from_signal(call, os.WTERMSIG(step.status), step.usage)
    _measure_disk(call, watch)
    cpu_ms += _children_cpu_ms() - children_before
    if step.ended is None:
        step.ended = time.monotonic()
    return (
        RunOutcome(
            exit_code=exit_code,
            signal=signal_name,
            limit=watch.limit,
            duration_ms=round(step.duration_ms, 3),
            cpu_ms=round(max(cpu_ms, 0.0), 3),
            peak_memory_bytes=watch.peak_rss,
            peak_processes=watch.peak_processes,
            error="; ".join(watch.errors) or None,
            state_lost=lost,
        ),
        interpreter,
    )


def _start_interpreter(spec: RunSpec, language: str, run: list[str]) -> _Interpreter:
    """Start the session's interpreter, confined as a run's program is, waiting for calls."""
    requests_read, requests_write = os.pipe2(os.O_CLOEXEC)
    replies_read, replies_write = os.pipe2(os.O_CLOEXEC)
    stdout_read, stdout_write = os.pipe2(os.O_CLOEXEC)
    stderr_read, stderr_write = os.pipe2(os.O_CLOEXEC)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    kept = (requests_read, replies_write)
    for fd in kept:
        os.set_inheritable(fd, True)
    argv = session_drivers.command(language, run, requests_read, replies_write)
    if argv is None:
        raise ValueError(f"{language} keeps no interpreter in a session")
    try:
        interpreter_spec = dataclasses.replace(spec, session_interpreter=True)
        pid = _start(interpreter_spec, argv, (null, stdout_write, stderr_write), keep=kept)
    except BaseException:
        _close_quietly(requests_write, replies_read, stdout_read, stderr_read)
        raise
    finally:
        _close_quietly(requests_read, replies_write, stdout_write, stderr_write, null)
    for fd in (requests_write, replies_read, stdout_read, stderr_read):
        os.set_blocking(fd, False)
    return _Interpreter(pid, requests_write, replies_read, stdout_read, stderr_read)


def _watch_call(
    call: RunSpec,
    interpreter: _Interpreter,
    outputs: tuple[int, int],
    control: socket.socket,
    watch: _Watch,
    cpu_before: float,
) -> int | None:
    """The call's exit status from the driver; None when the interpreter is lost."""
    step = watch.program
    assert step is not None  # noqa: S101 - the caller set it
    pidfd = os.pidfd_open(interpreter.pid)
    reply = b""
    next_disk = step.started + _DISK_EVERY
    cpu_allowed = call.limits.cpu_seconds * 1000
    with selectors.DefaultSelector() as selector:
        selector.register(pidfd, selectors.EVENT_READ, "exit")
        selector.register(interpreter.replies, selectors.EVENT_READ, "reply")
        selector.register(interpreter.stdout, selectors.EVENT_READ, outputs[0])
        selector.register(interpreter.stderr, selectors.EVENT_READ, outputs[1])
        selector.register(control, selectors.EVENT_READ, "control")
        selector.register(_stop.wakeup, selectors.EVENT_READ, "stop")
        try:
            while True:
                now = time.monotonic()
                if now >= watch.deadline:
                    watch.limit = "timeout"
                    return None
                timeout = min(watch.deadline - now, _sample_interval(step, now))
                # The reply before the exit: a driver that replied and then died ended its
                # call first.
                events = sorted(
                    selector.select(timeout), key=lambda event: event[0].data != "reply"
                )
                for key, _ in events:
                    if isinstance(key.data, int):
                        _relay(key.fd, key.data)
                    elif key.data == "reply":
                        reply += _read_available(interpreter.replies)
                        if b"\n" not in reply and len(reply) > _MAX_REPLY:
                            # Not the driver's words: the call's code wrote there.
                            raise ValueError("the session's interpreter sent a malformed reply")
                        if b"\n" in reply:
                            # What the call printed is in the pipes by now: pass it all on.
                            _relay(interpreter.stdout, outputs[0])
                            _relay(interpreter.stderr, outputs[1])
                            step.ended = time.monotonic()
                            return int(json.loads(reply.split(b"\n", 1)[0])["exit"]) & 0xFF
                    elif key.data == "exit":
                        for pid, status, usage in processes.reap():
                            if pid == interpreter.pid:
                                step.status, step.usage, step.ended = status, usage, now
                        if step.status is not None:
                            return None
                    elif key.data == "stop":
                        _drain(_stop.wakeup)
                        if _stop.requested:
                            watch.limit = "cancelled"
                            return None
                    elif key.data == "control":
                        reason = _read_control(control)
                        if reason:
                            watch.limit = reason
                            return None
                if _over_limit(call, watch, now, next_disk):
                    return None
                if now >= next_disk:
                    next_disk = now + _DISK_EVERY
                if _process_cpu_ms(interpreter.pid) - cpu_before > cpu_allowed:
                    watch.limit = "cpu"
                    return None
        finally:
            os.close(pidfd)


def _measure_disk(call: RunSpec, watch: _Watch) -> None:
    """Measure the workdir once nothing of the session runs: the watchdog samples it only
    every `_DISK_EVERY` during a call, and the input files written before it never. A
    workdir past the limit makes it the call's limit (the server then ends the session)."""
    used, entries = _disk_usage(call.workdir)
    if used > call.limits.max_disk_bytes or entries > _MAX_ENTRIES:
        watch.limit = "disk"


def _relay(source: int, target: int, until_eof: bool = False) -> None:
    """Copy what is waiting in `source` to `target` (a call's output pipe); `until_eof`,
    once every writer is dead, to the end (for at most `_LAST_OUTPUT_WAIT`)."""
    give_up = time.monotonic() + _LAST_OUTPUT_WAIT
    while True:
        try:
            data = os.read(source, 1 << 16)
        except BlockingIOError:
            left = give_up - time.monotonic()
            if until_eof and left > 0:
                select.select([source], [], [], left)
                continue
            return
        except OSError:
            return
        if not data:
            return
        with contextlib.suppress(OSError):  # the server gave up on the call: drop it
            _write_all(target, data)


def _read_available(fd: int) -> bytes:
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    return b"".join(chunks)


def _hand_over(fd: int, data: bytes, watch: _Watch) -> bool:
    """Write the call's request to the driver's non-blocking pipe by the call's deadline;
    False, with the limit that stopped it, when the driver did not take it in time."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
            continue
        except BlockingIOError:
            pass
        left = watch.deadline - time.monotonic()
        if left <= 0:
            watch.limit = "timeout"
            return False
        readable, _, _ = select.select([_stop.wakeup], [fd], [], left)
        if readable:
            _drain(_stop.wakeup)
            if _stop.requested:
                watch.limit = "cancelled"
                return False
    return True


def _note_child(signum: int, frame: object) -> None:
    """SIGCHLD: only its byte on the wakeup pipe matters (see `_receive`)."""


def _stopped(pid: int) -> bool:
    """Stop the interpreter and wait until it is: True once the kernel reports the stop."""
    os.kill(pid, signal.SIGSTOP)
    give_up = time.monotonic() + _STOP_WAIT
    while time.monotonic() < give_up:
        try:
            info = os.waitid(os.P_PID, pid, os.WSTOPPED | os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        if info is not None and info.si_code == os.CLD_STOPPED:
            # Taken, so that a later stop or continue is news (`_moved_while_stopped`).
            os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG)
            return True
        if info is not None:  # it ended instead
            return False
        time.sleep(0.0005)
    return False


def _moved_while_stopped(pid: int) -> bool:
    """Whether the interpreter, stopped after its last call, has run since: the kernel has a
    continue or a stop to tell of, it is not stopped now, or some other process of the
    session lives (none may, between calls)."""
    try:
        if os.waitid(os.P_PID, pid, os.WCONTINUED | os.WSTOPPED | os.WNOHANG) is not None:
            return True
    except ChildProcessError:
        return False  # gone: the next call finds it dead
    # Dead (Z, X) is for the next call to find; anything but stopped (T) has moved.
    return bool(_strays(pid)) or processes.state(f"/proc/{pid}") not in (b"T", b"Z", b"X")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_stdin(workdir: str, stdin: int) -> None:
    """Write the call's stdin where the driver expects it, never through a link."""
    directory = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            os.unlink(_STDIN_FILE, dir_fd=directory)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            # An earlier call made a directory of the name: no call could run to remove it.
            files.remove_tree(os.path.join(workdir, _STDIN_FILE))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(_STDIN_FILE, flags, 0o600, dir_fd=directory)
    finally:
        os.close(directory)
    try:
        files.copy_range(out, stdin, 0, os.fstat(stdin).st_size)
    finally:
        os.close(out)


def _read_for_server(control: socket.socket, workdir: str, message: dict[str, Any]) -> None:
    try:
        _send_file(control, workdir, str(message["path"]), int(message["max_bytes"]))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):
            control.send(json.dumps({"event": "file", "error": error}).encode())


def _send_file(control: socket.socket, workdir: str, path: str, max_bytes: int) -> None:
    """Send the regular file `path` of the workdir as a memory file, or say why not.

    Every component is opened relative to the one before with O_NOFOLLOW: no link, no `..`,
    nothing outside the workdir. Only between calls, when nothing of the session runs.
    """
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\0" in path:
        control.send(json.dumps({"event": "file", "error": "not a relative path"}).encode())
        return
    directory_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    current = os.open(workdir, directory_flags)
    try:
        for part in parts[:-1]:
            below = os.open(part, directory_flags, dir_fd=current)
            os.close(current)
            current = below
        fd = os.open(
            parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=current
        )
    except OSError as exc:
        error = "a symbolic link, not followed" if exc.errno == errno.ELOOP else exc.strerror
        control.send(json.dumps({"event": "file", "error": error or str(exc)}).encode())
        return
    finally:
        os.close(current)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            error = "not a regular file"
        elif info.st_size > max_bytes:
            error = f"the file is {info.st_size} bytes; at most {max_bytes} can be read"
        else:
            error = None
        if error is not None:
            control.send(json.dumps({"event": "file", "error": error}).encode())
            return
        copy = os.memfd_create("file", os.MFD_CLOEXEC)
        try:
            offset = 0
            while offset < info.st_size and (sent := os.sendfile(copy, fd, None, 1 << 20)):
                offset += sent
            control.sendmsg(
                [json.dumps({"event": "file", "size": offset}).encode()],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [copy]))],
            )
        finally:
            os.close(copy)
    finally:
        os.close(fd)


def _end_strays(keep: int) -> bool:
    """Kill every process of the session but its (stopped) interpreter: a call's processes
    end with it. False if some were still alive after 5 s."""
    give_up = time.monotonic() + 5.0
    while time.monotonic() < give_up:
        strays = _strays(keep)
        if not strays:
            _reap_others(keep)
            return True
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)
        _reap_others(keep)
    return not _strays(keep)


def _strays(keep: int) -> list[int]:
    """The live processes below this one but `keep` (and `keep`'s threads)."""
    below = processes.descendants(os.getpid())
    # A process whose main thread exited reads as a zombie while its other threads run on:
    # only one with no thread left is dead.
    return [pid for pid in below if pid != keep and processes.live_task(pid) is not None]


def _reap_others(keep: int) -> None:
    # Children of this process but the interpreter: those re-parented here when their parent
    # died. waitid on each alone, so that the interpreter's exit is never taken here.
    for pid in processes.children(os.getpid()):
        if pid != keep:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _process_cpu_ms(pid: int) -> float:
    """CPU time of `pid` (all its threads) and of the children it has waited for."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # utime, stime, cutime, cstime: fields 14 to 17 of proc(5), [11:15] here.
    return sum(int(value) for value in fields[11:15]) * _TICK_MS


def _children_cpu_ms() -> float:
    return _cpu_ms(resource.getrusage(resource.RUSAGE_CHILDREN))


def _cpu_ms(usage: resource.struct_rusage) -> float:
    return (usage.ru_utime + usage.ru_stime) * 1000
