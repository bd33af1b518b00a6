"""Sessions in the core, against real processes and runtimes: what persists, what is lost,
who may reach a session, and how sessions end."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox_mcp.config import Settings
from sandbox_mcp.errors import InvalidPath, InvalidRequest, SessionEnded, UnknownSession
from sandbox_mcp.sandbox import files
from sandbox_mcp.sandbox.languages import LANGUAGES
from sandbox_mcp.sandbox.runner import RunRequest, RunResult, Sandbox
from sandbox_mcp.sandbox.workspace import InputFile
from tests.support import IS_ROOT, process_exists, uid_base

pytestmark = pytest.mark.anyio

BASE = Settings(timeout=10, max_timeout=10, cpu_seconds=20, uid_base=uid_base(2))


@pytest.fixture
async def sandbox(run_root: Path) -> AsyncIterator[Sandbox]:
    box = Sandbox(replace(BASE, run_root=run_root))
    await box.start()
    yield box
    await box.close()


async def run(
    box: Sandbox, language: str, code: str, session: str | None = "new", **kwargs: object
) -> RunResult:
    request = RunRequest(language=language, code=code, session_id=session, **kwargs)  # type: ignore[arg-type]
    return await box.run(request)


async def gone(path: Path, patience: float = 10.0) -> bool:
    for _ in range(int(patience / 0.05)):
        if not path.exists():
            return True
        await asyncio.sleep(0.05)
    return not path.exists()


# --- what persists -----------------------------------------------------------------------------


async def test_python_variables_functions_imports_and_files_persist(sandbox: Sandbox) -> None:
    first = await run(
        sandbox,
        "python",
        "import json\ncount = 41\ndef bump():\n    global count\n    count += 1\n    return count\n"
        "open('state.txt', 'w').write('kept')\nprint('defined')",
    )
    assert (first.exit_code, first.stdout) == (0, "defined\n")
    assert first.session_id and len(first.session_id) >= 22

    second = await run(
        sandbox,
        "python",
        "print(bump(), json.dumps([1]), open('state.txt').read(), input())",
        first.session_id,
        stdin="from stdin\n",
    )
    assert second.stdout == "42 [1] kept from stdin\n"
    assert second.session_id == first.session_id
    assert not second.session_state_lost


async def test_python_exceptions_and_exit_end_the_call_not_the_session(sandbox: Sandbox) -> None:
    first = await run(sandbox, "python", "value = 7\nraise ValueError('boom')")
    assert first.exit_code == 1
    assert "Traceback" in first.stderr and "ValueError: boom" in first.stderr
    assert 'main.py", line 2' in first.stderr

    exited = await run(sandbox, "python", "import sys\nprint(value)\nsys.exit(3)", first.session_id)
    assert (exited.exit_code, exited.stdout) == (3, "7\n")
    after = await run(sandbox, "python", "print(value + 1)", first.session_id)
    assert (after.exit_code, after.stdout, after.session_state_lost) == (0, "8\n", False)


async def test_errors_in_a_session_show_the_snippets_frames_as_a_script_would(
    sandbox: Sandbox,
) -> None:
    # The driver's frames (python -c's "<string>", node's vm and [eval]) are not the code's.
    python = await run(sandbox, "python", "def f():\n    return 1 / 0\nf()")
    typo = await run(sandbox, "python", "def g(:\n    pass", python.session_id)
    javascript = await run(sandbox, "javascript", "function f() { throw new Error('boom') }\nf()")
    again = await run(sandbox, "javascript", "x y z", javascript.session_id)
    rejected = await run(
        sandbox, "javascript", "await Promise.reject(new Error('late'))", javascript.session_id
    )

    frames = [line for line in python.stderr.splitlines() if line.startswith("  File ")]
    assert [frame.split(", ")[1:] for frame in frames] == [
        ["line 3", "in <module>"],
        ["line 2", "in f"],
    ]
    assert typo.stderr.startswith('  File "') and "SyntaxError: invalid syntax" in typo.stderr
    assert "<string>" not in typo.stderr
    assert "Error: boom\n    at f (" in javascript.stderr
    for answer in (javascript, again, rejected):
        assert answer.exit_code == 1
        assert "[eval]" not in answer.stderr and "node:vm" not in answer.stderr, answer.stderr
    assert "SyntaxError: Unexpected identifier" in again.stderr
    assert "Error: late" in rejected.stderr


async def test_javascript_declarations_persist_and_calls_wait_for_their_callbacks(
    sandbox: Sandbox,
) -> None:
    first = await run(
        sandbox,
        "javascript",
        "const fs = require('fs');\nlet total = 1;\nfunction double(x) { return 2 * x; }\n"
        "fs.writeFileSync('note.txt', 'kept');\n"
        "setTimeout(() => console.log('timer of the first call'), 50);\nconsole.log('defined');",
    )
    assert (first.exit_code, first.stdout) == (0, "defined\ntimer of the first call\n")

    second = await run(
        sandbox,
        "javascript",
        "total = double(total + 20);\n"
        "console.log(total, fs.readFileSync('note.txt', 'utf8'), fs.readFileSync(0, 'utf8'));",
        first.session_id,
        stdin="in",
    )
    assert (second.exit_code, second.stdout) == (0, "42 kept in\n")

    awaited = await run(
        sandbox,
        "javascript",
        "const later = await new Promise((done) => setTimeout(() => done(total), 20));\n"
        "console.log('awaited', later); process.exitCode = 4;",
        first.session_id,
    )
    assert (awaited.exit_code, awaited.stdout) == (4, "awaited 42\n")

    exited = await run(
        sandbox, "javascript", "process.exit(5); console.log('not')", first.session_id
    )
    assert (exited.exit_code, exited.stdout, exited.session_state_lost) == (5, "", False)
    failed = await run(sandbox, "javascript", "null.x", first.session_id)
    assert failed.exit_code == 1 and "TypeError" in failed.stderr
    still = await run(sandbox, "javascript", "console.log(double(total))", first.session_id)
    assert still.stdout == "84\n"


# Each language writes f.txt in one call and prints it in the next: a program's own files
# stay in the session's workdir whatever its language (build step, runner or interpreter).
FILE_ROUND_TRIPS = {
    "python": ("open('f.txt', 'w').write('across')", "print(open('f.txt').read())"),
    "javascript": (
        "require('fs').writeFileSync('f.txt', 'across')",
        "console.log(require('fs').readFileSync('f.txt', 'utf8'))",
    ),
    "typescript": (
        "require('fs').writeFileSync('f.txt', 'across');",
        "console.log(require('fs').readFileSync('f.txt', 'utf8'));",
    ),
    "ruby": ("File.write('f.txt', 'across')", "puts File.read('f.txt')"),
    "bash": ("printf across > f.txt", "cat f.txt; echo"),
    "zsh": ("printf across > f.txt", "cat f.txt; echo"),
    "fish": ("printf across > f.txt", "cat f.txt; echo"),
    "c": (
        '#include <stdio.h>\nint main(void) { FILE *f = fopen("f.txt", "w");'
        ' fputs("across", f); return fclose(f); }',
        '#include <stdio.h>\nint main(void) { char b[16] = {0}; FILE *f = fopen("f.txt", "r");'
        " fgets(b, sizeof b, f); puts(b); return 0; }",
    ),
    "cpp": (
        '#include <fstream>\nint main() { std::ofstream("f.txt") << "across"; }',
        "#include <fstream>\n#include <iostream>\n#include <string>\n"
        'int main() { std::ifstream in("f.txt"); std::string s; in >> s;'
        ' std::cout << s << "\\n"; }',
    ),
    "go": (
        'package main\nimport "os"\nfunc main() { os.WriteFile("f.txt", []byte("across"), 0o644) }',
        'package main\nimport (\n\t"fmt"\n\t"os"\n)\n'
        'func main() { b, _ := os.ReadFile("f.txt"); fmt.Println(string(b)) }',
    ),
    "rust": (
        'fn main() { std::fs::write("f.txt", "across").unwrap(); }',
        'fn main() { println!("{}", std::fs::read_to_string("f.txt").unwrap()); }',
    ),
    "java": (
        "public class Main { public static void main(String[] a) throws Exception {"
        ' java.nio.file.Files.writeString(java.nio.file.Path.of("f.txt"), "across"); } }',
        "public class Main { public static void main(String[] a) throws Exception {"
        ' System.out.println(java.nio.file.Files.readString(java.nio.file.Path.of("f.txt"))); } }',
    ),
    "kotlin": (
        'java.io.File("f.txt").writeText("across")',
        'println(java.io.File("f.txt").readText())',
    ),
    "groovy": ("new File('f.txt').text = 'across'", "println new File('f.txt').text"),
    "scala": (
        'java.nio.file.Files.write(java.nio.file.Paths.get("f.txt"), "across".getBytes)',
        'println(new String(java.nio.file.Files.readAllBytes(java.nio.file.Paths.get("f.txt"))))',
    ),
    "clojure": ('(spit "f.txt" "across")', '(println (slurp "f.txt"))'),
}


def test_every_language_has_a_file_round_trip() -> None:
    assert sorted(FILE_ROUND_TRIPS) == sorted(language.id for language in LANGUAGES)


@pytest.mark.parametrize("language", sorted(FILE_ROUND_TRIPS))
async def test_files_persist_between_calls(run_root: Path, language: str) -> None:
    # The default limits, under which the JVM languages' compilers start.
    box = Sandbox(replace(BASE, run_root=run_root, timeout=30, max_timeout=30, cpu_seconds=30))
    await box.start()
    try:
        write, read = FILE_ROUND_TRIPS[language]
        first = await run(box, language, write)
        assert first.exit_code == 0, first.stderr or (first.compile and first.compile.stderr)
        second = await run(box, language, read, first.session_id)
        assert (second.exit_code, second.stdout) == (0, "across\n"), second.stderr or (
            second.compile and second.compile.stderr
        )
    finally:
        await box.close()


async def test_processes_a_call_starts_do_not_outlive_it(sandbox: Sandbox) -> None:
    first = await run(
        sandbox,
        "python",
        "import subprocess\nchild = subprocess.Popen(['sleep', '100'])\nprint(child.pid)",
    )
    pid = int(first.stdout)
    await asyncio.sleep(0.2)
    assert not process_exists(pid)
    second = await run(sandbox, "python", "print(child.poll() is not None)", first.session_id)
    assert second.stdout == "True\n"


# --- what is lost ------------------------------------------------------------------------------


async def test_timeout_kills_only_the_interpreter_and_the_next_call_starts_afresh(
    sandbox: Sandbox,
) -> None:
    session = await run(sandbox, "python", "x = 1\nopen('kept.txt', 'w').write('files stay')")
    other = await run(sandbox, "python", "y = 2")

    stuck = await run(sandbox, "python", "while True: pass", session.session_id, timeout_seconds=1)
    assert stuck.limit == "timeout"
    assert stuck.session_state_lost
    assert any("state" in note and "lost" in note for note in stuck.notes)

    after = await run(
        sandbox, "python", "print('x' in globals(), open('kept.txt').read())", session.session_id
    )
    assert (after.exit_code, after.stdout, after.session_state_lost) == (
        0,
        "False files stay\n",
        False,
    )
    untouched = await run(sandbox, "python", "print(y)", other.session_id)
    assert untouched.stdout == "2\n"


async def test_the_cpu_limit_counts_each_call_apart(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, cpu_seconds=1))
    await box.start()
    try:
        burn = "import time\nend = time.process_time() + 0.7\nwhile time.process_time() < end: pass"
        first = await run(box, "python", "kept = 1\n" + burn)
        second = await run(box, "python", burn, first.session_id)
        assert (first.exit_code, second.exit_code, second.limit) == (0, 0, None)

        spin = await run(box, "python", "while True: pass", first.session_id)
        assert spin.limit == "cpu"
        assert spin.session_state_lost
        again = await run(box, "python", "print('kept' in globals())", first.session_id)
        assert again.stdout == "False\n"
    finally:
        await box.close()


@pytest.mark.parametrize("language", ["bash", "python"])
async def test_a_call_that_fills_the_disk_ends_the_session(run_root: Path, language: str) -> None:
    # Each call is far shorter than the watchdog's sampling interval: only the measure at
    # the end of the call sees the workdir grow past the limit.
    box = Sandbox(replace(BASE, run_root=run_root, max_disk_bytes=4 * 1024 * 1024))
    await box.start()
    try:
        fill = {
            "bash": "head -c 1500000 /dev/zero > f$RANDOM$RANDOM; pwd",
            "python": "import os, uuid\nopen(uuid.uuid4().hex, 'wb').write(bytes(1500000))\n"
            "print(os.getcwd())",
        }[language]
        first = await run(box, language, fill)
        assert (first.exit_code, first.limit) == (0, None)
        workdir = Path(first.stdout.strip())
        results = [first]
        while results[-1].limit is None and len(results) < 6:
            results.append(await run(box, language, fill, first.session_id))
        full = results[-1]
        assert full.limit == "disk", [result.limit for result in results]
        assert full.session_state_lost
        assert any(
            f"went past the disk limit of {4 * 1024 * 1024} bytes" in note
            and "session was ended" in note
            for note in full.notes
        ), full.notes
        assert await gone(workdir)
        assert box.sessions.count() == 0
        with pytest.raises(SessionEnded, match="disk limit"):
            await run(box, language, "echo", first.session_id)
    finally:
        await box.close()


async def test_input_files_count_toward_the_session_disk_limit(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, max_disk_bytes=2 * 1024 * 1024))
    await box.start()
    try:
        big = bytes(1200 * 1024)
        first = await run(box, "python", "pass", files=(InputFile("a.bin", big),))
        assert (first.exit_code, first.limit) == (0, None)
        second = await run(
            box, "python", "pass", first.session_id, files=(InputFile("b.bin", big),)
        )
        assert second.limit == "disk"
        with pytest.raises(SessionEnded, match="disk limit"):
            await run(box, "python", "pass", first.session_id)
    finally:
        await box.close()


async def test_an_input_file_over_a_directory_is_refused_and_the_session_goes_on(
    sandbox: Sandbox,
) -> None:
    first = await run(sandbox, "python", "import os\nos.mkdir('data.txt')\nkept = 5")
    assert first.exit_code == 0
    with pytest.raises(InvalidPath, match=r"could not write data\.txt: it exists and is not a"):
        await run(
            sandbox, "python", "print(1)", first.session_id, files=(InputFile("data.txt", b"x"),)
        )
    after = await run(sandbox, "python", "print(kept)", first.session_id)
    assert (after.exit_code, after.stdout, after.session_state_lost) == (0, "5\n", False)


@pytest.mark.parametrize(
    "make", ["os.mkdir('main.py')", "os.mkfifo('main.py')", "os.symlink('/etc/passwd', 'main.py')"]
)
async def test_a_main_file_taken_by_a_non_regular_file_is_refused(
    sandbox: Sandbox, make: str
) -> None:
    # The call's own main file is main.py: the code removes it, then puts something there.
    first = await run(sandbox, "python", f"import os\nos.unlink('main.py')\n{make}\nkept = 6")
    assert first.exit_code == 0, first.stderr
    with pytest.raises(InvalidPath, match=r"could not write main\.py: it exists and is not a"):
        await run(sandbox, "python", "print(1)", first.session_id)
    other = await run(sandbox, "python", "print(kept)", first.session_id, filename="other.py")
    assert (other.exit_code, other.stdout, other.session_state_lost) == (0, "6\n", False)


# --- how sessions end --------------------------------------------------------------------------


async def test_reset_removes_state_files_and_the_id(sandbox: Sandbox) -> None:
    first = await run(
        sandbox, "python", "import os\nopen('f', 'w').write('x')\nprint(os.getcwd(), os.getpid())"
    )
    workdir, interpreter = Path(first.stdout.split()[0]), int(first.stdout.split()[1])
    assert workdir.parent == sandbox.settings.run_root
    assert process_exists(interpreter)  # the session's interpreter, waiting for its next call

    ended = await sandbox.sessions.reset("", first.session_id)
    assert ended == [first.session_id]
    assert await gone(workdir)
    assert not process_exists(interpreter)
    with pytest.raises(SessionEnded, match="reset"):
        await run(sandbox, "python", "print(1)", first.session_id)


async def test_reset_by_language_and_all_touch_only_the_callers_sessions(sandbox: Sandbox) -> None:
    python = await run(sandbox, "python", "a = 1", owner="me")
    javascript = await run(sandbox, "javascript", "var a = 1", owner="me")
    theirs = await run(sandbox, "python", "a = 2", owner="them")

    assert await sandbox.sessions.reset("me", language="py") == [python.session_id]
    assert await sandbox.sessions.reset("me", "all") == [javascript.session_id]
    kept = await run(sandbox, "python", "print(a)", theirs.session_id, owner="them")
    assert kept.stdout == "2\n"


async def test_an_idle_session_expires(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, session_idle_seconds=0.5))
    await box.start()
    try:
        first = await run(box, "bash", "pwd; touch f")
        workdir = Path(first.stdout.strip())
        assert await gone(workdir)
        assert box.sessions.count() == 0
        with pytest.raises(SessionEnded, match=r"unused for more than 0\.5 s"):
            await run(box, "bash", "ls", first.session_id)
    finally:
        await box.close()


async def test_the_least_recently_used_session_makes_room(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, max_sessions=4))
    await box.start()
    try:
        oldest = await run(box, "python", "a = 1")
        newer = await run(box, "python", "b = 2")
        await run(box, "python", "print(a)", oldest.session_id)  # now newer is the idlest
        # A caller holds at most half of the sessions: its own idlest one makes room.
        third = await run(box, "python", "c = 3")

        assert any("at most 2 sessions" in note and "your session" in note for note in third.notes)
        assert box.sessions.count() == 2
        with pytest.raises(SessionEnded, match="evicted"):
            await run(box, "python", "print(b)", newer.session_id)
        assert (await run(box, "python", "print(a)", oldest.session_id)).stdout == "1\n"

        # Below its share, a caller at the sandbox's cap ends the idlest session of anyone.
        for code in ("d = 4", "e = 5"):
            assert not (await run(box, "python", code, owner="bob")).notes
        foreign = await run(box, "python", "f = 6", owner="carol")
        assert any("another caller's session" in note for note in foreign.notes)
        assert box.sessions.count() == 4
    finally:
        await box.close()


async def test_the_call_after_a_cancelled_one_says_the_state_was_lost(sandbox: Sandbox) -> None:
    opened = await run(sandbox, "python", "keep = 1")
    call = asyncio.ensure_future(
        run(sandbox, "python", "import time\ntime.sleep(20)", opened.session_id)
    )
    await asyncio.sleep(2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    after = await run(sandbox, "python", "print('keep' in globals())\nnow = 2", opened.session_id)
    later = await run(sandbox, "python", "print(now)", opened.session_id)

    assert after.stdout == "False\n"
    assert after.session_state_lost is True
    assert [note for note in after.notes if "interpreter" in note] == [
        "an earlier call of this session was cancelled, which stopped its interpreter: this "
        "call ran in a fresh one, without the earlier state"
    ]
    # That call's own state stays: its answer must not say it was lost too.
    assert (later.stdout, later.session_state_lost, later.notes) == ("2\n", False, ())


# --- who may reach a session -------------------------------------------------------------------


async def test_a_foreign_id_is_answered_as_an_unknown_one(sandbox: Sandbox) -> None:
    mine = await run(sandbox, "python", "secret = 1", owner="alice")
    assert mine.session_id is not None

    with pytest.raises(UnknownSession) as foreign:
        await run(sandbox, "python", "print(secret)", mine.session_id, owner="mallory")
    with pytest.raises(UnknownSession) as unknown:
        await run(sandbox, "python", "print(1)", "no-such-session", owner="mallory")
    assert str(foreign.value).replace(mine.session_id, "ID") == str(unknown.value).replace(
        "no-such-session", "ID"
    )
    assert type(foreign.value) is type(unknown.value)
    with pytest.raises(UnknownSession):
        await sandbox.sessions.reset("mallory", mine.session_id)
    with pytest.raises(UnknownSession):
        await sandbox.sessions.read_file("mallory", mine.session_id, "main.py")
    assert await sandbox.sessions.reset("mallory", "all") == []


async def test_a_session_keeps_its_language(sandbox: Sandbox) -> None:
    first = await run(sandbox, "python", "a = 1")
    with pytest.raises(InvalidRequest, match="runs python"):
        await run(sandbox, "bash", "echo", first.session_id)


@pytest.mark.parametrize("attacker_session", ["new", None], ids=["session", "fresh-run"])
async def test_a_session_cannot_be_read_or_signalled_from_another_run(
    sandbox: Sandbox, attacker_session: str | None
) -> None:
    victim = await run(
        sandbox,
        "python",
        "import os\nopen('secret.txt', 'w').write('s3cr3t')\n"
        "print(os.getcwd(), os.getuid(), os.getpid())",
    )
    workdir, victim_uid, victim_pid = victim.stdout.split()
    attacker = await run(
        sandbox,
        "python",
        "import os, sys\n"
        f"for attempt in (lambda: open({workdir!r} + '/secret.txt').read(),"
        f" lambda: os.listdir({workdir!r}), lambda: os.kill({victim_pid}, 9)):\n"
        "    try:\n        print('got', attempt())\n"
        "    except OSError as e:\n        print('refused', type(e).__name__)\n"
        "print(os.getuid())",
        attacker_session,
    )
    lines = attacker.stdout.splitlines()
    assert lines[:3] == ["refused PermissionError"] * 2 + [lines[2]], attacker.stdout
    if IS_ROOT or sandbox.landlock_abi >= 6:
        # Shared mode: signals between runs of one uid are scoped by Landlock ABI 6 only.
        assert lines[2].startswith("refused")
    if IS_ROOT:
        assert lines[3] != victim_uid
    after = await run(sandbox, "python", "print(open('secret.txt').read())", victim.session_id)
    assert (after.stdout, after.session_state_lost) == ("s3cr3t\n", False)


async def test_session_files_are_read_by_relative_path_only(sandbox: Sandbox) -> None:
    first = await run(
        sandbox,
        "python",
        "import os\nos.makedirs('out/deep')\nopen('out/deep/r.txt', 'w').write('result')\n"
        "os.symlink('/etc/passwd', 'link')\nos.mkfifo('fifo')",
    )
    assert first.exit_code == 0, first.stderr
    read = sandbox.sessions.read_file
    assert await read("", first.session_id, "out/deep/r.txt") == b"result"
    for bad in ("../x", "/etc/passwd", "link", "fifo", "out", "missing", "out/../link"):
        with pytest.raises(InvalidRequest):
            await read("", first.session_id, bad)


async def test_sessions_leave_nothing_behind_when_the_sandbox_closes(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root))
    await box.start()
    first = await run(box, "javascript", "console.log(process.pid)")
    await box.close()
    assert not process_exists(int(first.stdout))
    assert not run_root.exists()  # empty, so the sandbox removed it


def test_the_uid_pool_must_leave_room_for_runs(run_root: Path) -> None:
    if not IS_ROOT:
        pytest.skip("pool mode only: in shared mode sessions hold no uids")
    box = Sandbox(replace(BASE, run_root=run_root, uid_count=20, max_sessions=16))
    with pytest.raises(Exception, match="SANDBOX_UID_COUNT 20 is too small"):
        box.prepare()


async def test_an_output_flood_or_a_memory_bomb_loses_the_state_but_not_the_files(
    run_root: Path,
) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, max_output_bytes=1_000_000, memory_mb=200))
    await box.start()
    try:
        python = await run(box, "python", "kept = 1\nopen('f', 'w').write('x')")
        flood = await run(box, "python", "while True: print('y' * 1000)", python.session_id)
        assert (flood.limit, flood.session_state_lost) == ("output", True)
        after = await run(
            box, "python", "print('kept' in globals(), open('f').read())", python.session_id
        )
        assert (after.stdout, after.session_state_lost) == ("False x\n", False)

        node = await run(box, "javascript", "var kept = 1; require('fs').writeFileSync('f', 'x')")
        bomb = await run(
            box,
            "javascript",
            "const a = []; while (true) a.push(new Array(1e6).fill(1))",
            node.session_id,
        )
        assert (bomb.limit, bomb.session_state_lost) == ("memory", True)
        after = await run(
            box,
            "javascript",
            "console.log(typeof kept, require('fs').readFileSync('f', 'utf8'))",
            node.session_id,
        )
        assert (after.stdout, after.session_state_lost) == ("undefined x\n", False)
    finally:
        await box.close()


async def test_a_reply_forged_by_the_code_ends_only_that_call(sandbox: Sandbox) -> None:
    # The driver's reply descriptor is its last argument.
    forge = (
        "import os\nreplies = int(open('/proc/self/cmdline').read().split('\\0')[-2])\n"
        "open('f', 'w')\nos.write(replies, b'x' * 10000)\nimport time\ntime.sleep(5)"
    )
    first = await run(sandbox, "python", forge)
    assert first.session_state_lost
    assert first.exit_code is None
    second = await run(sandbox, "python", "import os\nprint(os.path.exists('f'))", first.session_id)
    assert (second.exit_code, second.stdout) == (0, "True\n")


async def test_each_call_gets_its_own_arguments(sandbox: Sandbox) -> None:
    python = await run(sandbox, "python", "import sys\nprint(sys.argv)", args=("a", "b c"))
    assert python.stdout == "['main.py', 'a', 'b c']\n"
    again = await run(sandbox, "python", "print(sys.argv)", python.session_id, args=("d",))
    assert again.stdout == "['main.py', 'd']\n"
    node = await run(sandbox, "javascript", "console.log(process.argv.slice(2))", args=("x",))
    assert node.stdout == "[ 'x' ]\n"


# A POSIX timer of the code's own that sends SIGCONT 0.5 s after the call, when the
# interpreter is stopped, and a thread that, whenever the interpreter runs, counts in a file:
# what a session must not do between calls. (A SIGCONT the process ignores, as by default,
# re-arms the timer no more on recent kernels: one is all it takes.)
WAKE_ITSELF = """
import ctypes, signal, threading, time
libc = ctypes.CDLL(None, use_errno=True)

