"""Warm JavaScript runs (warm_node.py): node started before the call ends as a cold one does,
is confined as a cold one is, and leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox_mcp.sandbox.runner import STANDBY_RUNS, RunRequest, RunResult, Sandbox
from sandbox_mcp.sandbox.workspace import InputFile
from tests.sandbox.test_runner import BASE
from tests.sandbox.test_warm import Ending
from tests.support import IS_ROOT, process_exists

pytestmark = pytest.mark.anyio

# Programs whose warm and cold answers (stdout, stderr, exit code) must be equal: how a program
# sees it was started, how it ends, its stdin.
PROGRAMS: dict[str, str] = {
    "hello": "console.log('hello')",
    "argv": "console.log(JSON.stringify(process.argv.slice(2)))",
    "process.argv": "console.log(process.argv.length, process.argv[1] === __filename)",
    "require of a second file": "const helper = require('./helper');\nconsole.log(helper(2))",
    "require.main is the module": (
        "console.log(require.main === module, module.id, !!module.parent)"
    ),
    "__filename and __dirname": "console.log(__filename, __dirname === process.cwd())",
    "entry point as seen from a module": (
        "require('fs').writeFileSync('seen.js', 'module.exports = require.main.filename');\n"
        "console.log(require('./seen'), process.mainModule === module)"
    ),
    "stdin read whole": "console.log(require('fs').readFileSync(0, 'utf8').toUpperCase())",
    "stdin read by name": "console.log(require('fs').readFileSync('/dev/stdin', 'utf8'))",
    "stdin as a stream": (
        "let text = '';\nprocess.stdin.on('data', (chunk) => { text += chunk; });\n"
        "process.stdin.on('end', () => console.log('read', text.length));"
    ),
    "stdin is a file": (
        "const stat = require('fs').fstatSync(0);\n"
        "console.log(stat.isFile(), stat.size, process.stdin.constructor.name)"
    ),
    "process.exit(3)": "console.log('before');\nprocess.exit(3);\nconsole.log('after')",
    "exit code set": "process.exitCode = 4;\nconsole.log('set')",
    "throw": "function f() { throw new Error('boom'); }\nf();",
    "throw a string": "throw 'plain';",
    "syntax error": "console.log('unclosed'",
    "unhandled rejection": "Promise.reject(new Error('nobody caught me'));",
    "setTimeout output at exit": (
        "setTimeout(() => console.log('later'), 50);\n"
        "process.on('exit', (code) => console.log('exit', code));\nconsole.log('now')"
    ),
    "large output": "process.stdout.write('x'.repeat(200000) + '\\n');\nconsole.error('e')",
    "execArgv": "console.log(JSON.stringify(process.execArgv.map((a) => a.split('=')[0])))",
    "module cache": "console.log(Object.keys(require.cache).length)",
    "environment": "console.log(JSON.stringify(Object.keys(process.env).sort()))",
    "descriptors": "console.log(require('fs').openSync('/dev/null', 'r'))",
    "deep recursion": (
        "let depth = 0;\nfunction f() { depth++; f(); }\n"
        "try { f(); } catch (e) { console.log(e.constructor.name, depth > 1000); }"
    ),
    "child by fork": (
        "const { fork } = require('child_process');\n"
        "if (process.argv[2] === 'child') { console.log('child', process.execArgv.length); }\n"
        "else { fork(__filename, ['child']).on('exit', (code) => console.log('forked', code)); }"
    ),
    "worker thread": (
        "const { Worker } = require('worker_threads');\n"
        "new Worker('require(\"worker_threads\").parentPort.postMessage(42)', { eval: true })\n"
        "  .on('message', (m) => console.log('worker', m));"
    ),
    "ES module": (
        "import { readFileSync } from 'fs';\n"
        "console.log(import.meta.url.endsWith('/main.mjs'), process.argv.length);\n"
        "await new Promise((resolve) => setTimeout(resolve, 10));\nthrow new Error('esm');"
    ),
}
FILES = {
    "require of a second file": (InputFile("helper.js", b"module.exports = (n) => n * 21;\n"),)
}
ARGS = {"argv": ("one", "two words"), "process.argv": ("x",), "child by fork": ()}
STDIN = "line one\nline two\n" * 300


async def wait_for_standby(box: Sandbox, count: int = 1) -> None:
    for _ in range(400):
        if box.standby_ready >= count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError("no JavaScript run came on standby within 10 s")


async def run_js(box: Sandbox, name: str, code: str) -> RunResult:
    request = RunRequest(
        language="javascript",
        code=code,
        stdin=STDIN,
        args=ARGS.get(name, ()),
        files=FILES.get(name, ()),
    )
    return await box.run(request)


async def test_programs_end_warm_as_they_do_cold(run_root: Path) -> None:
    seen: dict[str, dict[str, Ending]] = {}
    for mode in ("javascript", "off"):
        box = Sandbox(replace(BASE, run_root=run_root, warm=mode))
        await box.start()
        try:
            seen[mode] = {}
            for name, code in PROGRAMS.items():
                if mode == "javascript":
                    # Each warm run is one that waited on standby.
                    await wait_for_standby(box)
                seen[mode][name] = Ending.of(await run_js(box, name, code), run_root)
        finally:
            await box.close()

    warm, cold = seen["javascript"], seen["off"]
    differing = [
        f"{name}:\n  warm {warm[name]}\n  cold {cold[name]}"
        for name in PROGRAMS
        if warm[name] != cold[name]
    ]
    assert not differing, "\n".join(differing)
    # The cold runs end as the cases expect, so that each tests what it was written for.
    assert cold["hello"].stdout == "hello\n"
    assert cold["argv"].stdout == '["one","two words"]\n'
    assert cold["require of a second file"].stdout == "42\n"
    assert cold["require.main is the module"].stdout == "true . false\n"
    assert cold["process.exit(3)"] == Ending("before\n", "", 3, None)
    assert cold["throw"].exit_code == 1 and "Error: boom" in cold["throw"].stderr
    assert "run_main_module" in cold["throw"].stderr
    assert cold["unhandled rejection"].exit_code == 1
    assert "nobody caught me" in cold["unhandled rejection"].stderr
    assert cold["setTimeout output at exit"].stdout == "now\nlater\nexit 0\n"
    assert cold["stdin read whole"].stdout == STDIN.upper() + "\n"
    assert cold["stdin is a file"].stdout == f"true {len(STDIN)} ReadStream\n"
    assert cold["child by fork"].stdout == "child 2\nforked 0\n"
    assert cold["worker thread"].stdout == "worker 42\n"
    assert cold["ES module"].exit_code == 1 and "Error: esm" in cold["ES module"].stderr
    assert cold["large output"].stdout.startswith("x" * 1000)


async def test_a_run_on_standby_takes_its_calls_file_stdin_and_deadline(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, warm="javascript"))
    await box.start()
    try:
        await wait_for_standby(box)
        given = await box.run(
            RunRequest(
                language="javascript",
                code=(
                    "const data = require('fs').readFileSync(0, 'latin1');\n"
                    "console.log(process.argv.slice(2), data.length, data === 'x'.repeat(3 << 20))"
                ),
                args=("a", "b c"),
                stdin="x" * (3 << 20),
                filename="tool.cjs",
            )
        )
        await wait_for_standby(box)
        # The deadline counts from the call, not from when node was started.
        await asyncio.sleep(1.2)
        slow = await box.run(
            RunRequest(language="javascript", code="while (true) {}", timeout_seconds=1)
        )
        await wait_for_standby(box)
        bomb = await box.run(
            RunRequest(
                language="javascript",
                code="const kept = [];\nwhile (true) kept.push(Buffer.alloc(1 << 20, 1));",
            )
        )
    finally:
        await box.close()

    assert given.stdout == f"[ 'a', 'b c' ] {3 << 20} true\n", given.stderr[-500:]
    assert given.filename == "tool.cjs"
    assert slow.limit == "timeout"
    assert slow.duration_ms >= 900
    assert bomb.limit == "memory", bomb.stderr[-500:]


# What a run can see of its confinement; a run from standby must see what a cold one does.
CONFINEMENT = """
const fs = require('fs'), path = require('path');
const status = fs.readFileSync('/proc/self/status', 'utf8');
const field = (name) => status.match(new RegExp('^' + name + ':\\\\s*(.*)$', 'm'))[1];
const attempt = (f) => { try { f(); return 'allowed'; } catch (e) { return e.code; } };
console.log(JSON.stringify({
  uid: process.getuid(),
  gid: process.getgid(),
  groups: process.getgroups(),
  seccomp: field('Seccomp'),
  noNewPrivs: field('NoNewPrivs'),
  capabilities: field('CapEff'),
  runRoot: attempt(() => fs.readdirSync(path.dirname(process.cwd()))),
  otherWorkdir: attempt(() => fs.readdirSync(process.argv[2])),
  writeOutside: attempt(() => fs.writeFileSync('/tmp/escaped-' + process.pid, 'x')),
  writeHere: attempt(() => fs.writeFileSync('here.txt', 'x')),
  limits: fs.readFileSync('/proc/self/limits', 'utf8').split('\\n')
    .filter((line) => /open files|processes|file size|cpu time/i.test(line)),
  sessionLeader: fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[3]
    === String(process.pid),
}));
"""


async def test_a_run_from_standby_is_confined_as_a_cold_one(run_root: Path) -> None:
    seen = {}
    # Python runs on standby in both: their workdirs are other runs' that exist meanwhile.
    for mode in ("python,javascript", "python"):
        box = Sandbox(replace(BASE, run_root=run_root, warm=mode))
        await box.start()
        try:
            await wait_for_standby(box, STANDBY_RUNS * len(box.warm_languages))
            other = run_root / box._standby["python"][0].spec.run_id
            result = await box.run(
                RunRequest(language="javascript", code=CONFINEMENT, args=(str(other),))
            )
        finally:
            await box.close()
        assert result.exit_code == 0, result.stderr
        seen[mode] = json.loads(result.stdout)

    warm, cold = seen["python,javascript"], seen["python"]
    # The uid differs from run to run in pool mode; each run has only its own group.
    for seen_by in (warm, cold):
        uid = seen_by.pop("uid")
        assert seen_by.pop("gid") == uid
        assert set(seen_by.pop("groups")) <= {uid}
    if not IS_ROOT:
        # In shared mode the process limit counts the tasks the shared uid has when the run
        # starts (supervisor.py), which differ from run to run.
        for limits in (warm["limits"], cold["limits"]):
            limits[:] = [line for line in limits if "processes" not in line]
    assert warm == cold
    assert warm["runRoot"] == "EACCES"
    assert warm["otherWorkdir"] == "EACCES"
    assert warm["writeOutside"] == "EACCES"
    assert warm["writeHere"] == "allowed"
    assert warm["noNewPrivs"] == "1"
    assert warm["capabilities"] == "0000000000000000"
    assert warm["sessionLeader"] is True


async def test_a_run_from_standby_has_its_own_uid_in_pool_mode(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, warm="javascript"))
    await box.start()
    try:
        await wait_for_standby(box)
        result = await box.run(
            RunRequest(language="javascript", code="console.log(process.getuid())")
        )
    finally:
        await box.close()

    uid = int(result.stdout)
    if IS_ROOT:
        assert BASE.uid_base <= uid < BASE.uid_base + BASE.uid_count
    else:
        assert uid == os.getuid()


async def test_nothing_of_a_warm_run_outlives_its_answer(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, warm="javascript"))
    await box.start()
    try:
        await wait_for_standby(box)
        result = await box.run(
            RunRequest(
                language="javascript",
                code=(
                    "const { spawn } = require('child_process');\n"
                    "const child = spawn('/bin/sleep', ['60'],\n"
                    "  { detached: true, stdio: 'ignore' });\n"
                    "child.unref();\nconsole.log(child.pid);"
                ),
            )
        )
        assert result.exit_code == 0, result.stderr
        assert not process_exists(int(result.stdout))
    finally:
        await box.close()


def _nodes_on_standby(run_root: Path) -> list[int]:
    """Processes whose working directory is under `run_root`: the runs' and nothing else."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/cwd").startswith(f"{run_root}/"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


