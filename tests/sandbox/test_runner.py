"""The runner against real processes and real runtimes: results, limits and hostile code."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox_mcp.config import Settings
from sandbox_mcp.errors import CodeTooLarge, ConfigurationError, InvalidFilename, UnknownLanguage
from sandbox_mcp.sandbox._libc import syscall_number
from sandbox_mcp.sandbox.runner import RunRequest, RunResult, Sandbox
from tests.support import IS_ROOT, process_exists, uid_base

pytestmark = pytest.mark.anyio

# No JVM on standby: starting one costs seconds of CPU per server; test_warm_java.py has its own.
BASE = Settings(timeout=10, max_timeout=10, cpu_seconds=20, uid_base=uid_base(1), warm_java=0)


@pytest.fixture
async def sandbox(run_root: Path) -> AsyncIterator[Sandbox]:
    box = Sandbox(replace(BASE, run_root=run_root))
    await box.start()
    yield box
    await box.close()


async def start_sandbox(run_root: Path, **changes: object) -> Sandbox:
    box = Sandbox(replace(BASE, run_root=run_root, **changes))
    await box.start()
    return box


async def run(box: Sandbox, language: str, code: str, **kwargs: object) -> RunResult:
    return await box.run(RunRequest(language=language, code=code, **kwargs))  # type: ignore[arg-type]


async def gone(path: Path, patience: float = 5.0) -> bool:
    """Whether `path` is removed within `patience` seconds."""
    for _ in range(int(patience / 0.02)):
        if not path.exists():
            return True
        await asyncio.sleep(0.02)
    return not path.exists()


def pids_in(text: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"PID (\d+)", text)]


# --- ordinary runs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "print('hello from python')"),
        ("javascript", "console.log('hello from javascript')"),
        # Long enough to be sampled: a run shorter than a few milliseconds may end before
        # the first look at its memory (see README, peak_memory_bytes).
        ("bash", "sleep 0.05; echo hello from bash"),
    ],
)
async def test_each_language_prints_hello(sandbox: Sandbox, language: str, code: str) -> None:
    result = await run(sandbox, language, code)

    assert result.stdout == f"hello from {language}\n"
    assert result.exit_code == 0
    assert result.limit is None
    assert result.signal is None
    assert result.duration_ms > 0


async def test_peak_memory_is_measured(sandbox: Sandbox) -> None:
    # Sampled: a run must live a little for its footprint to be seen (see the README).
    code = "import time\nblock = b'x' * (80 * 1024 * 1024)\ntime.sleep(0.5)"
    result = await run(sandbox, "python", code)

    assert 80 * 1024 * 1024 < result.peak_memory_bytes < 200 * 1024 * 1024


async def test_exit_code_and_stderr_are_reported(sandbox: Sandbox) -> None:
    result = await run(sandbox, "python", "import sys\nprint('out')\nsys.exit('broken: 42')")

    assert result.exit_code == 1
    assert result.stdout == "out\n"
    assert "broken: 42" in result.stderr
    assert result.limit is None


async def test_stdin_and_args_reach_the_program(sandbox: Sandbox) -> None:
    code = "import sys\nprint(sys.argv[1:])\nprint(sys.stdin.read().upper())"
    result = await run(sandbox, "python", code, stdin="line one\nline two", args=("a b", "--x"))

    assert result.stdout == "['a b', '--x']\nLINE ONE\nLINE TWO\n"


async def test_empty_stdin_reads_as_end_of_file(sandbox: Sandbox) -> None:
    result = await run(sandbox, "bash", 'read -r line; echo "status=$? line=[$line]"')

    assert result.stdout == "status=1 line=[]\n"


async def test_aliases_and_filename_are_honoured(sandbox: Sandbox) -> None:
    result = await run(sandbox, "py", "import sys; print(sys.argv[0])", filename="app.py")

    assert result.language == "python"
    assert result.filename == "app.py"
    assert result.stdout == "app.py\n"


async def test_snippet_runs_in_a_private_workdir_that_is_removed(sandbox: Sandbox) -> None:
    code = "import os, stat\nprint(os.getcwd())\nprint(oct(stat.S_IMODE(os.stat('.').st_mode)))"
    result = await run(sandbox, "python", code)

    workdir, mode = result.stdout.split()
    assert workdir.startswith(str(sandbox.settings.run_root))
    assert mode == "0o700"
    # Removed right after the answer (the supervisor reports first).
    assert await gone(Path(workdir))


@pytest.mark.skipif(not IS_ROOT, reason="pool mode needs root: this test checks per-run uids")
async def test_pool_mode_gives_each_run_a_non_root_uid(sandbox: Sandbox) -> None:
    result = await run(
        sandbox, "python", "import os; print(os.getuid(), os.getgid(), os.getgroups())"
    )

    uid, gid, groups = result.stdout.split(maxsplit=2)
    assert sandbox.identity.mode == "pool"
    assert int(uid) >= BASE.uid_base
    assert uid == gid
    assert groups.strip() == "[]"


# --- refusals ----------------------------------------------------------------------------------


async def test_unknown_language_names_the_known_ones(sandbox: Sandbox) -> None:
    with pytest.raises(UnknownLanguage, match="unknown language 'pyhton'; known: python"):
        await run(sandbox, "pyhton", "print(1)")


@pytest.mark.parametrize("filename", ["../../etc/passwd", "/etc/passwd", "a/b.py", "..", ".x", ""])
async def test_filename_escaping_the_workdir_is_refused(sandbox: Sandbox, filename: str) -> None:
    with pytest.raises(InvalidFilename):
        await run(sandbox, "python", "print(1)", filename=filename)


async def test_code_over_the_size_limit_is_refused(run_root: Path) -> None:
    box = await start_sandbox(run_root, max_code_bytes=1000)
    try:
        with pytest.raises(CodeTooLarge, match="1000 bytes"):
            await run(box, "python", "#" * 1001)
        assert (await run(box, "python", "print('still serving')")).stdout == "still serving\n"
    finally:
        await box.close()


# --- the deadline and leftovers ----------------------------------------------------------------


async def test_timeout_kills_daemonized_grandchild_that_ignores_sigterm(sandbox: Sandbox) -> None:
    code = (
        "setsid bash -c 'trap \"\" TERM HUP; echo PID $$; while :; do sleep 0.2; done' &\n"
        "( ( trap '' TERM; echo PID $BASHPID; exec sleep 1000 ) & ) \n"
        "sleep 1000\n"
    )
    started = time.monotonic()
    result = await run(sandbox, "bash", code, timeout_seconds=1.5)

    assert result.limit == "timeout"
    assert result.timed_out
    assert result.exit_code is None
    assert result.signal == "SIGKILL"
    assert time.monotonic() - started < 5
    pids = pids_in(result.stdout)
    assert len(pids) == 2
    assert not any(process_exists(pid) for pid in pids)


async def test_sigterm_ignoring_child_is_killed_at_the_deadline(sandbox: Sandbox) -> None:
    code = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('PID', os.getpid(), flush=True)\n"
        "time.sleep(1000)\n"
    )
    result = await run(sandbox, "python", code, timeout_seconds=1)

    assert result.limit == "timeout"
    assert result.stdout.startswith("PID ")  # printed before the kill, so it is in the answer
    assert not process_exists(pids_in(result.stdout)[0])


async def test_background_process_does_not_survive_a_normal_exit(sandbox: Sandbox) -> None:
    code = "sleep 1000 &\necho PID $!\nnohup sleep 1000 >/dev/null 2>&1 &\necho PID $!\nexit 0"
    result = await run(sandbox, "bash", code)

    assert result.exit_code == 0
    assert result.limit is None
    assert all(not process_exists(pid) for pid in pids_in(result.stdout))


async def test_a_run_is_either_stopped_by_its_deadline_or_ends_by_itself(
    sandbox: Sandbox,
) -> None:
    # A deadline so short that some runs end before it and some do not: never both at once.
    results = [await run(sandbox, "python", "print(1)", timeout_seconds=0.001) for _ in range(6)]

    for result in results:
        assert (result.limit == "timeout") == (result.exit_code is None), result


async def test_a_shell_child_stopped_by_the_file_size_limit_is_reported(run_root: Path) -> None:
    box = await start_sandbox(run_root, max_file_bytes=1024 * 1024)
    try:
        result = await run(box, "bash", "head -c 2000000 /dev/zero > big")
    finally:
        await box.close()

    assert result.exit_code == 128 + 25  # SIGXFSZ, as the shell reports a killed child
    assert result.limit == "file_size"


async def test_timeout_is_clamped_to_the_maximum_and_echoed(sandbox: Sandbox) -> None:
    result = await run(sandbox, "python", "print(1)", timeout_seconds=999)

    assert result.timeout_seconds == BASE.max_timeout


async def test_cancelling_the_call_kills_the_run(sandbox: Sandbox) -> None:
    seconds = f"{1000 + os.getpid() % 1000}.5"  # a command line no other test runs
    task = asyncio.ensure_future(run(sandbox, "bash", f"sleep {seconds}"))
    pids = await _wait_for_processes(f"sleep\0{seconds}\0".encode())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await asyncio.sleep(0.3)
    assert pids, "the run's sleep was not found while it ran"
    assert not any(process_exists(pid) for pid in pids)
    assert sandbox.workdirs_present() == 0


async def _wait_for_processes(cmdline: bytes, patience: float = 10.0) -> list[int]:
    # On a loaded machine a run may take a while to start: look until it shows.
    give_up = time.monotonic() + patience
    while time.monotonic() < give_up:
        found = [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and _cmdline(int(entry.name)) == cmdline
        ]
        if found:
            return found
        await asyncio.sleep(0.05)
    return []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# --- resource limits ---------------------------------------------------------------------------


async def test_fork_bomb_is_contained_and_the_sandbox_keeps_serving(sandbox: Sandbox) -> None:
    code = "import os\nwhile True:\n    os.fork()\n"
    result = await run(sandbox, "python", code, timeout_seconds=5)

    assert result.limit == "processes"
    assert (await run(sandbox, "bash", "echo alive")).stdout == "alive\n"


async def test_shell_fork_bomb_is_contained_and_named(sandbox: Sandbox) -> None:
    # The shell's forks fail and it goes on to exit 0: the answer still names the limit.
    result = await run(sandbox, "bash", ":(){ :|:& };:\nsleep 2", timeout_seconds=10)

    assert result.limit == "processes", (result.exit_code, result.stderr[-300:])
    assert (await run(sandbox, "bash", "echo alive")).stdout == "alive\n"


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))"),
        ("python", "x = bytearray(8 * 1024 ** 3)"),
        ("javascript", "const a = [];\nwhile (true) a.push(new Array(1e6).fill(1.5));"),
        (
            "javascript",
            "const chunks = [];\nwhile (true) chunks.push(Buffer.alloc(64 * 1024 * 1024, 1));",
        ),
    ],
)
async def test_memory_bomb_is_reported_as_memory(
    sandbox: Sandbox, language: str, code: str
) -> None:
    result = await run(sandbox, language, code, timeout_seconds=10)

    assert result.limit == "memory", result
    assert result.exit_code != 0


async def test_resident_memory_of_many_processes_is_capped(run_root: Path) -> None:
    box = await start_sandbox(run_root, memory_mb=256)
    try:
        hog = "python3 -c \"import time; b = b'x' * (100 * 1024 * 1024); time.sleep(30)\" &"
        result = await run(box, "bash", f"{hog}\n{hog}\n{hog}\n{hog}\nwait", timeout_seconds=10)
    finally:
        await box.close()

    assert result.limit == "memory"
    assert result.signal == "SIGKILL"
    assert result.peak_memory_bytes > 256 * 1024 * 1024


async def test_cpu_limit_stops_a_busy_loop(run_root: Path) -> None:
    box = await start_sandbox(run_root, cpu_seconds=1)
    try:
        result = await run(box, "python", "while True:\n    pass", timeout_seconds=10)
    finally:
        await box.close()

    assert result.limit == "cpu"
    assert result.signal in ("SIGXCPU", "SIGKILL")
    # The kernel checks RLIMIT_CPU on its tick, the accounting is finer: allow the slack.
    assert result.cpu_ms >= 500


async def test_file_size_limit_stops_a_large_write(run_root: Path) -> None:
    box = await start_sandbox(run_root, max_file_bytes=1024 * 1024)
    try:
        code = "with open('big', 'wb') as f:\n    f.write(b'x' * (2 * 1024 * 1024))"
        result = await run(box, "python", code)
    finally:
        await box.close()

    assert result.limit == "file_size"


async def test_open_file_limit_is_reported(run_root: Path) -> None:
    box = await start_sandbox(run_root, max_open_files=64)
    try:
        code = "files = [open('f%d' % i, 'w') for i in range(200)]"
        result = await run(box, "python", code)
    finally:
        await box.close()

    assert result.limit == "open_files"
    assert "Too many open files" in result.stderr


async def test_disk_limit_stops_a_run_filling_its_workdir(run_root: Path) -> None:
    box = await start_sandbox(run_root, max_disk_bytes=4 * 1024 * 1024)
    try:
        code = (
            "import time\n"
            "for i in range(8):\n"
            "    open('part%d' % i, 'wb').write(b'x' * (1024 * 1024))\n"
            "time.sleep(5)\n"
        )
        result = await run(box, "python", code)
    finally:
        await box.close()

    assert result.limit == "disk"


@pytest.mark.parametrize(
    "hiding",
    [
        # Past the number of entries the disk watch counts.
        "for i in range(20_001):\n    open(f'e{i}', 'w').close()",
        # In a directory the watch cannot enter.
        "os.makedirs('hidden/inner')\nos.chmod('hidden', 0)\nos.chdir('/')",
    ],
    ids=["many entries", "unreadable directory"],
)
async def test_files_hidden_from_the_disk_watch_count_as_a_full_disk(
    run_root: Path, hiding: str
) -> None:
    box = await start_sandbox(run_root, max_disk_bytes=4 * 1024 * 1024)
    try:
        code = f"import os, time\n{hiding}\ntime.sleep(5)\nprint('not stopped')"
        result = await run(box, "python", code, timeout_seconds=8)
    finally:
        await box.close()

    assert result.limit == "disk"
    assert "not stopped" not in result.stdout


async def test_a_workdir_thousands_of_levels_deep_is_removed(sandbox: Sandbox) -> None:
    code = (
        "import os\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\n"
        "open('f', 'w').write('x')\nprint('deep')"
    )
    result = await run(sandbox, "python", code)

    assert result.stdout == "deep\n"
    assert await gone(sandbox.settings.run_root / result.run_id)


async def test_a_run_that_takes_its_workdirs_rights_away_is_stopped_and_removed(
    run_root: Path,
) -> None:
    # The workdir itself made unreadable, then filled: measured as full, and removed after.
    box = await start_sandbox(run_root, max_disk_bytes=4 * 1024 * 1024)
    try:
        code = (
            "import os, time\nfiles = [open(f'f{i}', 'wb') for i in range(3)]\n"
            "os.chmod('.', 0)\nfor handle in files:\n    handle.write(os.urandom(6 << 20))\n"
            "    handle.flush()\ntime.sleep(5)\nprint('not stopped')"
        )
        result = await run(box, "python", code, timeout_seconds=8)
        gone_after = await gone(box.settings.run_root / result.run_id)
    finally:
        await box.close()

    assert result.limit == "disk", (result.limit, result.stderr)
    assert "not stopped" not in result.stdout
    assert gone_after


# --- output ------------------------------------------------------------------------------------


async def test_endless_output_flood_is_killed_and_counted(run_root: Path) -> None:
    box = await start_sandbox(run_root, max_output_bytes=2 * 1024 * 1024, output_bytes=4096)
    try:
        result = await run(box, "python", "while True:\n    print('x' * 1000)", timeout_seconds=10)
    finally:
        await box.close()

    assert result.limit == "output"
    assert result.stdout_truncated
    assert result.stdout_bytes > 2 * 1024 * 1024
    assert len(result.stdout) < 4096 + 200
    assert "bytes omitted" in result.stdout


async def test_five_megabyte_single_line_is_shortened_to_head_and_tail(sandbox: Sandbox) -> None:
    result = await run(sandbox, "python", "print('a' * 2_500_000 + 'b' * 2_500_000)")

    assert result.exit_code == 0
    assert result.stdout_bytes == 5_000_001
    assert result.stdout_truncated
    assert result.stdout.startswith("aaaa")
    assert result.stdout.rstrip().endswith("bbbb")
    assert len(result.stdout) <= sandbox.settings.output_bytes + 100


async def test_invalid_utf8_is_replaced_not_fatal(sandbox: Sandbox) -> None:
    code = "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe \\xc3 end')"
    result = await run(sandbox, "python", code)

    assert result.exit_code == 0
    assert result.stdout == "ok \ufffd\ufffd \ufffd end"


async def test_output_printed_before_a_crash_is_kept(sandbox: Sandbox) -> None:
    code = "console.log('before');\nprocess.stderr.write('err before\\n');\nprocess.abort();"
    result = await run(sandbox, "javascript", code)

    assert result.stdout == "before\n"
    assert "err before" in result.stderr
    assert result.signal == "SIGABRT"
    assert result.exit_code is None


# --- reaching beyond the run -------------------------------------------------------------------


async def test_snippet_cannot_signal_its_supervisor_the_server_or_everyone(
    sandbox: Sandbox,
) -> None:
    code = (
        "import os, signal\n"
        f"for pid in (os.getppid(), {os.getpid()}, -1):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "        print(pid, 'killed')\n"
        "    except PermissionError:\n"
        "        print(pid, 'refused')\n"
    )
    result = await run(sandbox, "python", code)

    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all(line.endswith(" refused") for line in lines), lines
    assert result.exit_code == 0


async def test_snippet_cannot_trace_or_read_the_server(sandbox: Sandbox) -> None:
    code = (
        "import ctypes, os\n"
        f"pid = {os.getpid()}\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('ptrace', libc.ptrace(16, pid, 0, 0), ctypes.get_errno())\n"
        "for name in ('environ', 'mem', 'cmdline'):\n"
        "    try:\n"
        "        open(f'/proc/{pid}/{name}', 'rb').read(64)\n"
        "        print(name, 'read')\n"
        "    except OSError as exc:\n"
        "        print(name, 'refused', exc.errno)\n"
    )
    result = await run(sandbox, "python", code)

    lines = result.stdout.splitlines()
    assert lines[0] == "ptrace -1 1"
    assert "environ refused 13" in lines
    assert "mem refused 13" in lines


async def test_snippet_cannot_read_the_servers_environment(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "hunter2")
    result = await run(sandbox, "bash", "env; cat /proc/$PPID/environ 2>&1; echo")

    assert "hunter2" not in result.stdout
    assert "SANDBOX_" not in result.stdout
    names = {line.split("=", 1)[0] for line in result.stdout.splitlines() if "=" in line}
    assert {"PATH", "HOME", "TMPDIR", "LANG"} <= names


async def test_snippet_cannot_write_outside_its_workdir(sandbox: Sandbox) -> None:
    code = (
        "for path in ('/tmp/escape', '../escape', '/dev/shm/escape'):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print(path, 'written')\n"
        "    except OSError as exc:\n"
        "        print(path, 'refused', exc.errno)\n"
        "open('/dev/null', 'w').write('fine')\n"
    )
    result = await run(sandbox, "python", code)

    assert result.exit_code == 0, result.stderr
    assert "written" not in result.stdout
    assert not Path("/tmp/escape").exists()


async def test_network_is_closed_to_snippets(sandbox: Sandbox) -> None:
    # Only socket creation is tried: nothing is sent anywhere.
    code = (
        "import socket\n"
        "for family in (socket.AF_INET, socket.AF_INET6, socket.AF_PACKET, socket.AF_NETLINK):\n"
        "    try:\n"
        "        kind = socket.SOCK_RAW if family == socket.AF_PACKET else socket.SOCK_DGRAM\n"
        "        socket.socket(family, kind)\n"
        "        print(family.name, 'opened')\n"
        "    except OSError as exc:\n"
        "        print(family.name, 'refused')\n"
        "a, b = socket.socketpair()\n"
        "a.send(b'unix ok'); print(b.recv(10).decode())\n"
    )
    result = await run(sandbox, "python", code)

    assert result.stdout.splitlines() == [
        "AF_INET refused",
        "AF_INET6 refused",
        "AF_PACKET refused",
        "AF_NETLINK refused",
        "unix ok",
    ]


async def test_concurrent_runs_get_their_own_output(sandbox: Sandbox) -> None:
    tokens = [f"token-{index}-{os.urandom(4).hex()}" for index in range(12)]
    results = await asyncio.gather(
        *(
            run(sandbox, "python", f"import time; time.sleep(0.05); print({token!r})")
            for token in tokens
        )
    )

    assert [result.stdout.strip() for result in results] == tokens
    assert len({result.run_id for result in results}) == len(tokens)


async def test_a_run_cannot_signal_a_concurrent_run(sandbox: Sandbox) -> None:
    script = f"victim{os.getpid()}.sh"  # a command line no other test runs
    victim = asyncio.ensure_future(
        run(sandbox, "bash", "sleep 3; echo survived", filename=script, timeout_seconds=15)
    )
    victim_pid = (await _wait_for_processes(f"/usr/bin/bash\0{script}\0".encode()))[0]
    attack = await run(
        sandbox,
        "python",
        f"import os\ntry:\n    os.kill({victim_pid}, 9)\n    print('killed')\n"
        "except PermissionError:\n    print('refused')",
    )
    outcome = await victim

    assert attack.stdout == "refused\n"
    assert outcome.stdout.endswith("survived\n")
    assert outcome.exit_code == 0


@pytest.mark.skipif(
    IS_ROOT,
    reason="shared mode is what a non-root server gets; scripts/test runs this pass as uid 65534",
)
async def test_shared_mode_runs_as_the_servers_own_uid(sandbox: Sandbox) -> None:
    result = await run(sandbox, "python", "import os; print(os.getuid())")

    assert sandbox.identity.mode == "shared"
    assert result.stdout == f"{os.getuid()}\n"


async def test_without_landlock_the_seccomp_filter_still_protects_the_server(
    run_root: Path,
) -> None:
    # What an older kernel gets: no Landlock domain, only the filter's protected pids.
    box = Sandbox(replace(BASE, run_root=run_root))
    box.landlock_abi = 0
    await box.start()
    try:
        code = (
            "import os, signal\n"
            f"for pid in (os.getppid(), {os.getpid()}, -{os.getpid()}, -1):\n"
            "    try:\n"
            "        os.kill(pid, signal.SIGKILL)\n"
            "        print('killed')\n"
            "    except PermissionError:\n"
            "        print('refused')\n"
        )
        result = await run(box, "python", code)
        after = await run(box, "bash", "echo alive")
    finally:
        await box.close()

    assert result.stdout.splitlines() == ["refused"] * 4
    assert after.stdout == "alive\n"


async def test_a_second_server_with_default_settings_takes_the_next_run_root(
    run_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox_mcp.sandbox import runner

    # Two MCP clients on one desktop start two servers with the same defaults.
    default = run_root / "sandbox-mcp"
    monkeypatch.setattr(runner, "DEFAULT_RUN_ROOT", default)
    first = await start_sandbox(default)
    try:
        second = await start_sandbox(default, uid_base=uid_base(6))
        try:
            result = await run(second, "bash", "pwd")
        finally:
            await second.close()
    finally:
        await first.close()

    assert first.settings.run_root == default
    assert second.settings.run_root == run_root / "sandbox-mcp-2"
    assert result.stdout.startswith(f"{run_root}/sandbox-mcp-2/")


@pytest.mark.skipif(not IS_ROOT, reason="the uid pool exists only in pool mode, which needs root")
async def test_a_second_server_with_the_default_uid_range_takes_the_next_one(
    run_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox_mcp.sandbox import runner

    # The default range, moved to this test session's own (slots 6 and 7).
    default = uid_base(6)
    monkeypatch.setattr(runner, "DEFAULT_UID_BASE", default)
    first = await start_sandbox(run_root / "first", uid_base=default)
    try:
        second = await start_sandbox(run_root / "second", uid_base=default)
        try:
            result = await run(second, "bash", "id -u")
        finally:
            await second.close()
    finally:
        await first.close()

    assert first.settings.uid_base == default
    assert second.settings.uid_base == default + BASE.uid_count
    assert second.identity.uid_base == default + BASE.uid_count
    assert default + BASE.uid_count <= int(result.stdout) < default + 2 * BASE.uid_count


@pytest.mark.skipif(not IS_ROOT, reason="the uid pool exists only in pool mode, which needs root")
async def test_a_second_server_cannot_take_the_same_uid_pool(sandbox: Sandbox) -> None:
    from sandbox_mcp.errors import ConfigurationError

    rival = Sandbox(replace(BASE, run_root=sandbox.settings.run_root.with_name("rival-root")))
    with pytest.raises(ConfigurationError, match="in use by another sandbox-mcp"):
        rival.prepare()


@pytest.mark.skipif(not IS_ROOT, reason="pool mode, and its uid locks, need root")
async def test_a_closed_server_leaves_no_uid_locks_and_its_range_can_be_claimed_again(
    run_root: Path,
) -> None:
    from sandbox_mcp.sandbox.identity import _lock_directory

    base = uid_base(5)
    ours = {f"{uid}.lock" for uid in range(base, base + BASE.uid_count)}
    box = await start_sandbox(run_root, uid_base=base)
    held = ours & set(os.listdir(_lock_directory()))
    await box.close()
    left = ours & set(os.listdir(_lock_directory()))
    again = await start_sandbox(run_root, uid_base=base)
    await again.close()

    assert held == ours
    assert left == set()


@pytest.mark.parametrize(
    ("language", "code"),
    [
        (
            "python",
            "import os\nfd = os.memfd_create('x')\nos.write(fd, b'x' * 10**7)\nprint('kept')",
        ),
        ("python", "import ctypes\nprint(ctypes.CDLL(None).shmget(0, 1 << 28, 0o1666))"),
        ("python", "import ctypes\nprint(ctypes.CDLL(None).msgget(0, 0o1666))"),
        (
            "python",
            "import ctypes\nlibc = ctypes.CDLL(None)\n"
            f"print(libc.syscall({syscall_number('add_key')}, b'user', b'k', b'v', 1, -4))",
        ),
    ],
    ids=["memfd", "sysv-shm", "sysv-msg", "keyring"],
)
async def test_memory_and_state_that_would_outlive_the_run_are_refused(
    sandbox: Sandbox, language: str, code: str
) -> None:
    result = await run(sandbox, language, code)

    assert "kept" not in result.stdout
    assert result.stdout.strip() in ("", "-1"), result.stdout
    assert result.exit_code in (0, 1)


async def test_a_run_cannot_list_or_read_other_workdirs(sandbox: Sandbox) -> None:
    victim = asyncio.ensure_future(
        run(sandbox, "bash", "echo secret > data.txt; echo $PWD; sleep 3", timeout_seconds=15)
    )
    root = sandbox.settings.run_root
    give_up = time.monotonic() + 10
    while not list(root.glob("*/data.txt")) and time.monotonic() < give_up:
        await asyncio.sleep(0.05)
    others = [path for path in root.iterdir()]
    code = (
        "import os\n"
        f"for path in ({str(root)!r}, *{[str(p) for p in others]!r}):\n"
        "    try:\n"
        "        print(path, os.listdir(path))\n"
        "    except OSError as exc:\n"
        "        print(path, 'refused', exc.errno)\n"
        f"for path in {[str(p / 'data.txt') for p in others]!r}:\n"
        "    try:\n"
        "        print(open(path).read())\n"
        "    except OSError as exc:\n"
        "        print(path, 'refused', exc.errno)\n"
    )
    attack = await run(sandbox, "python", code)
    victim_dir = (await victim).stdout.strip()

    # The attacking run may have been on standby, its workdir among those listed; other
    # runs on standby have workdirs too, without a data.txt.
    foreign = [path for path in others if path.name != attack.run_id]
    lines = attack.stdout.splitlines()
    assert victim_dir in [str(path) for path in foreign]
    assert "secret" not in attack.stdout
    for path in [root, *foreign]:
        assert f"{path} refused {errno.EACCES}" in lines
    assert f"{victim_dir}/data.txt refused {errno.EACCES}" in lines


async def test_the_rest_of_the_filesystem_stays_readable(sandbox: Sandbox) -> None:
    result = await run(
        sandbox, "bash", "head -c 4 /etc/passwd; ls /usr/bin | head -1 >/dev/null && echo ok"
    )

    assert result.stdout == "root\nok\n" or result.stdout.endswith("ok\n")
    assert result.exit_code == 0


async def test_hidden_paths_cannot_be_read_though_their_siblings_can(sandbox: Sandbox) -> None:
    secrets_dir = Path("/tmp") / f"sandbox-mcp-secrets-{os.getpid()}"
    secrets_dir.mkdir(mode=0o755, exist_ok=True)
    try:
        (secrets_dir / "token").write_text("s3cret\n")
        (secrets_dir / "public").write_text("open\n")
        for name in ("token", "public"):
            (secrets_dir / name).chmod(0o644)
        sandbox.hidden_paths = [str(secrets_dir / "token")]

        result = await run(
            sandbox, "bash", f"cat {secrets_dir}/public; cat {secrets_dir}/token || echo refused"
        )
    finally:
        for name in ("token", "public"):
            (secrets_dir / name).unlink(missing_ok=True)
        secrets_dir.rmdir()

    assert result.stdout == "open\nrefused\n"
    assert "Permission denied" in result.stderr


async def test_a_token_in_a_kubernetes_style_secret_volume_is_hidden_from_runs(
    run_root: Path,
) -> None:
    # The layout of a Kubernetes secret volume: token -> ..data/token, ..data -> ..<time>/.
    volume = Path("/tmp") / f"sandbox-mcp-token-{os.getpid()}"
    shutil.rmtree(volume, ignore_errors=True)
    (volume / "..2026_01").mkdir(parents=True)
    (volume / "..2026_01" / "token").write_text("first-token-of-sixteen\n")
    (volume / "..data").symlink_to("..2026_01")
    (volume / "token").symlink_to("..data/token")
    for path in (volume, volume / "..2026_01", volume / "..2026_01" / "token"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        box = await start_sandbox(run_root, auth_token_file=volume / "token")
        try:
            # Rotation writes the next version beside the first, after the server started.
            (volume / "..2026_02").mkdir(mode=0o755)
            (volume / "..2026_02" / "token").write_text("second-token-of-sixteen\n")
            (volume / "..2026_02" / "token").chmod(0o644)
            paths = ["token", "..data/token", "..2026_01/token", "..2026_02/token"]
            reads = " ".join(f"{volume}/{path}" for path in paths)
            result = await run(box, "bash", f"cat {reads} 2>&1")
        finally:
            await box.close()
    finally:
        shutil.rmtree(volume)

    assert "token-of-sixteen" not in result.stdout
    assert result.stdout.count("Permission denied") == 4, result.stdout


async def test_a_link_to_the_run_root_does_not_open_it(sandbox: Sandbox, run_root: Path) -> None:
    # Landlock grants what a rule's path leads to: a link beside the run root, left there by
    # anyone, must not become a rule that grants the run root itself.
    link = run_root.parent / f"sandbox-mcp-link-{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(run_root)
    try:
        result = await run(sandbox, "bash", f"ls {link}/ 2>&1; ls {run_root}/ 2>&1")
    finally:
        link.unlink()

    assert result.stdout.count("Permission denied") == 2, result.stdout


async def test_snippets_start_with_default_signal_dispositions(sandbox: Sandbox) -> None:
    # Python ignores SIGPIPE and SIGXFSZ for itself; a snippet must not inherit that.
    result = await run(
        sandbox, "bash", "yes | head -n1\necho ${PIPESTATUS[@]}\ngrep SigIgn /proc/self/status"
    )

    assert result.stdout.splitlines()[:2] == ["y", "141 0"]
    assert result.stdout.splitlines()[2].split()[1] == "0000000000000000"


async def test_file_size_limit_kills_a_native_writer_with_sigxfsz(run_root: Path) -> None:
    box = await start_sandbox(run_root, max_file_bytes=1024 * 1024)
    try:
        code = (
            '#include <stdio.h>\nint main(void) {\n    FILE *f = fopen("big", "w");\n'
            '    for (int i = 0; i < 4096; i++) fputs("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
            'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\n", f);\n'
            "    fclose(f);\n    return 0;\n}\n"
        )
        result = await run(box, "c", code.replace("4096", "40960"))
    finally:
        await box.close()

    assert result.signal == "SIGXFSZ"
    assert result.limit == "file_size"


async def test_a_build_that_floods_its_output_is_killed(run_root: Path) -> None:
    box = await start_sandbox(run_root, max_output_bytes=1024 * 1024, output_bytes=4096)
    try:
        code = (
            '#define Z "'
            + "x" * 1000
            + '"\n'
            + "#pragma message Z\n" * 4000
            + "int main(void) {}\n"
        )
        result = await run(box, "c", code, timeout_seconds=20)
    finally:
        await box.close()

    assert result.limit == "output"
    assert result.compile is not None
    assert result.exit_code is None


async def test_a_jvm_starts_dozens_of_threads_under_the_default_limits(sandbox: Sandbox) -> None:
    code = (
        "import java.util.concurrent.*;\nclass Main {\n"
        "    public static void main(String[] a) throws Exception {\n"
        "        ExecutorService pool = Executors.newFixedThreadPool(64);\n"
        "        CountDownLatch all = new CountDownLatch(64);\n"
        "        for (int i = 0; i < 64; i++) pool.submit(() -> { all.countDown();"
        " try { all.await(); } catch (InterruptedException e) {} });\n"
        "        all.await();\n        pool.shutdown();\n"
        '        System.out.println("64 threads");\n    }\n}\n'
    )
    result = await run(sandbox, "java", code, timeout_seconds=20)

    assert result.stdout == "64 threads\n", result.stderr


async def test_a_second_server_cannot_take_the_same_run_root(sandbox: Sandbox) -> None:
    # Its startup would clear the first one's live workdirs as leftovers.
    rival = Sandbox(replace(BASE, run_root=sandbox.settings.run_root, uid_base=BASE.uid_base + 64))
    with pytest.raises(ConfigurationError, match=r"run root .* is in use by another sandbox-mcp"):
        rival.prepare()


@pytest.mark.skipif(not IS_ROOT, reason="making a directory that another uid owns needs root")
async def test_a_run_root_another_user_made_is_refused(run_root: Path) -> None:
    # In /tmp, another local user could make the run root first and, as its owner, rename or
    # remove the workdirs in it.
    run_root.mkdir()
    os.chown(run_root, 65534, 65534)

    with pytest.raises(ConfigurationError, match=r"run root .* belongs to uid 65534"):
        Sandbox(replace(BASE, run_root=run_root)).prepare()


async def test_a_run_root_that_is_a_symbolic_link_is_refused(run_root: Path) -> None:
    run_root.mkdir()
    link = run_root.with_name(run_root.name + "-link")
    link.symlink_to(run_root)
    try:
        with pytest.raises(ConfigurationError, match=r"run root .* is a symbolic link"):
            Sandbox(replace(BASE, run_root=link)).prepare()
    finally:
        link.unlink()
        link.with_name(link.name + ".lock").unlink(missing_ok=True)


async def test_activity_counts_runs_in_flight_and_waiting(run_root: Path) -> None:
    box = await start_sandbox(run_root, max_concurrent_runs=2)
    try:
        calls = [asyncio.ensure_future(run(box, "bash", f"sleep 0.5; echo {n}")) for n in range(5)]
        await asyncio.sleep(0.2)
        busy = box.activity()
        results = await asyncio.gather(*calls)
        after = box.activity()
    finally:
        await box.close()

    assert (busy.in_flight, busy.queued, busy.max_concurrent) == (2, 3, 2)
    assert [result.stdout for result in results] == [f"{n}\n" for n in range(5)]
    assert (after.in_flight, after.queued, after.in_flight_high_water) == (0, 0, 2)


async def test_memory_held_by_processes_whose_main_thread_exited_counts(run_root: Path) -> None:
    # Each child ends its main thread alone (the raw exit syscall), then a thread of it fills
    # 100 MB: /proc shows such a process as a zombie with no memory, but the memory is there.
    code = (
        "import ctypes, os, threading, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        def fill():\n"
        "            time.sleep(0.3)\n"
        "            block = bytearray(100 * 1024 * 1024)\n"
        "            for at in range(0, len(block), 4096):\n"
        "                block[at] = 1\n"
        "            time.sleep(8)\n"
        "        threading.Thread(target=fill).start()\n"
        "        time.sleep(0.05)\n"
        "        ctypes.CDLL(None).syscall(60, 0)\n"
        "time.sleep(8)\n"
    )
    box = await start_sandbox(run_root, memory_mb=128)
    try:
        result = await run(box, "python", code)
    finally:
        await box.close()

    assert result.limit == "memory", result
    assert result.duration_ms < 7000
