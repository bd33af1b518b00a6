"""Warm Python runs: the interpreter is started before the call, and each run forks it.

A cold Python run execs `python3 -u -B main.py`, and most of its 8 ms or so go to starting the
interpreter. A warm run skips that. At startup the server starts a second launcher, the
*template*, on the snippets' own interpreter, with the snippets' flags and environment. For
each run the template forks a supervisor as the cold launcher does; the supervisor takes the
run's identity, makes its workdir and forks the snippet process, which gets its session,
rlimits, Landlock domain and seccomp filter exactly as a cold one does, and then, instead of
exec'ing a new interpreter, runs `main.py` in the one it already is (`run_program`). It
serves that one run and exits; nothing is reused.

Before the program starts, the process is put back to what a fresh interpreter has: new
standard streams on the run's descriptors, the run's environment, argv and module path, only
the modules the interpreter had imported by itself (a program's own `json.py` is imported, not
the standard one the server had loaded), a `__main__` like a cold one's. Its exit is done by
hand in the interpreter's order: threads joined, atexit handlers run, the standard streams
flushed, what the program left alive finalised (files closed, `__del__` run), the streams
flushed again, with the interpreter's exit status, 120 when a flush failed.

What a warm run can learn that a cold one cannot, and why that is acceptable:
- The template's memory layout (ASLR), stack canary and string-hash seed are the same in
  every warm run. They help only to exploit a memory bug in a process that shares them and
  that the snippet can feed input to; the template reads nothing from snippets, and other
  runs are out of reach (another uid in pool mode; Landlock and seccomp in both modes).
- The template's memory holds no run's data: the launcher reads each spec only in the forked
  supervisor (launcher.py), and the template was started with a fixed, scrubbed environment,
  which is also what `/proc/self/environ` shows a warm snippet.
- The server's code is still in the process: out of `sys.modules`, but reachable through the
  frames below the program's own (`sys._getframe(1)`). It is public code, and holds no run's
  data (above).

Where a warm run differs from a cold one:
- Those frames below the program's own (the launcher's, the supervisor's, this module's) show
  in `traceback.print_stack()`, `inspect.stack()` and `sys._getframe()`, and a warning whose
  `stacklevel` reaches past the program's top frame names a line of this module where a cold
  run says `sys:1`.
- The recursion limit is raised by the depth of those frames (13 or so), so that a program
  recurses exactly as deep as a cold one: `sys.getrecursionlimit()` reads higher by as much,
  a program that sets its own limit gets that many frames fewer than a cold one, and its other
  threads, which start at the bottom of their own stacks, that many more.
- At exit, only the modules the run imported (and `__main__`) are finalised; those the
  interpreter imported at its start (os, io, codecs, ...) keep their globals, as this module
  still uses them. While daemon threads are still running at exit nothing is finalised: they
  would run on meanwhile, where the interpreter stops them first.
- A failed flush of stdout at exit is printed in the default hook's words even when the
  program set its own `sys.unraisablehook`.
- A main file named `*.pyc` is read as source; a cold interpreter runs it as bytecode (or
  says "Bad magic number").
- The template's objects stay frozen (`gc.freeze`), so that no collection in a run copies
  their pages: `gc.get_freeze_count()` counts them, `gc.get_objects()` leaves them out.
"""

from __future__ import annotations

import _thread
import atexit
import builtins
import gc
import io
import os
import re
import signal
import sys
import types
import weakref
from contextlib import suppress
from dataclasses import dataclass
from importlib.machinery import SourceFileLoader
from typing import Any, NoReturn

# Started as `python3 -u -B -c BOOTSTRAP FD PACKAGE_PARENT`: note what the interpreter has of
# its own (module path, modules, path importers) before the project's code is imported, so
# that each run goes back to exactly that.
BOOTSTRAP = (
    "import sys\n"
    "fresh = sys.path[1:], set(sys.modules), set(sys.path_importer_cache)\n"
    "sys.path.insert(0, sys.argv[2])\n"
    "from sandbox_mcp.sandbox import warm\n"
    "sys.exit(warm.serve(int(sys.argv[1]), *fresh))\n"
)


