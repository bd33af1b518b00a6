"""Warm Java runs: a JVM started, confined, before its call, with its compiler already warm.

A cold Java run starts two JVMs, `javac` and then `java`, and spends most of its 0.4 s or so
starting them and loading the compiler. A warm run is a run on standby (runner.py) whose
snippet process is `java` itself, exec'd after the same set-up as a cold one's (uid, workdir,
rlimits, Landlock, seccomp, the snippets' environment). It runs the bootstrap class
`JavaStandby` (java_standby/), compiled once per server into a directory the runs can read,
which compiles a small program a few times in memory, so that the compiler's classes are
loaded and its hot paths compiled by the JIT, and then waits for the go. At the go it
compiles the caller's files in process, as `javac` would in the workdir, reports the build to
the supervisor, and runs the entry class's `main` as `java -cp BUILD ENTRY ARGS` would. It
serves that one run; nothing is reused.

The JVM's descriptors, as its supervisor gives them (the JVM cannot receive descriptors
over a socket, but it can open an inherited pipe as /proc/self/fd/N):
- 0 is the run's stdin: a memory file made at standby, filled and sealed at the go, so that
  the program reads a sealed, seekable memory file as a cold run does.
- 1 and 2 are the run's stdout and stderr, as in a cold run.
- GO is a pipe: at the go the supervisor writes NUL-ended fields and closes it:
  `go`, how much build output to keep, the output limit, the entry class, the number of
  javac arguments, those arguments, then the program's arguments.
- REPORT is a pipe: once the build is done the JVM writes one line `STATUS MICROSECONDS
  LIMIT OUT_TOTAL OUT_HEAD OUT_TAIL ERR_TOTAL ERR_HEAD ERR_TAIL`, then the kept bytes of the
  build's stdout (head, tail) and stderr. It is read once the run is over.

Where a warm Java run differs from a cold one:
- The build and the program are one process: the run's memory during the program includes
  what the warm compiler holds (the JVM on standby is some 120 MB resident where a cold
  `java` starts at 35 MB), its CPU time includes the compile's, and the JIT has already
  compiled the JDK's hot methods.
- The bootstrap's frames are below `main` in a stack that the program prints itself
  (`Thread.getStackTrace`, `new Exception().printStackTrace()`); an exception that leaves
  `main` is printed without them, as a cold run prints it.
- Descriptors GO and REPORT stay open in the program (the JVM cannot close them), and
  `ProcessHandle.current().info()` shows the bootstrap's command line; `sun.java.command`
  and `java.class.path` read as a cold run's. The bootstrap's directory is on the class path
  after the build directory, and a program class in the package `sandboxmcp.standby` would
  be shadowed by the bootstrap's.
- A build killed by a limit (the deadline, memory) reports no output of its own: the
  compile's messages were still in the JVM. A build whose output is longer than `KEEP_MOST`
  keeps a shorter head and tail than SANDBOX_OUTPUT_BYTES asks for.
- The JVM's CPU time and peak memory while warming are not the run's: the CPU limit is
  raised by what the warming used, and the reported CPU time and peak memory leave it out.
- A call that takes a run whose JVM died on standby runs cold: the supervisor ends when its
  JVM does, and the server's go then finds it gone (`Sandbox._go`). A call that finds its
  JVM still warming waits for the round in progress, then for none of the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import resource
import select
import shutil
import socket
import subprocess  # nosec B404 # javac on the project's own bootstrap source, no shell
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox_mcp.sandbox import files, workspace
from sandbox_mcp.sandbox.output import CapturedText, StreamCapture
from sandbox_mcp.sandbox.spec import BuildOutcome, RunSpec

if TYPE_CHECKING:
    from sandbox_mcp.sandbox.languages import Language, MainFile
    from sandbox_mcp.sandbox.supervisor import RunFds, _Step, _Watch

BOOTSTRAP_CLASS = "sandboxmcp.standby.JavaStandby"
_SOURCE = Path(__file__).with_name("java_standby") / "sandboxmcp" / "standby" / "JavaStandby.java"
# Where the supervisor puts the pipes' descriptor numbers in the standby's argv.
_GO = "{go}"
_REPORT = "{report}"
# What one JVM on standby is counted for in the admission budget: it is some 120 MB
# resident once warm (measured with the project's JVM flags), with room to spare.
STANDBY_MEMORY_MB = 160
# CPU seconds the warming may take on top of the run's own limit; the limit is brought back
# to the run's own (plus what the warming used) at the go.
WARMING_CPU_SECONDS = 20
# The largest pipe buffer an unprivileged process may ask for (fs.pipe-max-size's default):
# the build's report must fit in it, as nobody reads it before the JVM exits.
_PIPE_BYTES = 1 << 20
KEEP_MOST = (_PIPE_BYTES - 4096) // 2


def compile_bootstrap(javac: str) -> str:
    """Compile the bootstrap class into a new directory every run may read; its path.

    Raises `OSError` or `subprocess.CalledProcessError` when it cannot; the caller removes
    the directory (`remove_bootstrap`) when the server stops.
    """
    directory = tempfile.mkdtemp(prefix="sandbox-mcp-java-standby-")
    try:
        os.chmod(directory, 0o755)  # noqa: S103  # nosec B103 # the runs' uids read the classes
        subprocess.run(  # nosec B603 # fixed argv, the project's own source
            [javac, "-encoding", "UTF-8", "-d", directory, str(_SOURCE)],
            check=True,
            capture_output=True,
            timeout=120,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
        for parent, dirs, names in os.walk(directory):
            for name in dirs:
                os.chmod(os.path.join(parent, name), 0o755)  # noqa: S103  # nosec B103
            for name in names:
                os.chmod(os.path.join(parent, name), 0o644)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


def remove_bootstrap(directory: str) -> None:
    """Remove what `compile_bootstrap` made."""
    shutil.rmtree(directory, ignore_errors=True)


def standby_argv(
    language: Language, main: MainFile, values: dict[str, str], bootstrap: str
) -> list[str]:
    """The command of a Java run on standby: the run's own `java` command, with the bootstrap
    on the class path after the build directory and in place of the entry class."""
    argv = language.command(language.run, values)
    classpath = argv.index("-cp") + 1
    argv[classpath] = f"{argv[classpath]}:{bootstrap}"
    return [*argv[: classpath + 1], BOOTSTRAP_CLASS, _GO, _REPORT]


def is_standby(spec: RunSpec) -> bool:
    """Whether `spec` is a Java run on standby (made from `standby_argv`)."""
    return spec.standby and BOOTSTRAP_CLASS in spec.argv


# --- in the supervisor -------------------------------------------------------------------------


def stand_by_then_run(spec: RunSpec, fds: RunFds, control: socket.socket, watch: _Watch) -> RunSpec:
    """Start the JVM confined and warming; on the server's go, hand it the run and watch it.

    The supervisor's counterpart of `supervisor._stand_by_then_run` for Java. Returns the
    spec as the go completed it.
    """
    from sandbox_mcp.sandbox import supervisor

    # 1. The JVM's descriptors (module docstring), then the JVM itself, confined as a cold
    #    run's but with room in its CPU limit for the warming.
    stdin = files.memory_stdin()
    go_read, go_write = os.pipe2(os.O_CLOEXEC)
    report_read, report_write = os.pipe2(os.O_CLOEXEC)
    for fd in (go_write, report_write):
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    argv = [
        str(go_read) if a == _GO else str(report_write) if a == _REPORT else a for a in spec.argv
    ]
    roomy = dataclasses.replace(
        spec,
        limits=dataclasses.replace(
            spec.limits, cpu_seconds=spec.limits.cpu_seconds + WARMING_CPU_SECONDS
        ),
    )
    step = watch.program = supervisor._Step()
    watch.steps.append(step)
    try:
        os.set_inheritable(go_read, True)
        os.set_inheritable(report_write, True)
        step.pid = supervisor._start(
            roomy, argv, (stdin, fds.stdout, fds.stderr), keep=(go_read, report_write)
        )
    finally:
        supervisor._close_quietly(go_read, report_write)
    control.send(json.dumps({"event": "standing by"}).encode())

    try:
        # 2. The go: the code into the workdir, stdin into the JVM's, the rest down the pipe.
        received = _go_unless_dead(control, step.pid)
        if received is None:
            watch.limit = "cancelled"
            return spec
        go, run_stdin, payload = received
        spec = dataclasses.replace(
            spec,
            argv=[str(arg) for arg in go["argv"]],
            main_file=str(go["main_file"]),
            build_argv=[str(arg) for arg in go["build_argv"]],
            limits=dataclasses.replace(spec.limits, timeout_seconds=float(go["timeout"])),
        )
        try:
            supervisor._write_main(spec, payload)
            watch.before = workspace.snapshot(spec.workdir)
            files.fill_stdin(stdin, run_stdin)
        finally:
            supervisor._close_quietly(run_stdin, payload, stdin)
        warming_cpu = _cpu_seconds(step.pid)
        cpu_limit = math.ceil(warming_cpu) + spec.limits.cpu_seconds
        resource.prlimit(step.pid, resource.RLIMIT_CPU, (cpu_limit, cpu_limit + 1))
        watch.standby_cpu_ms = warming_cpu * 1000
        watch.fork_rss = max(watch.fork_rss, _peak_rss(step.pid) + 1024 * 1024)
        _send_go(go_write, spec)
        go_write = -1

        # 3. Watch it as a cold run, from the go on; the build's report says how it went.
        step.started = time.monotonic()
        watch.deadline = step.started + spec.limits.timeout_seconds
        control.send(json.dumps({"event": "started", "pid": step.pid}).encode())
        supervisor._over_limit(spec, watch, step.started, float("inf"))
        supervisor._watch(spec, step, control, watch)
        _take_report(spec, report_read, step, watch)
    finally:
        supervisor._close_quietly(go_write, report_read)
    return spec


def _go_unless_dead(control: socket.socket, pid: int) -> tuple[dict, int, int] | None:
    """The go, as `supervisor._receive_go` gives it; None as it gives it, and also when the JVM
    died while it waited. This supervisor then ends, and the server's go finds it gone and
    runs its call cold (`Sandbox._go`)."""
    from sandbox_mcp.sandbox import supervisor

    pidfd = os.pidfd_open(pid)
    try:
        while not supervisor._stop.requested:
            waiting = [control, pidfd, supervisor._stop.wakeup]
            readable, _, _ = select.select(waiting, [], [])
            if control in readable:
                break
            if pidfd in readable:
                return None
            supervisor._drain(supervisor._stop.wakeup)
    finally:
        os.close(pidfd)
    return supervisor._receive_go(control)


def _send_go(go: int, spec: RunSpec) -> None:
    """Write the go's fields (module docstring) and close the pipe."""
    classpath = spec.argv.index("-cp")
    entry, args = spec.argv[classpath + 2], spec.argv[classpath + 3 :]
    assert spec.build_argv is not None  # noqa: S101 - a Java run always builds
    javac = [arg for arg in spec.build_argv[1:] if not arg.startswith("-J")]
    keep = min(spec.output_bytes, KEEP_MOST)
    fields = ["go", str(keep), str(spec.max_output_bytes), entry, str(len(javac)), *javac, *args]
    data = b"".join(field.encode("utf-8", errors="surrogateescape") + b"\0" for field in fields)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(go, view) :]
    finally:
        os.close(go)


