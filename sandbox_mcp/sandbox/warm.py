"""Warm Python runs: the interpreter is started before the call, and each run forks it.

A cold Python run execs `python3 -u -B main.py`, and most of its 8 ms or so go to starting the
interpreter. A warm run skips that. At startup the server starts a second launcher, the
*template*, on the snippets' own interpreter, with the snippets' flags and environment. For
each run the template forks a supervisor as the cold launcher does; the supervisor takes the
run's identity, makes its workdir and forks the snippet process, which gets its session,
rlimits, Landlock domain and seccomp filter exactly as a cold one does, and then, instead of
exec'ing a new interpreter, runs `main.py` in the one it already is (`run_program`). It
serves that one run and exits; nothing is reused.

What a warm run can learn that a cold one cannot, and why that is acceptable:
- The template's memory layout (ASLR), stack canary and string-hash seed are the same in
  every warm run. They help only to exploit a memory bug in a process that shares them and
  that the snippet can feed input to; the template reads nothing from snippets, and other
  runs are out of reach (another uid in pool mode; Landlock and seccomp in both modes).
- The template's memory holds no run's data: the launcher reads each spec only in the forked
  supervisor (launcher.py), and the template was started with a fixed, scrubbed environment,
  which is also what `/proc/self/environ` shows a warm snippet.
- The interpreter has already imported a few standard modules (json, socket, selectors,
  ctypes, ...) that a cold one imports only when asked: a snippet importing them gets them
  sooner, the same modules. The project's own modules are dropped from `sys.modules`.

Where a warm run differs from a cold one, it is written here: interpreter shutdown is done by
hand (threads joined, atexit handlers run, streams flushed) rather than by `Py_Finalize`, so
objects still alive at exit are not finalised; `__main__.__loader__` is None.
"""

from __future__ import annotations

import builtins
import gc
import os
import re
import signal
import sys
import types

# Started as `python3 -u -B -c BOOTSTRAP FD PACKAGE_PARENT`: note the interpreter's own module
# path before the project's is added, so that a run gets exactly the path a cold one has.
BOOTSTRAP = (
    "import sys\n"
    "base_path = sys.path[1:]\n"
    "sys.path.insert(0, sys.argv[2])\n"
    "from sandbox_mcp.sandbox import warm\n"
    "sys.exit(warm.serve(int(sys.argv[1]), base_path))\n"
)

_base_path: list[str] = []


def serve(fd: int, base_path: list[str]) -> int:
    """Be the template: a launcher whose supervisors run Python programs in-process."""
    from sandbox_mcp.sandbox import launcher

    _base_path[:] = base_path
    # Everything imported so far is shared with every fork; keep the collector off it so
    # that it is not copied page by page into each run.
    gc.collect()
    gc.freeze()
    return launcher.serve(fd)


def run_when_told(channel: int, env: dict[str, str], ready: int) -> None:
    """Wait, confined, for the go on `channel`, then run the program. Never returns.

    A run on standby: everything but the code, its arguments and stdin was set up before the
    call arrived. The go carries the argv and the stdin descriptor; the supervisor has
    written the code into the workdir by then.
    """
    import array
    import json
    import socket

    os.close(ready)
    fds = array.array("i")
    with socket.socket(fileno=channel) as waiting:
        data, ancillary, _flags, _addr = waiting.recvmsg(1 << 20, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data or len(fds) != 1:
        os._exit(0)  # never used: the supervisor is cleaning up
    os.dup2(fds[0], 0)
    os.close(fds[0])
    run_program(json.loads(data), env, None)


def run_program(argv: list[str], env: dict[str, str], ready: int | None) -> None:
    """Run `argv` (`python3 -u -B FILE ARGS...`) in this process, then exit. Never returns.

    Called in the snippet process once every limit is in place, in its workdir; `ready`, when
    given, is the descriptor whose closing tells the supervisor that the program started.
    """
    script = os.path.abspath(argv[3])

    # What a fresh `python3 FILE ARGS` has: its environment, argv, module path, signals.
    os.environ.clear()
    os.environ.update(env)
    sys.argv = list(argv[3:])
    sys.orig_argv = list(argv)
    sys.path[:] = [os.path.dirname(script), *_base_path]
    for name in [name for name in sys.modules if name.split(".")[0] == "sandbox_mcp"]:
        del sys.modules[name]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    gc.unfreeze()

    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__builtins__ = builtins
    main.__cached__ = None
    sys.modules["__main__"] = main
    if ready is not None:
        os.close(ready)

    status = _execute(script, main)
    os._exit(_finish(status))


def _execute(script: str, main: types.ModuleType) -> int:
    """Compile and run the script as `__main__`; the exit status the interpreter would give."""
    try:
        with open(script, "rb") as source:
            code = compile(_as_the_reader_sees(source.read()), script, "exec", dont_inherit=True)
        exec(code, main.__dict__)  # noqa: S102  # nosec B102 - running the snippet is the point
    except SystemExit as exc:
        return _exit_status(exc.code)
    except KeyboardInterrupt:
        _print_exception()
        # As the interpreter does: die of the signal, so the parent sees SIGINT.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _flush()
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except BaseException:
        _print_exception()
        return 1
    return 0


def _as_the_reader_sees(source: bytes) -> bytes:
    """The source as the interpreter reads it from a file.

    Before 3.12, CPython reads a script line by line as C strings: a NUL byte ends what it
    sees of its line, newline included, so that the next line continues it. compile() would
    refuse the NUL instead; a warm run must see what a cold one does.
    """
    if b"\0" not in source or sys.version_info >= (3, 12):
        return source
    return re.sub(rb"\x00[^\n]*\n?", b"", source)


def _finish(status: int) -> int:
    """The interpreter's exit, by hand: join threads, run atexit handlers, flush."""
    threading = sys.modules.get("threading")
    try:
        if threading is not None:
            # What the interpreter itself calls at exit, as is atexit._run_exitfuncs below.
            threading._shutdown()
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except BaseException:
        _print_exception()
    import atexit

    atexit._run_exitfuncs()
    if not _flush():
        # The interpreter's status when it cannot flush stdout at exit (a closed pipe).
        status = status or 120
    return status


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _print_exception() -> None:
    kind, value, traceback = sys.exc_info()
    # Drop this module's frames: the traceback starts in the snippet, as a cold one does.
    while traceback is not None and traceback.tb_frame.f_code.co_filename == __file__:
        traceback = traceback.tb_next
    # The hook prints the exception's own __traceback__, not only the one it is given.
    if value is not None:
        value = value.with_traceback(traceback)
    sys.excepthook(kind, value, traceback)


def _flush() -> bool:
    flushed = True
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            flushed = False
    return flushed