@dataclass(frozen=True)
class _Fresh:
    """What the interpreter had before the template ran anything: each run goes back to it."""

    path: tuple[str, ...] = ()
    modules: frozenset[str] = frozenset()
    importers: frozenset[str] = frozenset()


_fresh = _Fresh()

# The template's own modules, once a run has taken them out of sys.modules: kept alive, so that
# taking them out frees nothing and none of the server's objects is finalised in a program.
_template_modules: list[object] = []

# What a run calls on its way out, taken now: a program may replace them (`os._exit = print`),
# where the interpreter's own exit, in C, would never call the replacements. Were os._exit to
# return, run_program would return into the supervisor, which would exec the program again.
_exit = os._exit
_kill = os.kill
_getpid = os.getpid
_write = os.write
_set_signal = signal.signal
_collect = gc.collect
_run_exitfuncs = atexit._run_exitfuncs
_threads_running = _thread._count
# How the interpreter prints an exception itself (PyErr_Display), whatever sys.excepthook is.
_display = sys.__excepthook__

# The sys attributes the interpreter's shutdown sets to None before it frees the modules, so
# that the program's values they hold are finalised too (CPython's finalize_modules).
_RELEASED_AT_EXIT = (
    "path",
    "argv",
    "ps1",
    "ps2",
    "last_type",
    "last_value",
    "last_traceback",
    "path_hooks",
    "path_importer_cache",
    "meta_path",
    "__interactivehook__",
)

_MISSING = object()


def serve(fd: int, path: list[str], modules: set[str], importers: set[str]) -> int:
    """Be the template: a launcher whose supervisors run Python programs in-process.

    `path`, `modules` and `importers` are what the interpreter had before it ran anything: its
    module path (without the entry `-c` adds), the names in `sys.modules` and the keys of
    `sys.path_importer_cache`. Each run is put back to them.
    """
    global _fresh
    from sandbox_mcp.sandbox import launcher

    _fresh = _Fresh(tuple(path), frozenset(modules), frozenset(importers))
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


def run_program(argv: list[str], env: dict[str, str], ready: int | None) -> NoReturn:
    """Run `argv` (`python3 -u -B FILE ARGS...`) in this process, then exit. Never returns.

    Called in the snippet process once every limit is in place, in its workdir; `ready`, when
    given, is the descriptor whose closing tells the supervisor that the program started.
    What differs from a cold run is in this module's docstring.
    """
    script = os.path.abspath(argv[3])

    # 1. What a fresh `python3 -u -B FILE ARGS` has: its streams, environment, argv, module
    #    path, user site directory and signals.
    _open_standard_streams()
    os.environ.clear()
    os.environ.update(env)
    sys.argv = list(argv[3:])
    sys.orig_argv = list(argv)
    sys.path[:] = [os.path.dirname(script), *_fresh.path]
    _find_user_site()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    # 2. Only the modules the interpreter imported by itself, and the program's `__main__`.
    _forget_the_templates_imports(script)
    at_start = dict(sys.modules)
    main = _main_module(script)
    sys.modules["__main__"] = main
    if ready is not None:
        os.close(ready)

    # 3. Run it, and exit as the interpreter would. Whatever happens, the process ends here:
    #    returning into the supervisor would exec the program a second time.
    status = 1
    try:
        error = _execute(script, main)
        del main  # nothing of ours may keep `__main__` from being finalised at exit
        interrupted = type(error) is KeyboardInterrupt
        status = _status_after(error)
        del error
        status = _finish(status, at_start)
        if interrupted:
            _die_of_sigint()
            status = 130  # the interpreter's status when SIGINT is blocked and it lives on
    finally:
        _exit(status)


