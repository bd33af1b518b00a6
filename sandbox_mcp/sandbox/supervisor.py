"""The supervisor: one short-lived process per run, forked by the launcher.

It takes the run's identity, makes the workdir, starts the snippet with every limit applied,
watches it (deadline, resident memory, disk, the server's kill requests), kills whatever is
left when the main process ends, removes the workdir and reports the outcome. It is a child
subreaper, so nothing the snippet starts can leave its tree.

It runs single-threaded, which is what makes the plain `fork` and the Python code between
fork and exec in `_start_snippet` safe.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import errno
import json
import os
import resource
import select
import selectors
import signal
import socket
import stat
import sys
import time
from dataclasses import dataclass, field

from sandbox_mcp.sandbox import (
    _libc,
    files,
    landlock,
    processes,
    seccomp,
    warm,
    warm_java,
    warm_node,
    workspace,
)
from sandbox_mcp.sandbox.output import CapturedText, StreamCapture
from sandbox_mcp.sandbox.spec import BuildOutcome, RunOutcome, RunSpec

# Where a run may write besides its workdir: device files such as /dev/null and /dev/tty,
# which may be opened for writing but not created or removed.
DEVICE_DIRS = ("/dev",)

# How often the watchdog looks at the run: often at first, when most runs end, then less.
_SAMPLE_STEPS = ((0.05, 0.005), (1.0, 0.02), (float("inf"), 0.1))
_DISK_EVERY = 0.5
# Files and directories a workdir may hold: past this the disk watch stops counting, and the
# run is stopped as if its disk were full (README, "What every run gets").
_MAX_ENTRIES = 20_000


@dataclass
class RunFds:
    """The descriptors the server passed for one run."""

    stdin: int
    stdout: int
    stderr: int
    payload: int


@dataclass
class _Step:
    """One process the supervisor starts: the build, then the program."""

    pid: int | None = None
    started: float = 0.0
    ended: float | None = None
    status: int | None = None
    usage: object | None = None

    @property
    def duration_ms(self) -> float:
        if not self.started:
            return 0.0
        return ((self.ended or time.monotonic()) - self.started) * 1000


@dataclass
class _Watch:
    """What the supervisor learns while the run goes on, over all its steps."""

    deadline: float = float("inf")
    limit: str | None = None
    peak_rss: int = 0
    peak_processes: int = 0
    fork_rss: int = 0
    build: BuildOutcome | None = None
    program: _Step | None = None
    # The build's output files while it runs: the output limit applies to them too.
    build_outputs: tuple[int, ...] = ()
    errors: list[str] = field(default_factory=list)
    steps: list[_Step] = field(default_factory=list)
    # The workdir's files once the caller's were written: what the run changes is listed.
    before: workspace.Snapshot | None = None
    # CPU time the program used on standby before its go (a warm JVM's warming): not the run's.
    standby_cpu_ms: float = 0.0

    @property
    def current(self) -> _Step | None:
        return self.steps[-1] if self.steps else None


@dataclass
class _StopRequest:
    """SIGTERM, from the launcher stopping or as the parent-death signal: noted, never raised.

    An exception raised from a signal handler can land anywhere, the clean-up included, and a
    supervisor that skipped its clean-up would leave the run's processes and workdir behind.
    So the handler only takes note, and the signal wakes the waits through a pipe
    (`signal.set_wakeup_fd`) that they watch beside their own descriptors.
    """

    requested: bool = False
    wakeup: int = -1

    def listen(self) -> None:
        self.wakeup, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Full is fine: one byte waiting wakes the wait as well as many (sessions hear SIGCHLD).
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.requested = True


_stop = _StopRequest()


def supervise(spec: RunSpec, fds: RunFds, control: socket.socket) -> None:
    """Run `spec` to its end and report a `RunOutcome` on `control`. Never raises."""
    if spec.session:
        from sandbox_mcp.sandbox import session_supervisor

        session_supervisor.serve(spec, fds, control)
        return
    _stop.listen()
    watch = _Watch()
    pool_mode = spec.uid is not None

    try:
        # 1. Become the run's identity; from here on nothing is done with more rights.
        _become(spec)
        _libc.prctl(_libc.PR_SET_CHILD_SUBREAPER, 1)
        _libc.prctl(_libc.PR_SET_DUMPABLE, 0)

        # 2. Make the workdir.
        _make_workdir(spec)
        watch.fork_rss = _own_peak_rss()

        if spec.standby:
            # 3. A warm run on standby: the program starts now, confined, and waits for the
            # server's go, which brings the code, arguments, stdin and deadline.
            spec = _stand_by_then_run(spec, fds, control, watch)
        else:
            # 3. Write the snippet, then build when the language compiles; the program runs
            # only if that succeeded.
            _write_main(spec, fds.payload)
            watch.before = workspace.snapshot(spec.workdir)
            watch.deadline = time.monotonic() + spec.limits.timeout_seconds
            if spec.build_argv:
                watch.build = _build(spec, control, watch)
            if watch.limit is None and (watch.build is None or watch.build.succeeded):
                # 4. Start the program and watch it until it ends or a limit is hit.
                watch.program = _Step()
                _run_step(
                    spec,
                    spec.argv,
                    (fds.stdin, fds.stdout, fds.stderr),
                    control,
                    watch,
                    watch.program,
                )
    except Exception as exc:  # reported to the server, never lost
        watch.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        # 5. Nothing of the run survives it: kill the whole tree, and report. Removing the
        # workdir follows the answer; the server counts the uid free only once this process
        # has exited.
        if _stop.requested:
            watch.limit = watch.limit or "cancelled"
        _close_quietly(fds.stdin, fds.stdout, fds.stderr, fds.payload)
        _kill_everything(watch, pool_mode)
        listing = _list_files(spec, watch)
        _report(control, _outcome(spec, watch), listing)
        _remove_workdir(spec)


def _stand_by_then_run(
    spec: RunSpec, fds: RunFds, control: socket.socket, watch: _Watch
) -> RunSpec:
    """Start the program confined and waiting; on the server's go, let it run and watch it.

    A warm Python run waits in the forked interpreter (warm.py); a JavaScript one is node
    itself, exec'd and waiting in its preload (warm_node.py); a Java one is a JVM with its
    compiler warm (warm_java.py). Returns the spec as the go completed it (argv, main file,
    deadline).
    """
    if warm_java.is_standby(spec):  # a JVM, which takes its go on pipes (warm_java.py)
        return warm_java.stand_by_then_run(spec, fds, control, watch)
    node = not spec.warm
    waiting, handle = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # Node's stdin is filled at the go; Python's arrives with it.
    stdin = files.memory_stdin() if node else fds.stdin
    step = watch.program = _Step()
    watch.steps.append(step)
    try:
        try:
            step.pid = _start(spec, spec.argv, (stdin, fds.stdout, fds.stderr), waiting.fileno())
        finally:
            waiting.close()
        if node and not _node_ready(handle):
            raise OSError("node on standby did not get ready")
        control.send(json.dumps({"event": "standing by"}).encode())

        received = _receive_go(control)
        if received is None:
            watch.limit = "cancelled"
            return spec
        go, call_stdin, payload = received
        standby_argv = spec.argv
        spec = dataclasses.replace(
            spec,
            argv=[str(arg) for arg in go["argv"]],
            main_file=str(go["main_file"]),
            limits=dataclasses.replace(spec.limits, timeout_seconds=float(go["timeout"])),
        )
        try:
            _write_main(spec, payload)
            watch.before = workspace.snapshot(spec.workdir)
            if node:
                files.fill_stdin(stdin, call_stdin)
                program = warm_node.program_argv(standby_argv, spec.argv)
            # The program starts as the go leaves: a busy machine may run it to its end before
            # this process looks at the clock again.
            step.started = time.monotonic()
            if node:
                handle.send(warm_node.go_message(program))
            else:
                handle.sendmsg(
                    [json.dumps(spec.argv).encode()],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [call_stdin]))],
                )
        finally:
            _close_quietly(call_stdin, payload)
    finally:
        if node:
            _close_quietly(stdin)
        handle.close()

    watch.deadline = step.started + spec.limits.timeout_seconds
    control.send(json.dumps({"event": "started", "pid": step.pid}).encode())
    _over_limit(spec, watch, step.started, float("inf"))
    _watch(spec, step, control, watch)
    return spec


def _node_ready(handle: socket.socket) -> bool:
    """Wait until node on standby says it is ready; False if it died first or we must stop."""
    if not _readable_unless_stopped(handle):
        return False
    return warm_node.is_ready(handle.recv(64))


def _readable_unless_stopped(sock: socket.socket) -> bool:
    """Wait until `sock` can be read; False when the supervisor was told to stop first."""
    while not _stop.requested:
        readable, _, _ = select.select([sock, _stop.wakeup], [], [])
        if sock in readable:
            return True
        _drain(_stop.wakeup)
    return False


def _receive_go(control: socket.socket) -> tuple[dict, int, int] | None:
    """The go: its message and two descriptors (stdin, the code). None when the server let
    the run on standby go unused (EOF) or the supervisor was told to stop."""
    if not _readable_unless_stopped(control):
        return None
    fds = array.array("i")
    data, ancillary, _flags, _addr = control.recvmsg(1 << 20, socket.CMSG_SPACE(2 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    message = json.loads(data) if data else {}
    if message.get("op") != "go" or len(fds) != 2:
        _close_quietly(*fds)
        return None
    return message, fds[0], fds[1]


def _build(spec: RunSpec, control: socket.socket, watch: _Watch) -> BuildOutcome:
    """Run the build step with its output in memory files, and kill what it left behind."""
    assert spec.build_argv is not None  # noqa: S101 - the caller checked
    stdout = os.memfd_create("build-stdout", os.MFD_CLOEXEC)
    stderr = os.memfd_create("build-stderr", os.MFD_CLOEXEC)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        watch.build_outputs = (stdout, stderr)
        step = _run_step(spec, spec.build_argv, (null, stdout, stderr), control, watch)
        watch.build_outputs = ()
        _kill_everything(watch, spec.uid is not None)
        out = _captured(stdout, spec.output_bytes)
        err = _captured(stderr, spec.output_bytes)
    finally:
        _close_quietly(stdout, stderr, null)

    exit_code, signal_name = _exit_of(step.status)
    if step.status is None and step.started:
        signal_name = "SIGKILL"
    return BuildOutcome(
        exit_code=exit_code,
        signal=signal_name,
        stdout=out.text,
        stderr=err.text,
        stdout_bytes=out.total_bytes,
        stderr_bytes=err.total_bytes,
        duration_ms=round(step.duration_ms, 3),
    )


def _run_step(
    spec: RunSpec,
    argv: list[str],
    stdio: tuple[int, int, int],
    control: socket.socket,
    watch: _Watch,
    step: _Step | None = None,
) -> _Step:
    step = step or _Step()
    watch.steps.append(step)
    step.started = time.monotonic()
    step.pid = _start(spec, argv, stdio)
    control.send(json.dumps({"event": "started", "pid": step.pid}).encode())
    # A first look right after exec: a run shorter than the first sampling interval still
    # gets a measured (if early) footprint.
    _over_limit(spec, watch, step.started, float("inf"))
    _watch(spec, step, control, watch)
    return step


def _kill_everything(watch: _Watch, pool_mode: bool) -> None:
    processes.kill_tree(
        os.getpid(),
        sweep_uid=pool_mode,
        on_reap=lambda pid, status, usage: _record_exit(watch, pid, status, usage),
    )


def _captured(fd: int, keep: int) -> CapturedText:
    capture = StreamCapture(keep)
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        capture.feed(chunk)
    return capture.result()


def _become(spec: RunSpec) -> None:
    if spec.uid is None or spec.gid is None:
        return
    os.setgroups([])
    os.setresgid(spec.gid, spec.gid, spec.gid)
    os.setresuid(spec.uid, spec.uid, spec.uid)
    # A change of credentials clears the parent-death signal; set it again afterwards.
    _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGTERM)


def _make_workdir(spec: RunSpec) -> None:
    os.mkdir(spec.workdir, 0o700)
    os.mkdir(os.path.join(spec.workdir, ".tmp"), 0o700)
    os.mkdir(os.path.join(spec.workdir, ".build"), 0o700)
    workspace.make_links(spec.workdir, spec.links)


def _write_main(spec: RunSpec, payload: int, replace: bool = False) -> None:
    # The caller's files, then the main file (workspace.py has the payload's format). A
    # session's call writes over the main file an earlier call left; never through a link.
    workspace.write_payload(spec.workdir, spec.main_file, payload, replace_main=replace)


def _list_files(spec: RunSpec, watch: _Watch) -> int | None:
    """The files the run created or changed, as a memory file for the report; None when the
    run never got as far as its snapshot or the listing failed (the error is reported)."""
    if watch.before is None:
        return None
    try:
        return workspace.collect(spec.workdir, watch.before)
    except Exception as exc:  # the report must go out whatever the workdir holds
        watch.errors.append(f"the workdir's files could not be listed: {exc}")
        return None


def _start(
    spec: RunSpec,
    argv: list[str],
    stdio: tuple[int, int, int],
    waiting: int | None = None,
    keep: tuple[int, ...] = (),
) -> int:
    """Fork and exec `argv`. Returns its pid once exec has succeeded, or raises.

    A warm run runs `argv` in the forked interpreter instead; one on standby (`waiting`, its
    end of a socket to this supervisor) first waits, confined, for its go: in the forked
    interpreter, or in node exec'd with a preload when the spec is not `warm`
    (warm_node.py). `keep` are inheritable descriptors the program keeps under their numbers
    (a session's driver).
    """
    error_read, error_write = os.pipe2(os.O_CLOEXEC)
    supervisor = os.getpid()
    in_process = spec.warm and argv == spec.argv

    pid = os.fork()
    if pid == 0:  # the snippet-to-be: set everything up, then exec
        try:
            kept = (error_write, *keep) if waiting is None else (error_write, waiting)
            _prepare_child(spec, stdio, supervisor, kept)
            if waiting is not None and not spec.warm:
                warm_node.exec_when_told(argv, spec.env, waiting, spec.limits.max_open_files)
            if waiting is not None:
                warm.run_when_told(waiting, spec.env, error_write)
            if in_process:
                warm.run_program(argv, spec.env, error_write)
            # The language's own command; the snippet is a file in the workdir and its
            # arguments are plain argv entries: no shell ever reads them.
            os.execve(argv[0], argv, spec.env)  # nosec B606
        except BaseException as exc:
            try:
                os.write(error_write, f"{type(exc).__name__}: {exc}".encode()[:4000])
            finally:
                os._exit(127)

    # Exec closes the error pipe (close-on-exec), as does a warm start once it is ready: EOF
    # with no message means it succeeded.
    os.close(error_write)
    try:
        message = os.read(error_read, 4096)
    finally:
        os.close(error_read)
    if message:
        os.waitpid(pid, 0)
        raise OSError(f"could not start {argv[0]}: {message.decode(errors='replace')}")
    return pid


def _prepare_child(
    spec: RunSpec, stdio: tuple[int, int, int], supervisor: int, kept: tuple[int, ...]
) -> None:
    # Every signal back to its default and none blocked: Python ignores SIGPIPE and SIGXFSZ
    # and the launcher SIGINT, and exec would hand those on (a pipeline would not end on
    # SIGPIPE, the file size limit would not kill). No wakeup pipe: it is the supervisor's.
    signal.set_wakeup_fd(-1)
    for number in range(1, signal.NSIG):
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])

    # Its own session and process group, stdio from the server's pipes, nothing else open.
    os.setsid()
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    low = 3
    for fd in sorted(kept):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
    os.chdir(spec.workdir)

    # Under memory pressure the kernel should pick a snippet, never the server. /proc/self
    # belongs to root while the process is non-dumpable (inherited from the supervisor);
    # exec would make it dumpable anyway.
    _libc.prctl(_libc.PR_SET_DUMPABLE, 1)
    with open("/proc/self/oom_score_adj", "w") as handle:
        handle.write("1000")

    limits = spec.limits
    # A session's interpreter lives through many calls and CPU time adds up over a process's
    # life: its supervisor sets the soft limit before each call and watches each call's CPU
    # (session_supervisor.py), so the hard limit cannot be the per-run one.
    cpu_hard = resource.RLIM_INFINITY if spec.session_interpreter else limits.cpu_seconds + 1
    _setrlimit(resource.RLIMIT_CPU, limits.cpu_seconds, cpu_hard)
    # A data limit, not an address-space one: V8, the JVM and Go reserve far more address
    # space than they use, and RLIMIT_AS would stop them at startup. Twice the memory limit,
    # because every thread's stack counts at its full reserved size (8 MB by default): the
    # run's real memory is held to the limit by the watchdog's PSS samples.
    _setrlimit(resource.RLIMIT_DATA, 2 * limits.memory_bytes)
    _setrlimit(resource.RLIMIT_NPROC, _process_limit(spec))
    _setrlimit(resource.RLIMIT_NOFILE, limits.max_open_files)
    _setrlimit(resource.RLIMIT_FSIZE, limits.max_file_bytes)
    _setrlimit(resource.RLIMIT_CORE, 0)

    _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor:
        os._exit(126)
    _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
    landlock.restrict(
        spec.landlock_abi,
        spec.workdir,
        [os.path.dirname(spec.workdir), *spec.hidden_paths],
        DEVICE_DIRS,
        spec.network,
    )
    if not spec.seccomp:
        return
    seccomp.install(
        seccomp.FilterPolicy(
            protected_pids=(*spec.protected_pids, supervisor), network=spec.network
        )
    )


def _process_limit(spec: RunSpec) -> int:
    # RLIMIT_NPROC counts every process and thread of the uid. In pool mode the uid is the
    # run's own; in shared mode it is the server's, so the server's own tasks and those of
    # concurrent runs count too: add what exists now, which is the best a per-uid limit
    # can do there.
    if spec.uid is not None:
        return spec.limits.max_processes
    return spec.limits.max_processes + _tasks_of_uid(os.getuid())


def _tasks_of_uid(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                count += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:
            continue
    return count


def _setrlimit(which: int, soft: int, hard: int | None = None) -> None:
    resource.setrlimit(which, (soft, soft if hard is None else hard))


def _watch(spec: RunSpec, step: _Step, control: socket.socket, watch: _Watch) -> None:
    assert step.pid is not None  # noqa: S101 - a step is watched once started
    pidfd = os.pidfd_open(step.pid)
    deadline = watch.deadline
    next_disk = step.started + _DISK_EVERY

    with selectors.DefaultSelector() as selector:
        selector.register(pidfd, selectors.EVENT_READ, "exit")
        selector.register(control, selectors.EVENT_READ, "control")
        selector.register(_stop.wakeup, selectors.EVENT_READ, "stop")
        try:
            while step.status is None:
                now = time.monotonic()
                if now >= deadline:
                    # A program that already ended by itself was not stopped by the deadline.
                    for pid, status, usage in processes.reap():
                        _record_exit(watch, pid, status, usage)
                    if step.status is None:
                        watch.limit = "timeout"
                    return

                for key, _ in selector.select(min(deadline - now, _sample_interval(step, now))):
                    if key.data == "exit":
                        for pid, status, usage in processes.reap():
                            _record_exit(watch, pid, status, usage)
                    elif key.data == "stop":
                        _drain(_stop.wakeup)
                        if _stop.requested:
                            watch.limit = watch.limit or "cancelled"
                            return
                    elif key.data == "control":
                        reason = _read_control(control)
                        if reason:
                            watch.limit = reason
                            return

                if step.status is None and _over_limit(spec, watch, now, next_disk):
                    return
                if now >= next_disk:
                    next_disk = now + _DISK_EVERY
        finally:
            os.close(pidfd)


def _sample_interval(step: _Step, now: float) -> float:
    elapsed = now - step.started
    for until, interval in _SAMPLE_STEPS:
        if elapsed < until:
            return interval
    return _SAMPLE_STEPS[-1][1]


def _over_limit(spec: RunSpec, watch: _Watch, now: float, next_disk: float) -> bool:
    tree = processes.sample(os.getpid())
    watch.peak_rss = max(watch.peak_rss, tree.rss_bytes)
    watch.peak_processes = max(watch.peak_processes, tree.threads)
    if tree.rss_bytes > spec.limits.memory_bytes:
        watch.limit = "memory"
        return True
    if watch.build_outputs:
        written = sum(os.fstat(fd).st_size for fd in watch.build_outputs)
        if written > spec.max_output_bytes:
            watch.limit = "output"
            return True
    if now >= next_disk:
        used, entries = _disk_usage(spec.workdir)
        if used > spec.limits.max_disk_bytes or entries > _MAX_ENTRIES:
            watch.limit = "disk"
            return True
    return False


def _disk_usage(path: str) -> tuple[int, int]:
    """(bytes allocated, entries) under `path`.

    A workdir that cannot be measured counts as full: more than `_MAX_ENTRIES` entries (the
    walk stops there), or a directory the walk cannot enter because its permissions were
    taken away. Otherwise files put where the walk does not look would escape the disk limit.
    The walk goes from directory to directory by descriptor, so neither depth nor path length
    stops it (a path past PATH_MAX once counted as full, which stopped a legitimate deep tree
    at the first sample that saw it). A run that moves directories about under the walk three
    times running counts as full too.
    """
    for _attempt in range(3):
        with contextlib.suppress(_TreeMoved):
            return _measure(path)
    return 0, _MAX_ENTRIES + 1


class _TreeMoved(Exception):
    """The directory the walk climbed back to by `..` is not the one it came down from."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _measure(path: str) -> tuple[int, int]:
    # Depth first with one descriptor open at a time: each level keeps its directory's
    # identity and the subdirectories still to visit, and the walk climbs back by `..`.
    total = 0
    seen = 0
    levels: list[tuple[tuple[int, int], list[str]]] = []
    # A file with several names takes its blocks once: each (device, inode) linked so far.
    linked: set[tuple[int, int]] = set()
    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return 0, 0
    except OSError:  # the workdir itself made unreadable (`chmod . 0`): it cannot be measured
        return 0, _MAX_ENTRIES + 1
    try:
        while True:
            subdirs: list[str] = []
            with os.scandir(fd) as listing:
                for entry in listing:
                    seen += 1
                    if seen > _MAX_ENTRIES:
                        return total, seen
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed by the run meanwhile
                    if stat.S_ISDIR(info.st_mode):
                        subdirs.append(entry.name)
                    elif info.st_nlink > 1:
                        if (info.st_dev, info.st_ino) in linked:
                            continue
                        linked.add((info.st_dev, info.st_ino))
                    total += info.st_blocks * 512
            here = os.fstat(fd)
            levels.append(((here.st_dev, here.st_ino), subdirs))

            while levels:
                remaining = levels[-1][1]
                if remaining:
                    below = _open_below(fd, remaining.pop())
                    if below is None:
                        continue
                    os.close(fd)
                    fd = below
                    break
                levels.pop()
                if levels:
                    above = os.open("..", _DIR_FLAGS, dir_fd=fd)
                    os.close(fd)
                    fd = above
                    here = os.fstat(fd)
                    if (here.st_dev, here.st_ino) != levels[-1][0]:
                        raise _TreeMoved
            if not levels:
                return total, seen
    except OSError:
        return total, _MAX_ENTRIES + 1
    finally:
        os.close(fd)


def _open_below(fd: int, name: str) -> int | None:
    """The subdirectory `name` of `fd`, or None if it is gone or no longer a directory."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a link: its lstat was counted
            return None
        raise


def _read_control(control: socket.socket) -> str | None:
    """The reason the server wants the run killed, or None for nothing to do."""
    try:
        data = control.recv(4096)
    except OSError:
        return "cancelled"
    if not data:  # the server went away or gave up on the run
        return "cancelled"
    request = json.loads(data)
    if request.get("op") == "kill":
        return str(request.get("reason") or "cancelled")
    return None


def _record_exit(watch: _Watch, pid: int, status: int, usage: object) -> None:
    step = watch.current
    if step is not None and pid == step.pid and step.status is None:
        step.status = status
        step.usage = usage
        step.ended = time.monotonic()


def _remove_workdir(spec: RunSpec) -> None:
    # After the report: a failure can only be logged. The server also clears its run root
    # when it starts.
    try:
        files.remove_tree(spec.workdir)
    except OSError as exc:
        print(f"run {spec.run_id}: workdir not removed: {exc}", file=sys.stderr, flush=True)


def _outcome(spec: RunSpec, watch: _Watch) -> RunOutcome:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_ms = (children.ru_utime + children.ru_stime) * 1000 - watch.standby_cpu_ms
    # ru_maxrss also covers each process's life before exec, when it was a copy of this
    # supervisor: it only says something when it rose above that.
    largest = children.ru_maxrss * 1024
    peak = max(watch.peak_rss, largest if largest > watch.fork_rss else 0)

    program = watch.program
    exit_code = signal_name = None
    limit = watch.limit
    if program is not None:
        exit_code, signal_name = _exit_of(program.status)
        if program.status is None and program.started:
            # The supervisor ended the run before the main process exited: SIGKILL.
            signal_name = "SIGKILL"
        elif os.WIFSIGNALED(program.status):
            limit = limit or _limit_from_signal(spec, os.WTERMSIG(program.status), program.usage)
        elif limit == "timeout":
            # It ended by itself as the deadline passed, before the kill reached it.
            limit = None

    error = "; ".join(watch.errors) or None
    return RunOutcome(
        exit_code=exit_code,
        signal=signal_name,
        limit=limit,
        duration_ms=round(program.duration_ms if program else 0.0, 3),
        cpu_ms=round(cpu_ms, 3),
        peak_memory_bytes=int(peak),
        peak_processes=watch.peak_processes,
        error=error,
        build=watch.build,
    )


def _exit_of(status: int | None) -> tuple[int | None, str | None]:
    """(exit code, signal name) of a wait status; (None, None) when there is none."""
    if status is None:
        return None, None
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    if os.WIFSIGNALED(status):
        return None, _signal_name(os.WTERMSIG(status))
    return None, None


def _limit_from_signal(spec: RunSpec, number: int, usage: object) -> str | None:
    if number == signal.SIGXCPU:
        return "cpu"
    if number == signal.SIGXFSZ:
        return "file_size"
    if number == signal.SIGKILL and usage is not None:
        # The hard CPU limit sends SIGKILL to a process that ignored SIGXCPU.
        used = usage.ru_utime + usage.ru_stime  # type: ignore[attr-defined]
        if used >= spec.limits.cpu_seconds:
            return "cpu"
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def _report(control: socket.socket, outcome: RunOutcome, listing: int | None) -> None:
    # If the server is gone there is no one left to tell. The listing of the run's files
    # travels beside the report, as a sealed memory file.
    message = [json.dumps({"event": "exited", "outcome": outcome.to_dict()}).encode()]
    rights = (
        []
        if listing is None
        else [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [listing]))]
    )
    try:
        with contextlib.suppress(OSError):
            control.sendmsg(message, rights)
    finally:
        if listing is not None:
            os.close(listing)


def _close_quietly(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            continue


def _own_peak_rss() -> int:
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024 + 1024 * 1024
    return 0


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass
