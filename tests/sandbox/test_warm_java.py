"""Warm Java runs (warm_java.py) answer as cold ones do, confined as cold ones are."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox_mcp.sandbox import warm_java
from sandbox_mcp.sandbox.runner import RunRequest, RunResult, Sandbox, _java_standby_runs
from sandbox_mcp.sandbox.workspace import InputFile
from tests.sandbox.test_runner import BASE
from tests.support import uid_base

pytestmark = pytest.mark.anyio

# Its own uid range: a warm and a cold server run side by side.
WARM = replace(BASE, uid_base=uid_base(6), warm_java=1)
COLD = replace(BASE, uid_base=uid_base(7), warm_java=0)

HELLO = """
public class Main {
    public static void main(String[] args) {
        System.out.println("hello, " + String.join("|", args));
        System.out.print("no newline at the end");
    }
}
"""

# What the program can tell of how it was started.
FINGERPRINT = """
import java.nio.file.*;
public class Main {
    public static void main(String[] args) throws Exception {
        System.out.println(System.getProperty("java.class.path"));
        System.out.println(System.getProperty("sun.java.command"));
        System.out.println(System.getProperty("file.encoding") + " " + System.getenv().keySet());
        System.out.println(Thread.currentThread().getName() + " " + args.length);
        System.out.println(Files.list(Path.of(".build")).map(Path::toString).sorted().toList());
    }
}
"""

HELPER = InputFile(
    "Helper.java", b'public class Helper { static String greet() { return "from Helper"; } }\n'
)
USES_HELPER = """
public class Main {
    public static void main(String[] args) { System.out.println(Helper.greet()); }
}
"""

EXITS = """
public class Main {
    public static void main(String[] args) {
        System.out.println("before");
        System.exit(3);
    }
}
"""

THROWS = """
public class Main {
    static void inner() { throw new IllegalStateException("inner failure"); }
    public static void main(String[] args) {
        try {
            inner();
        } catch (RuntimeException e) {
            throw new RuntimeException("outer", e);
        }
    }
}
"""

FAILS_IN_STATIC_INIT = """
public class Main {
    static int value = Integer.parseInt("not a number");
    public static void main(String[] args) { System.out.println(value); }
}
"""

DOES_NOT_COMPILE = """
public class Main {
    public static void main(String[] args) {
        int x = "text";
        System.out.println(y)
    }
}
"""

WARNS = """
import java.util.*;
public class Main {
    public static void main(String[] args) {
        List raw = new ArrayList();
        raw.add("unchecked");
        System.out.println(raw);
    }
}
"""

READS_STDIN = """
import java.io.*;
public class Main {
    public static void main(String[] args) throws IOException {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        int lines = 0;
        while ((line = in.readLine()) != null) {
            lines++;
            if (lines <= 2) System.out.println("read: " + line);
        }
        System.out.println(lines + " lines");
    }
}
"""

BIG_OUTPUT = """
public class Main {
    public static void main(String[] args) {
        StringBuilder line = new StringBuilder();
        for (int i = 0; i < 200_000; i++) {
            System.out.println("line " + i);
        }
        System.err.println("done");
    }
}
"""

THREAD_OUTLIVES_MAIN = """
public class Main {
    public static void main(String[] args) {
        new Thread(() -> {
            try { Thread.sleep(300); } catch (InterruptedException e) { }
            System.out.println("the thread finished");
            System.exit(4);
        }).start();
        System.out.println("main returned");
    }
}
"""

CASES: dict[str, RunRequest] = {
    "hello": RunRequest("java", HELLO),
    "args": RunRequest("java", HELLO, args=("one", "two words", "ünï", "")),
    "fingerprint": RunRequest("java", FINGERPRINT, args=("a", "b")),
    "second file": RunRequest("java", USES_HELPER, files=(HELPER,)),
    "exit 3": RunRequest("java", EXITS),
    "uncaught": RunRequest("java", THROWS),
    "static init": RunRequest("java", FAILS_IN_STATIC_INIT),
    "compile error": RunRequest("java", DOES_NOT_COMPILE),
    "warnings": RunRequest("java", WARNS),
    "stdin": RunRequest("java", READS_STDIN, stdin="first\nsecond\n" + "more\n" * 100_000),
    "big output": RunRequest("java", BIG_OUTPUT),
    "thread": RunRequest("java", THREAD_OUTLIVES_MAIN),
}


@pytest.fixture
async def warm(run_root: Path) -> AsyncIterator[Sandbox]:
    box = Sandbox(replace(WARM, run_root=run_root))
    await box.start()
    yield box
    await box.close()


@pytest.fixture
async def cold() -> AsyncIterator[Sandbox]:
    root = Path("/tmp") / f"sandbox-mcp-test-cold-{secrets.token_hex(4)}"
    box = Sandbox(replace(COLD, run_root=root))
    await box.start()
    try:
        yield box
    finally:
        await box.close()
        shutil.rmtree(root, ignore_errors=True)
        root.with_name(root.name + ".lock").unlink(missing_ok=True)


async def java_on_standby(box: Sandbox) -> tuple[str, int]:
    """Wait for a Java run on standby; its run id and the pid of its JVM."""
    # Generous: the next JVM starts and warms its compiler (seconds of CPU) while the rest of
    # the suite loads the two cores.
    for _ in range(1800):
        ready = [run.spec.run_id for run in box._standby.get("java", [])]
        jvms = standby_jvms(box.settings.run_root)
        if ready and ready[0] in jvms:
            return ready[0], jvms[ready[0]]
        await asyncio.sleep(0.05)
    raise AssertionError("no Java run came on standby within 90 s")


def standby_jvms(run_root: Path) -> dict[str, int]:
    """The JVMs on standby under `run_root`, by the run id (the workdir) they wait in."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                words = cmdline.read().split(b"\0")
            workdir = Path(os.readlink(f"/proc/{entry}/cwd"))
        except OSError:
            continue
        if warm_java.BOOTSTRAP_CLASS.encode() in words and workdir.parent == run_root:
            found[workdir.name] = int(entry)
    return found


async def warm_run(box: Sandbox, request: RunRequest) -> RunResult:
    """Run `request` on a Java run on standby, and check that it was that run."""
    run_id, _jvm = await java_on_standby(box)
    result = await box.run(request)
    assert result.run_id == run_id, "the call did not take the run on standby"
    return result


def answer(result: RunResult) -> dict[str, object]:
    """What a caller reads of a result, without what differs from run to run."""
    compiled = result.compile
    return {
        "stdout": result.stdout.replace(result.run_id, "<run>"),
        "stderr": result.stderr.replace(result.run_id, "<run>"),
        "exit_code": result.exit_code,
        "signal": result.signal,
        "limit": result.limit,
        "bytes": (result.stdout_bytes, result.stderr_bytes),
        "truncated": (result.stdout_truncated, result.stderr_truncated),
        "compile": None
        if compiled is None
        else (compiled.exit_code, compiled.signal, compiled.stdout, compiled.stderr),
        "notes": result.notes,
        "files": [(file.path, file.status) for file in result.files],
    }


async def test_warm_java_runs_answer_as_cold_ones(warm: Sandbox, cold: Sandbox) -> None:
    # One server of each kind for every case: starting one costs seconds of JVMs.
    differ = {}
    for case, request in CASES.items():
        hot = await warm_run(warm, request)
        plain = await cold.run(request)
        if answer(hot) != answer(plain):
            differ[case] = (answer(hot), answer(plain))

    assert differ == {}


async def test_the_warm_path_is_taken_and_the_cold_answers_are_as_expected(
    warm: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="sandbox_mcp.sandbox.runner")
    hello = await warm_run(warm, CASES["args"])
    broken = await warm_run(warm, CASES["compile error"])
    thrown = await warm_run(warm, CASES["uncaught"])

    assert sum("(was on standby)" in line for line in caplog.messages) == 3
    assert hello.stdout == "hello, one|two words|ünï|\nno newline at the end"
    assert hello.exit_code == 0 and hello.compile is not None and hello.compile.exit_code == 0
    assert broken.exit_code is None and broken.compile is not None
    assert broken.compile.exit_code == 1
    assert broken.compile.stderr.startswith("Main.java:5: error: ';' expected\n")
    assert broken.compile.stderr.endswith("1 error\n")
    assert thrown.exit_code == 1
    assert thrown.stderr.startswith('Exception in thread "main" java.lang.RuntimeException: outer')
    assert "sandboxmcp" not in thrown.stderr and "reflect" not in thrown.stderr
    # The warming's CPU time is not the run's.
    assert hello.cpu_ms < 20_000


CONFINEMENT = """
import java.nio.file.*;
import java.util.concurrent.Callable;
public class Main {
    static void attempt(String what, Callable<Object> action) {
        String verdict;
        try {
            action.call();
            verdict = "allowed";
        } catch (Exception e) {
            verdict = "refused";
        }
        System.out.println(what + ": " + verdict);
    }
    public static void main(String[] args) throws Exception {
        String wanted = "(Uid|Gid|Groups|NoNewPrivs|Seccomp|CapEff|CapBnd):.*";
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.matches(wanted)) System.out.println(line.replaceAll("\\\\s+", " "));
        }
        for (String line : Files.readAllLines(Path.of("/proc/self/limits"))) {
            // The CPU limit of a warm run is raised by what its warming used (warm_java.py).
            if (line.startsWith("Max cpu time")) continue;
            System.out.println(line.replaceAll("\\\\s+", " "));
        }
        Path workdir = Path.of("").toAbsolutePath();
        Path outside = Path.of("/tmp/escaped-" + workdir.getFileName());
        attempt("list the run root", () -> Files.list(workdir.getParent()).count());
        attempt("write /tmp", () -> Files.writeString(outside, "x"));
        attempt("write the workdir", () -> Files.writeString(workdir.resolve("in.txt"), "x"));
        attempt("internet socket", () -> new java.net.Socket("127.0.0.1", 9));
    }
}
"""