class sigevent(ctypes.Structure):
    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int),
                ("pad", ctypes.c_int * 12)]

class timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]

class itimerspec(ctypes.Structure):
    _fields_ = [("interval", timespec), ("value", timespec)]

timer = ctypes.c_void_p()
event = sigevent(None, signal.SIGCONT, 0)
assert libc.timer_create(1, ctypes.byref(event), ctypes.byref(timer)) == 0
later = itimerspec(timespec(0, 100_000_000), timespec(0, 500_000_000))
assert libc.timer_settime(timer, 0, ctypes.byref(later), None) == 0

def count():
    while True:
        with open("ticks", "a") as ticks:
            ticks.write(".")
        time.sleep(0.005)

threading.Thread(target=count, daemon=True).start()
"""


async def test_an_interpreter_that_resumes_itself_between_calls_is_killed(
    sandbox: Sandbox,
) -> None:
    armed = await run(sandbox, "python", WAKE_ITSELF)
    assert (armed.exit_code, armed.session_state_lost) == (0, False), armed.stderr
    await asyncio.sleep(2)
    after = await run(sandbox, "python", "print(len(open('ticks').read()))", armed.session_id)
    await asyncio.sleep(1)
    later = await run(sandbox, "python", "print(len(open('ticks').read()))", armed.session_id)

    # Left running, the thread would have counted about 400 more in those 2 s.
    assert int(after.stdout) < 150, after.stdout
    assert after.session_state_lost is True
    assert any("ran between calls" in note for note in after.notes), after.notes
    # The fresh interpreter has no timer: nothing counts between these calls.
    assert later.stdout == after.stdout and later.session_state_lost is False


async def test_a_request_the_driver_does_not_take_ends_the_call_at_its_deadline(
    sandbox: Sandbox,
) -> None:
    # The code forges the driver's reply and goes on sleeping: the driver never reads the next
    # request, which is larger than a pipe holds.
    forge = (
        "import os, threading, time\n"
        "replies = int(open('/proc/self/cmdline').read().split('\\0')[-2])\n"
        "os.write(replies, b'{\"exit\": 0}\\n')\ntime.sleep(1000)"
    )
    first = await run(sandbox, "python", forge, timeout_seconds=5)
    second = await run(
        sandbox,
        "python",
        "print('ran')",
        first.session_id,
        args=("\x01" * 12000,),
        timeout_seconds=2,
    )
    third = await run(sandbox, "python", "print('fresh')", first.session_id)

    assert first.exit_code == 0
    assert (second.limit, second.session_state_lost) == ("timeout", True)
    assert second.duration_ms < 10_000
    assert third.stdout == "fresh\n"


async def test_large_arguments_are_carried_or_refused_without_ending_the_session(
    sandbox: Sandbox,
) -> None:
    opened = await run(sandbox, "python", "kept = 1")
    wide = await run(
        sandbox,
        "python",
        "import sys\nprint(len(sys.argv[1]), kept)",
        opened.session_id,
        args=("中文" * 10000,),
    )
    with pytest.raises(InvalidRequest, match="nothing ran and the session goes on"):
        await run(sandbox, "python", "print(kept)", opened.session_id, args=("\x01" * 60000,))
    after = await run(sandbox, "python", "print(kept)", opened.session_id)

    assert wide.stdout == "20000 1\n"
    assert after.stdout == "1\n"


async def test_a_session_whose_sandbox_fails_mid_call_says_its_state_is_lost(
    sandbox: Sandbox,
) -> None:
    opened = await run(sandbox, "python", "import os\nkept = 1\nprint(os.getppid())")
    supervisor = int(opened.stdout)
    call = asyncio.ensure_future(
        run(sandbox, "python", "import time\ntime.sleep(8)", opened.session_id)
    )
    await asyncio.sleep(1.5)
    os.kill(supervisor, signal.SIGKILL)
    failed = await call

    assert failed.session_state_lost is True
    assert any("the session has ended" in note for note in failed.notes), failed.notes
    with pytest.raises(SessionEnded):
        await run(sandbox, "python", "print(kept)", opened.session_id)
    # The known shortcoming (README, "Sessions"): the dead supervisor's workdir stays until the
    # next start clears the run root, which is what this does.
    for left in sandbox.settings.run_root.iterdir():
        files.remove_tree(str(left))


async def test_a_directory_where_the_sessions_stdin_goes_does_not_block_later_calls(
    sandbox: Sandbox,
) -> None:
    blocked = await run(sandbox, "python", "import os\nos.makedirs('.session-stdin/deep')\nx = 1")
    after = await run(sandbox, "python", "print(x)", blocked.session_id, stdin="ignored")

    assert (after.exit_code, after.stdout, after.session_state_lost) == (0, "1\n", False)


async def test_processes_forked_as_a_call_ends_do_not_run_between_calls(sandbox: Sandbox) -> None:
    # Threads fork without pause while the call returns: a child forked after the supervisor
    # listed the strays, before the interpreter stopped, would live on between calls.
    code = (
        "import os, threading, time\n"
        "go = threading.Event()\n"
        "def spawn():\n"
        "    go.wait()\n"
        "    while True:\n"
        "        try:\n"
        "            if os.fork() == 0:\n"
        "                time.sleep(1.0)\n"
        "                open(f'beat-{os.getpid()}', 'w').close()\n"
        "                time.sleep(60)\n"
        "                os._exit(0)\n"
        "        except OSError:\n"
        "            time.sleep(0.01)\n"
        "        try:\n"
        "            os.waitpid(-1, os.WNOHANG)\n"
        "        except ChildProcessError:\n"
        "            pass\n"
        # All threads first: once forking fills the process limit, no thread could start.
        "for _ in range(4):\n"
        "    threading.Thread(target=spawn, daemon=True).start()\n"
        "go.set()\n"
        "time.sleep(0.2)\n"
    )
    spawned = await run(sandbox, "python", code)
    await asyncio.sleep(3)
    after = await run(
        sandbox, "python", "import glob\nprint(len(glob.glob('beat-*')))", spawned.session_id
    )

    assert spawned.exit_code == 0, spawned.stderr
    # A child lives 1 s before it writes: none forked during the call may live that long.
    assert after.stdout == "0\n", after


async def test_a_child_whose_main_thread_exited_does_not_run_between_calls(
    sandbox: Sandbox,
) -> None:
    # The raw exit syscall ends the main thread alone: the kernel shows the process as a
    # zombie, and its memory as none, while its other thread goes on counting.
    code = (
        "import ctypes, os, threading, time\n"
        "if os.fork() == 0:\n"
        "    def count():\n"
        "        while True:\n"
        "            open('marks', 'a').write('.')\n"
        "            time.sleep(0.01)\n"
        "    threading.Thread(target=count).start()\n"
        "    time.sleep(0.05)\n"
        "    ctypes.CDLL(None).syscall(60, 0)\n"
        "time.sleep(0.3)\n"
    )
    counted = "import os\nprint(os.path.getsize('marks'))"
    started = await run(sandbox, "python", code)
    first = await run(sandbox, "python", counted, started.session_id)
    await asyncio.sleep(1.5)
    second = await run(sandbox, "python", counted, started.session_id)

    assert started.exit_code == 0
    assert first.stdout == second.stdout, (first.stdout, second.stdout)