def _open_standard_streams() -> None:
    """Make sys.stdin, stdout and stderr anew, as `python3 -u` makes them at its start.

    The template's streams were made on its own files (/dev/null, the server's stderr) and
    remember what they found there, such as that the file could seek: a program that wraps or
    reconfigures them would fail where a cold one works.
    """
    made_by_the_interpreter = sys.__stdout__
    assert made_by_the_interpreter is not None  # noqa: S101 - the template's stdout is /dev/null
    encoding, errors = made_by_the_interpreter.encoding, made_by_the_interpreter.errors
    sys.stdin = sys.__stdin__ = _standard_stream(0, "<stdin>", "r", encoding, errors)
    sys.stdout = sys.__stdout__ = _standard_stream(1, "<stdout>", "w", encoding, errors)
    # The interpreter's choice for stderr, whatever the encoding: an error report never fails.
    sys.stderr = sys.__stderr__ = _standard_stream(2, "<stderr>", "w", encoding, "backslashreplace")


def _standard_stream(
    fd: int, name: str, mode: str, encoding: str, errors: str
) -> io.TextIOWrapper | None:
    """A text stream on `fd` as `python3 -u` makes one; None if `fd` is not open."""
    try:
        os.fstat(fd)
    except OSError:
        return None  # as the interpreter has it for a descriptor that is not open
    # With -u output is not buffered at all; input is, as TextIOWrapper reads through read1().
    binary = open(fd, mode + "b", buffering=0 if mode == "w" else -1, closefd=False)  # noqa: SIM115
    raw = binary if isinstance(binary, io.FileIO) else binary.raw
    raw.name = name
    stream = io.TextIOWrapper(
        binary, encoding, errors, newline="\n", line_buffering=False, write_through=True
    )
    stream.mode = mode
    return stream


def _find_user_site() -> None:
    """Have `site` find the user's directories from this run's HOME, as a cold run's does."""
    site: Any = sys.modules.get("site")
    if site is None:  # python3 -S
        return
    # The template found them from its own HOME, "/", and as another user.
    site.ENABLE_USER_SITE = site.check_enableusersite()
    site.USER_BASE = site.USER_SITE = None
    if site.ENABLE_USER_SITE:
        site.getusersitepackages()


def _forget_the_templates_imports(script: str) -> None:
    """Leave only the modules and path importers the interpreter had at its start.

    The template imported some eighty modules for the server's own code (json, socket, typing,
    ...): a program must import its own `json.py` where it has one, and get a fresh module
    where it has not, as it would cold.
    """
    for name in [name for name in sys.modules if name not in _fresh.modules]:
        _template_modules.append(sys.modules.pop(name))
    for path in [path for path in sys.path_importer_cache if path not in _fresh.importers]:
        del sys.path_importer_cache[path]
    # A cold interpreter asks whether the script is an importer (a zip file, a directory) and
    # notes that it is not.
    sys.path_importer_cache[script] = None


def _main_module(script: str) -> types.ModuleType:
    """`__main__` as a cold run has it, with its names in the same order."""
    main = types.ModuleType("__main__")
    main.__annotations__ = {}
    main.__builtins__ = builtins
    main.__file__ = script
    main.__cached__ = None
    main.__loader__ = SourceFileLoader("__main__", script)
    return main


def _execute(script: str, main: types.ModuleType) -> BaseException | None:
    """Compile and run the script as `__main__`; the exception it ended with, if any."""
    try:
        with open(script, "rb") as source:
            code = compile(_as_the_reader_sees(source.read()), script, "exec", dont_inherit=True)
        _allow_for_the_frames_below()
        exec(code, main.__dict__)  # noqa: S102  # nosec B102 # running the snippet is the point
    except BaseException as error:
        return error
    return None