async def test_a_java_run_on_standby_is_confined_as_a_cold_one(
    warm: Sandbox, cold: Sandbox
) -> None:
    request = RunRequest("java", CONFINEMENT)
    hot = await warm_run(warm, request)
    plain = await cold.run(request)

    assert hot.exit_code == 0, hot.stderr
    uid_lines = [line for line in hot.stdout.splitlines() if line.startswith(("Uid", "Gid"))]
    plain_lines = [line for line in plain.stdout.splitlines() if line.startswith(("Uid", "Gid"))]
    if warm._pool is not None:
        # Each run has its own uid from its server's pool; compare where they fall.
        for lines, settings in ((uid_lines, warm.settings), (plain_lines, cold.settings)):
            ids = {int(word) for line in lines for word in line.split()[1:]}
            assert len(ids) == 1
            assert settings.uid_base <= ids.pop() < settings.uid_base + settings.uid_count
    else:
        assert uid_lines == plain_lines
    # In shared mode the process limit adds the uid's tasks at the run's start, which vary.
    varies = ("Uid", "Gid") if warm._pool is not None else ("Uid", "Gid", "Max processes")
    rest = [line for line in hot.stdout.splitlines() if not line.startswith(varies)]
    plain_rest = [line for line in plain.stdout.splitlines() if not line.startswith(varies)]
    assert rest == plain_rest
    assert "NoNewPrivs: 1" in rest
    assert "Seccomp: 2" in rest
    assert "list the run root: refused" in rest
    assert "write /tmp: refused" in rest
    assert "write the workdir: allowed" in rest
    assert "internet socket: refused" in rest


async def test_limits_hold_on_the_warm_java_path(warm: Sandbox) -> None:
    spins = "public class Main { public static void main(String[] a) { while (true) { } } }"
    hoards = (
        "import java.util.*;\n"
        "public class Main { public static void main(String[] a) {\n"
        "  List<long[]> all = new ArrayList<>();\n"
        "  while (true) all.add(new long[1 << 20]);\n"
        "} }"
    )
    await java_on_standby(warm)
    await asyncio.sleep(1.5)  # the deadline counts from the call, not from the standby's start
    timed_out = await warm_run(warm, RunRequest("java", spins, timeout_seconds=2))
    out_of_memory = await warm_run(warm, RunRequest("java", hoards))

    assert timed_out.limit == "timeout"
    assert timed_out.duration_ms >= 1500
    assert out_of_memory.limit == "memory" or "OutOfMemoryError" in out_of_memory.stderr


async def test_java_runs_on_standby_are_ended_and_removed_with_the_server(
    run_root: Path,
) -> None:
    box = Sandbox(replace(WARM, run_root=run_root))
    await box.start()
    _run_id, jvm = await java_on_standby(box)
    waiting = list(run_root.iterdir())
    await box.close()

    assert waiting, "a run on standby has its workdir"
    assert not run_root.exists() or list(run_root.iterdir()) == []
    for _ in range(100):
        if not os.path.exists(f"/proc/{jvm}"):
            break
        await asyncio.sleep(0.05)
    assert not os.path.exists(f"/proc/{jvm}"), "the JVM on standby outlived its server"


def bootstrap_dirs() -> set[str]:
    return {name for name in os.listdir("/tmp") if name.startswith("sandbox-mcp-java-standby-")}


@pytest.mark.parametrize("wait", [0.0, 1.0])
async def test_a_server_closed_while_its_bootstrap_compiles_leaves_nothing(
    run_root: Path, wait: float
) -> None:
    before = bootstrap_dirs()
    box = Sandbox(replace(WARM, run_root=run_root))
    await box.start()
    await asyncio.sleep(wait)
    await box.close()

    assert bootstrap_dirs() <= before


async def test_a_call_whose_jvm_died_on_standby_runs_cold(warm: Sandbox) -> None:
    run_id, jvm = await java_on_standby(warm)
    os.kill(jvm, signal.SIGKILL)
    workdir = warm.settings.run_root / run_id
    for _ in range(200):  # its supervisor ends, and removes the workdir
        if not workdir.exists():
            break
        await asyncio.sleep(0.05)

    result = await warm.run(CASES["args"])

    assert result.run_id != run_id
    assert result.stdout == "hello, one|two words|ünï|\nno newline at the end"
    assert result.stderr == ""
    assert result.exit_code == 0


@pytest.mark.parametrize(
    ("changes", "runs"),
    [
        ({}, 1),
        ({"warm_java": 2}, 2),
        ({"warm_java": 0}, 0),
        ({"warm": "off"}, 0),
        ({"memory_mb": 256}, 0),
        ({"memory_budget_mb": 600}, 0),
    ],
)
def test_how_many_java_runs_wait_on_standby(changes: dict[str, object], runs: int) -> None:
    settings = replace(WARM, **{"memory_budget_mb": 4096, **changes})
    assert _java_standby_runs(settings) == runs
