"""Warm Python runs (warm.py) behave as cold ones do, and hold nothing of other runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

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
import json, os, sys
print(json.dumps({
    "name": __name__,
    "file_is_absolute": __file__ == os.path.abspath("main.py"),
    "argv": sys.argv,
    "orig_argv": sys.orig_argv[1:],
    "executable": sys.executable,
    "path0_is_workdir": sys.path[0] == os.getcwd(),
    "path": sys.path[1:],
    "environ": sorted(os.environ),
    "home_is_workdir": os.environ["HOME"] == os.getcwd(),
    "flags": list(sys.flags),
    "stdout": [sys.stdout.encoding, sys.stdout.write_through],
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