def _as_the_reader_sees(source: bytes) -> bytes:
    """The source as the interpreter reads it from a file.

    Before 3.12, CPython reads a script line by line as C strings: a NUL byte ends what it
    sees of its line, newline included, so that the next line continues it. compile() would
    refuse the NUL instead; a warm run must see what a cold one does.
    """
    if b"\0" not in source or sys.version_info >= (3, 12):
        return source
    return re.sub(rb"\x00[^\n]*\n?", b"", source)


def _allow_for_the_frames_below() -> None:
    """Raise the recursion limit by the depth of the frames under the program's own.

    A cold program starts at the bottom of the stack; a warm one above the launcher's, the
    supervisor's and this module's frames, which count against the same limit.
    """
    below = 0
    frame = sys._getframe(1)  # the program's caller, _execute
    while frame is not None:
        below += 1
        frame = frame.f_back
    # exec() enters the interpreter's loop anew from C, which CPython 3.11 counts once more;
    # the tests compare the deepest recursion warm and cold.
    sys.setrecursionlimit(sys.getrecursionlimit() + below + 1)


def _status_after(error: BaseException | None) -> int:
    """Report how the program ended, as the interpreter does; the status it exits with."""
    if error is None:
        return 0
    if isinstance(error, SystemExit):
        return _exit_status(error)
    return _print_uncaught(error)


def _exit_status(request: SystemExit) -> int:
    """The status `SystemExit(code)` exits with; a code that is not a number is printed."""
    try:
        code = request.code
    except Exception:
        code = request  # the interpreter prints the exception itself then
    if code is None:
        return 0
    if issubclass(type(code), int):
        # The interpreter reads the code as a C long, and one that does not fit as -1; int's
        # own __int__ gives the number whatever a subclass of int says.
        number = int.__int__(code)
        return number & 0xFF if -sys.maxsize - 1 <= number <= sys.maxsize else 0xFF
    stderr = getattr(sys, "stderr", None)
    with suppress(Exception):  # a code whose str() fails prints nothing, and exits 1
        if stderr is None:
            _write(2, str(code).encode(errors="backslashreplace"))
        else:
            stderr.write(str(code))
    _write_stderr("\n")
    return 1


def _print_uncaught(error: BaseException) -> int:
    """Print an uncaught exception as the interpreter does (PyErr_Print); the exit status.

    The exception is kept in sys.last_*; sys.excepthook prints it. A hook that raises
    SystemExit sets the status; a hook that fails has its own error printed, then the
    original one; a missing hook is reported.
    """
    error = error.with_traceback(_from_the_program(error.__traceback__))
    sys.last_type, sys.last_value, sys.last_traceback = type(error), error, error.__traceback__
    hook = vars(sys).get("excepthook", _MISSING)
    if hook is _MISSING:
        _write_stderr("sys.excepthook is missing\n")
        _display(type(error), error, error.__traceback__)
        return 1
    try:
        hook(type(error), error, error.__traceback__)
    except SystemExit as request:
        return _exit_status(request)
    except BaseException as hook_error:
        hook_error = hook_error.with_traceback(_from_the_program(hook_error.__traceback__))
        _write_stderr("Error in sys.excepthook:\n")
        _display(type(hook_error), hook_error, hook_error.__traceback__)
        _write_stderr("\nOriginal exception was:\n")
        _display(type(error), error, error.__traceback__)
    return 1