async def test_runs_on_standby_are_ended_and_removed_with_the_server(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, warm="python,javascript"))
    await box.start()
    await wait_for_standby(box, 2 * STANDBY_RUNS)
    waiting = list(run_root.iterdir())
    processes = _nodes_on_standby(run_root)
    await box.close()

    assert len(waiting) == 2 * STANDBY_RUNS, "each run on standby has its workdir"
    assert processes, "the runs on standby have processes in their workdirs"
    assert [pid for pid in processes if process_exists(pid)] == []
    assert not run_root.exists() or list(run_root.iterdir()) == []


async def test_a_cold_call_is_not_kept_waiting_by_runs_on_standby(run_root: Path) -> None:
    # Standby runs never take the last uids: with a pool just large enough, every slot still
    # gets a uid, and JavaScript calls beyond the runs on standby run cold.
    settings = replace(BASE, run_root=run_root, warm="javascript", max_concurrent_runs=2)
    box = Sandbox(settings)
    await box.start()
    try:
        await wait_for_standby(box)
        results = await asyncio.gather(
            *(
                box.run(RunRequest(language="javascript", code=f"console.log({n})"))
                for n in range(6)
            )
        )
    finally:
        await box.close()

    assert [result.stdout for result in results] == [f"{n}\n" for n in range(6)]


@pytest.fixture
async def javascript_box(run_root: Path) -> AsyncIterator[Sandbox]:
    box = Sandbox(replace(BASE, run_root=run_root, warm="javascript"))
    await box.start()
    yield box
    await box.close()


async def test_calls_of_another_language_leave_the_runs_on_standby_alone(
    javascript_box: Sandbox,
) -> None:
    # Python runs are not warm here: their calls never touch the JavaScript runs on standby.
    await wait_for_standby(javascript_box, STANDBY_RUNS)
    result = await javascript_box.run(RunRequest(language="python", code="print('cold')"))

    assert result.stdout == "cold\n"
    assert javascript_box.standby_ready == STANDBY_RUNS
    assert javascript_box.warm_languages == ("javascript",)
