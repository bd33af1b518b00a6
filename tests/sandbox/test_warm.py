"""Warm Python runs (warm.py) behave as cold ones do, and hold nothing of other runs."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import pytest

from sandbox_mcp.sandbox.runner import RunRequest, RunResult, Sandbox
from tests.sandbox.test_runner import BASE
from tests.support import IS_ROOT

pytestmark = pytest.mark.anyio

MODES = ["python", "off"]


@pytest.fixture(params=MODES)
async def sandbox(request: pytest.FixtureRequest, run_root: Path) -> AsyncIterator[Sandbox]:
    box = Sandbox(replace(BASE, run_root=run_root, warm=request.param))
    await box.start()
    yield box
    await box.close()


async def run(box: Sandbox, code: str, **kwargs: object) -> RunResult:
    return await box.run(RunRequest(language="python", code=code, **kwargs))  # type: ignore[arg-type]


# What a program can see of how it was started; a warm run must show the same as a cold one.
FINGERPRINT = """
import json, os, site, sys
workdir = os.getcwd()
print(json.dumps({
    "name": __name__,
    "main": [list(globals()), type(__loader__).__name__, __loader__.path == __file__],
    "file_is_absolute": __file__ == os.path.abspath("main.py"),
    "argv": sys.argv,
    "orig_argv": sys.orig_argv[1:],
    "executable": sys.executable,
    "path0_is_workdir": sys.path[0] == workdir,
    "path": sys.path[1:],
    "modules": sorted(sys.modules),
    "importers": [path.replace(workdir, "<workdir>") for path in sys.path_importer_cache],
    "environ": sorted(os.environ),
    "home_is_workdir": os.environ["HOME"] == workdir,
    "user_site": [site.USER_BASE.replace(workdir, "<workdir>"), site.ENABLE_USER_SITE],
    "flags": list(sys.flags),
    "streams": [
        [stream.name, stream.mode, stream.encoding, stream.errors, stream.line_buffering,
         stream.write_through, type(stream.buffer).__name__, stream.seekable()]
        for stream in (sys.stdin, sys.stdout, sys.stderr)
    ],
    "sigint": str(__import__("signal").getsignal(2)),
    "sandbox_mcp": any("sandbox_mcp" in name for name in sys.modules),
}))
"""


async def test_a_warm_run_looks_like_a_cold_one(run_root: Path) -> None:
    seen = {}
    for mode in MODES:
        box = Sandbox(replace(BASE, run_root=run_root, warm=mode))
        await box.start()
        try:
            result = await run(box, FINGERPRINT, args=("one", "two"))
        finally:
            await box.close()
        assert result.exit_code == 0, result.stderr
        seen[mode] = json.loads(result.stdout)

    assert seen["python"] == seen["off"]
    assert seen["python"]["argv"] == ["main.py", "one", "two"]
    assert seen["python"]["sandbox_mcp"] is False
    assert seen["python"]["path0_is_workdir"] and seen["python"]["home_is_workdir"]


# Programs that a warm run once ran otherwise than a cold one: the interpreter's streams, its
# exit (finalisation, excepthook, exit codes), the recursion limit, `__main__`, modules the
# template had imported, a program that replaces os._exit.
ENDINGS: dict[str, str] = {
    # The standard streams as the interpreter makes them on the run's own descriptors.
    "reconfigured stdout": "import sys\nsys.stdout.reconfigure(encoding='latin-1')\nprint('é')",
    "stdout wrapped anew": (
        "import io, sys\nout = io.TextIOWrapper(sys.stdout.buffer, encoding='utf-8')\n"
        "out.write('wrapped\\n')\nout.flush()"
    ),
    "stdout told": "import sys\nsys.stdout.tell()",
    # What is alive at exit is finalised: files flushed and closed, __del__ run.
    "descriptor 1 left open": "import os\nout = os.fdopen(1, 'w')\nout.write('fdopen\\n')",
    "buffered file left open": (
        "out = open(1, 'w', closefd=False, buffering=65536)\nout.write('buffered\\n')"
    ),
    "object alive at exit": "class A:\n    def __del__(self): print('finalised')\na = A()",
    "object alive in an imported module": (
        "open('helper.py', 'w').write('class B:\\n    def __del__(self): print(\"helper\")\\n"
        "b = B()\\n')\nimport helper\nprint('main')"
    ),
    "cycle alive at exit": "class A:\n    def __del__(self): print('cycle')\na = A()\na.me = a",
    "__del__ importing at exit": "class A:\n    def __del__(self):\n        import os\na = A()",
    "__del__ seeing sys at exit": (
        "import sys\nclass A:\n    def __del__(self): print(sys.argv)\na = A()"
    ),
    "stdout replaced by a file": "import sys\nsys.stdout = open('out.txt', 'w')\nprint('file')",
    # The exit: atexit, KeyboardInterrupt, excepthook, exit codes, flushes.
    "KeyboardInterrupt after atexit": (
        "import atexit\natexit.register(print, 'atexit')\nraise KeyboardInterrupt"
    ),
    "KeyboardInterrupt subclass": "class K(KeyboardInterrupt): pass\nraise K",
    "excepthook None": "import sys\nsys.excepthook = None\nraise ValueError('v')",
    "excepthook failing": (
        "import sys\ndef hook(*args): raise RuntimeError('hook')\nsys.excepthook = hook\n"
        "raise ValueError('v')"
    ),
    "excepthook missing": "import sys\ndel sys.excepthook\nraise ValueError('v')",
    "excepthook exiting": (
        "import sys\ndef hook(*args): raise SystemExit(5)\nsys.excepthook = hook\nraise ValueError"
    ),
    "exit code that cannot be printed": (
        "class C:\n    def __str__(self): raise RuntimeError\nraise SystemExit(C())"
    ),
    "exit message without stderr": "import sys\nsys.stderr = None\nsys.exit('bye')",
    "exit code past a C long": "import sys\nsys.exit(2**70)",
    "negative exit code past a C long": "import sys\nsys.exit(-2**70)",
    "exit code at a C long's edge": "import sys\nsys.exit(2**63 - 1)",
    "exit code past 255": "import sys\nsys.exit(263)",
    "exit code True": "import sys\nsys.exit(True)",
    "stdout closed": "import sys\nsys.stdout.close()",
    "stdout to a full disk": "import sys\nsys.stdout = open('/dev/full', 'w')\nprint('x')",
    "stderr to a full disk": (
        "import sys\nsys.stderr = open('/dev/full', 'w')\nprint('x', file=sys.stderr)\nsys.exit(3)"
    ),
    "os._exit replaced": "import os\nos._exit = lambda status: None\nprint('once')",
    # The recursion limit, __main__.
    "recursion to 990": "def f(n): return f(n - 1) if n else 0\nprint(f(990))",
    "deepest recursion": (
        "def f(n):\n    try:\n        return f(n + 1)\n    except RecursionError:\n"
        "        return n\nprint(f(0))"
    ),
    # Without an annotation in the module, the compiler does not make __annotations__ itself.
    "module __annotations__": "print(__annotations__)",
    # A program's own modules win over those the template had imported, and those it had are
    # imported afresh and work.
    "main file named json.py": "import json\nprint(json.__file__)",
    "main file named typing.py": "import typing\nprint(typing.__file__)",
    "socket.py written, then imported": (
        "open('socket.py', 'w').write('OWN = True\\n')\nimport socket\nprint(socket.OWN)"
    ),
    "standard modules imported afresh": (
        "import array, asyncio, ctypes, json, selectors, socket, subprocess, threading\n"
        "a, b = socket.socketpair()\na.sendall(b'ping')\n"
        "done = []\nthread = threading.Thread(target=lambda: done.append(1))\n"
        "thread.start()\nthread.join()\n"
        "print(json.dumps([1]), b.recv(4), type(selectors.DefaultSelector()).__name__,\n"
        "      ctypes.c_int(3).value, array.array('i', [2]).tolist(), done,\n"
        "      asyncio.run(asyncio.sleep(0, 'async')),\n"
        "      subprocess.run(['/bin/echo', 'child'], capture_output=True, text=True).stdout)"
    ),
}
# The cases above whose main file is not main.py.
MAIN_FILES = {"main file named json.py": "json.py", "main file named typing.py": "typing.py"}


class Ending(NamedTuple):
    """How a run ended, with what differs from run to run (workdir, addresses) made the same."""

    stdout: str
    stderr: str
    exit_code: int | None
    signal: str | None

    @classmethod
    def of(cls, result: RunResult, run_root: Path) -> Ending:
        def same(text: str) -> str:
            text = re.sub(re.escape(str(run_root)) + r"/[0-9a-f]+", "<workdir>", text)
            return re.sub(r"0x[0-9a-f]+", "0x...", text)

        return cls(same(result.stdout), same(result.stderr), result.exit_code, result.signal)


async def test_programs_end_warm_as_they_do_cold(run_root: Path) -> None:
    seen: dict[str, dict[str, Ending]] = {}
    for mode in MODES:
        box = Sandbox(replace(BASE, run_root=run_root, warm=mode))
        await box.start()
        try:
            seen[mode] = {
                name: Ending.of(await run(box, code, filename=MAIN_FILES.get(name)), run_root)
                for name, code in ENDINGS.items()
            }
        finally:
            await box.close()

    differing = [
        f"{name}:\n  warm {seen['python'][name]}\n  cold {seen['off'][name]}"
        for name in ENDINGS
        if seen["python"][name] != seen["off"][name]
    ]
    assert not differing, "\n".join(differing)
    # The cold runs end as the cases expect, so that each tests what it was written for.
    cold = seen["off"]
    assert cold["os._exit replaced"].stdout == "once\n"
    assert cold["object alive at exit"].stdout == "finalised\n"
    assert cold["exit code past a C long"].exit_code == 255
    assert cold["KeyboardInterrupt after atexit"].stdout == "atexit\n"
    assert cold["KeyboardInterrupt after atexit"].signal == "SIGINT"
    assert cold["socket.py written, then imported"].stdout == "True\n"


@pytest.mark.parametrize(
    ("code", "exit_code", "stderr_has"),
    [
        ("import sys\nsys.exit(3)", 3, None),
        ("import sys\nsys.exit('bye')", 1, "bye"),
        ("def f():\n    raise ValueError('boom')\nf()", 1, "ValueError: boom"),
        ("print('unclosed'", 1, "SyntaxError"),
        ("import sandbox_mcp", 1, "ModuleNotFoundError"),
    ],
)
async def test_exits_and_errors_are_reported_as_the_interpreter_does(
    sandbox: Sandbox, code: str, exit_code: int, stderr_has: str | None
) -> None:
    result = await run(sandbox, code)

    assert result.exit_code == exit_code, result.stderr
    if stderr_has:
        assert stderr_has in result.stderr
    # The traceback starts in the snippet: nothing of the sandbox's own code shows.
    assert "sandbox_mcp/" not in result.stderr
    assert "warm.py" not in result.stderr


@pytest.mark.parametrize(
    "code", ["print('a')\0print('b')", "print(1)\0junk\nprint(2)\n", "print(1)\nprint(2)\0\n"]
)
async def test_nul_bytes_in_the_code_are_read_as_a_cold_interpreter_reads_them(
    run_root: Path, code: str
) -> None:
    seen = []
    for mode in MODES:
        box = Sandbox(replace(BASE, run_root=run_root, warm=mode))
        await box.start()
        try:
            result = await run(box, code)
        finally:
            await box.close()
        seen.append((result.stdout, result.exit_code, result.stderr.splitlines()[-1:]))

    assert seen[0] == seen[1]


async def test_the_traceback_names_the_snippets_file_and_line(sandbox: Sandbox) -> None:
    result = await run(sandbox, "x = 1\ny = 2\nraise RuntimeError('line three')")

    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].endswith('main.py", line 3, in <module>')
    assert lines[-1] == "RuntimeError: line three"


async def test_threads_finish_and_atexit_handlers_run_before_the_exit(sandbox: Sandbox) -> None:
    code = (
        "import atexit, threading, time\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "def late():\n    time.sleep(0.2)\n    print('thread done')\n"
        "threading.Thread(target=late).start()\n"
        "print('main done')"
    )
    result = await run(sandbox, code)

    assert result.stdout == "main done\nthread done\natexit ran\n"
    assert result.exit_code == 0


async def test_stdin_and_an_interrupt(sandbox: Sandbox) -> None:
    echoed = await run(sandbox, "import sys\nprint(sys.stdin.read().upper())", stdin="quiet")
    interrupted = await run(sandbox, "raise KeyboardInterrupt")

    assert echoed.stdout == "QUIET\n"
    assert interrupted.signal == "SIGINT"
    assert "KeyboardInterrupt" in interrupted.stderr


async def test_limits_hold_on_the_warm_path(sandbox: Sandbox) -> None:
    timed_out = await run(sandbox, "while True:\n    pass", timeout_seconds=1)
    bomb = await run(sandbox, "x = []\nwhile True:\n    x.append(bytearray(1 << 20))")

    assert timed_out.limit == "timeout"
    assert bomb.limit == "memory"
    assert (await run(sandbox, "print('next')")).stdout == "next\n"


async def wait_for_standby(box: Sandbox) -> None:
    for _ in range(200):
        if box.standby_ready:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no warm run came on standby within 10 s")


async def test_a_run_on_standby_takes_its_calls_arguments_stdin_file_and_deadline(
    run_root: Path,
) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, warm="python"))
    await box.start()
    try:
        await wait_for_standby(box)
        given = await box.run(
            RunRequest(
                language="python",
                code="import sys\nprint(sys.argv, sys.stdin.read(), __file__.endswith('/tool.py'))",
                args=("a", "b c"),
                stdin="from stdin",
                filename="tool.py",
            )
        )
        await wait_for_standby(box)
        # The deadline counts from the call, not from when the run was started.
        await asyncio.sleep(1.2)
        slow = await run(box, "while True:\n    pass", timeout_seconds=1)
    finally:
        await box.close()

    assert given.stdout == "['tool.py', 'a', 'b c'] from stdin True\n", given.stderr
    assert slow.limit == "timeout"
    assert slow.duration_ms >= 900


async def test_runs_on_standby_are_ended_and_removed_with_the_server(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, warm="python"))
    await box.start()
    await wait_for_standby(box)
    waiting = [entry.name for entry in run_root.iterdir()]
    await box.close()

    assert waiting, "a run on standby has its workdir"
    assert not run_root.exists() or list(run_root.iterdir()) == []


@pytest.mark.skipif(not IS_ROOT, reason="reading the template's memory needs root")
async def test_the_template_never_holds_a_runs_data(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, warm="python"))
    await box.start()
    try:
        secret = "argument-that-must-not-linger-" + "7f3a9c"
        result = await run(box, "import sys\nprint(len(sys.argv))", args=(secret,), stdin=secret)
        assert result.stdout == "2\n"
        template = box.warm_pid
        assert template is not None
        memory = _readable_memory(template)
    finally:
        await box.close()

    assert memory, "nothing of the template's memory could be read"
    assert secret.encode() not in memory


def _readable_memory(pid: int) -> bytes:
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(edge, 16) for edge in span.split("-"))
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except (OSError, OverflowError, ValueError):
                continue
    return b"".join(chunks)