def _take_report(spec: RunSpec, report: int, step: _Step, watch: _Watch) -> None:
    """Turn the JVM's build report into the run's build outcome; a build that failed, or
    never reported, leaves the program as never started."""
    os.set_blocking(report, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while len(data) < _PIPE_BYTES and (chunk := os.read(report, _PIPE_BYTES)):
            data += chunk
    header, _, rest = data.partition(b"\n")
    fields = header.split()
    if len(fields) != 9:
        # Killed or dead before its build was done: the build is what ended.
        exit_code = None
        if step.status is not None and os.WIFEXITED(step.status):
            exit_code = os.WEXITSTATUS(step.status)
        watch.build = BuildOutcome(
            exit_code=exit_code,
            signal=None if exit_code is not None else "SIGKILL",
            stdout="",
            stderr="",
            stdout_bytes=0,
            stderr_bytes=0,
            duration_ms=round(step.duration_ms, 3),
        )
        watch.program = None
        return
    status, micros, limit = int(fields[0]), int(fields[1]), fields[2].decode()
    out_total, out_head, out_tail, err_total, err_head, err_tail = map(int, fields[3:])
    keep = min(spec.output_bytes, KEEP_MOST)
    out, rest = _captured(rest, out_total, out_head, out_tail, keep)
    err, rest = _captured(rest, err_total, err_head, err_tail, keep)
    over = limit == "output"
    watch.build = BuildOutcome(
        exit_code=None if over else status,
        signal="SIGKILL" if over else None,
        stdout=out.text,
        stderr=err.text,
        stdout_bytes=out.total_bytes,
        stderr_bytes=err.total_bytes,
        duration_ms=round(micros / 1000, 3),
    )
    if over:
        watch.limit = watch.limit or "output"
    if status != 0 or over:
        watch.program = None
    else:
        step.started += micros / 1_000_000


def _captured(
    data: bytes, total: int, head: int, tail: int, keep: int
) -> tuple[CapturedText, bytes]:
    """One stream of the report as the cold build's capture would have it; what follows."""
    capture = StreamCapture(keep)
    capture.feed(data[:head])
    capture.feed(data[head : head + tail])
    capture.total_bytes = total
    return capture.result(), data[head + tail :]


def _cpu_seconds(pid: int) -> float:
    """The CPU time a process has used so far, all its threads."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0