def _from_the_program(traceback: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback without this module's frames: it starts in the program, as a cold one."""
    while traceback is not None and traceback.tb_frame.f_code.co_filename == __file__:
        traceback = traceback.tb_next
    return traceback


def _print_unraisable(error: BaseException, culprit: object) -> None:
    """Print an error that nothing can catch, as the interpreter's default hook does."""
    error = error.with_traceback(_from_the_program(error.__traceback__))
    with suppress(Exception):
        _write_stderr(f"Exception ignored in: {culprit!r}\n")
        _display(type(error), error, error.__traceback__)


def _write_stderr(text: str) -> None:
    """Write as the interpreter writes its own messages: to sys.stderr, else to descriptor 2."""
    try:
        sys.stderr.write(text)
    except Exception:
        with suppress(OSError):
            _write(2, text.encode(errors="backslashreplace"))


def _finish(status: int, at_start: dict[str, Any]) -> int:
    """The interpreter's exit, by hand and in its order; the status to exit with.

    `at_start` is `sys.modules` as the program found it: what was not there then is the
    run's, and is finalised.
    """
    # 1. Non-daemon threads joined, atexit handlers run.
    _join_threads()
    _run_exitfuncs()

    # 2. The streams flushed, what the program left alive finalised, the streams flushed
    #    again (what a __del__ printed). A failed flush makes the status 120.
    flushed = _flush_standard_streams()
    if _threads_running() == 0:
        _finalise(at_start)
    flushed = _flush_standard_streams() and flushed
    return status if flushed else 120


def _join_threads() -> None:
    threading = sys.modules.get("threading")
    if threading is None:
        return
    try:
        threading._shutdown()
    except BaseException as error:
        _print_unraisable(error, threading)


def _flush_standard_streams() -> bool:
    """Flush sys.stdout and sys.stderr as the interpreter does at exit; False if one failed.

    A stream that is closed is left alone: a program that closed stdout did not fail.
    """
    stdout, stderr = getattr(sys, "stdout", None), getattr(sys, "stderr", None)
    flushed = True
    for stream in (stdout, stderr):
        if stream is None or _is_closed(stream):
            continue
        try:
            stream.flush()
        except BaseException as error:
            flushed = False
            if stream is stdout:  # stderr's failure goes unsaid: there is nowhere to say it
                _print_unraisable(error, stream)
    return flushed


def _is_closed(stream: Any) -> bool:
    try:
        return bool(stream.closed)
    except Exception:
        return False


def _finalise(at_start: dict[str, Any]) -> None:
    """Finalise what the program left alive, as the interpreter's shutdown does.

    Files still open are flushed and closed, and `__del__` methods run. The modules the
    interpreter had before the program are left whole: this module uses them still.
    """
    # 1. What sys and builtins hold of the program let go; replaced streams go back to the
    #    interpreter's own.
    builtins._ = None
    for name in _RELEASED_AT_EXIT:
        setattr(sys, name, None)
    for name in ("stdin", "stdout", "stderr"):
        setattr(sys, name, getattr(sys, f"__{name}__", None))

    # 2. sys.modules emptied (nothing imports any more), then a collection: what only the
    #    run's modules held is finalised while their globals are whole.
    kept = [
        weakref.ref(module)
        for name, module in sys.modules.items()
        if at_start.get(name) is not module and isinstance(module, types.ModuleType)
    ]
    sys.modules.clear()
    _collect()

    # 3. The globals of those still held somewhere set to None, the last imported first.
    for reference in reversed(kept):
        module = reference()
        if module is not None:
            _clear_globals(vars(module))
        del module
    _collect()


def _clear_globals(namespace: dict[str, Any]) -> None:
    """Set a module's globals to None, as the interpreter does with a module still alive.

    `_private` names first, then every other but `__builtins__`, one at a time, so that each
    value is let go (and its `__del__` run) as its name is reset.
    """
    for private_only in (True, False):
        for name in list(namespace):
            if not isinstance(name, str) or namespace.get(name) is None:
                continue
            private = name.startswith("_") and not name.startswith("__")
            if private or (not private_only and name != "__builtins__"):
                namespace[name] = None


def _die_of_sigint() -> None:
    """End as the interpreter does after an uncaught KeyboardInterrupt: killed by SIGINT.

    Whoever waits for the process (a shell, the supervisor) then sees the interrupt.
    """
    _set_signal(signal.SIGINT, signal.SIG_DFL)
    _kill(_getpid(), signal.SIGINT)
