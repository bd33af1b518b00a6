"""The benchmark: what `execute_code` costs over the bare runtime, measured side by side.

Run it through `scripts/bench`, which sets things up first; `--help` lists the options. In one
run on one machine it measures:

1. the floor: each runtime started bare from asyncio, one at a time and 8 at a time;
2. the full stack: `execute_code` through the official MCP client over stdio against
   `.venv/bin/sandbox-mcp`, one at a time and with 8 and 32 calls in flight, where every call
   prints a token of its own and an answer without it, or with another call's, is wrong;
3. the overhead of the stack over the floor, in milliseconds and as a share of throughput;
4. the server's cold start and the MCP SDK's import time;
5. what thousands of runs leave behind: the server's memory, descriptors and threads before
   and after, zombies below it, and workdirs in its run root.

It prints a table and writes the numbers as JSON. A wrong answer, a zombie, a leftover
workdir or a stray process is printed loudly and makes it exit 1: those are bugs, whatever
the machine. The timings are not judged; other load on the machine moves them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mcp import Client, MCPError, StdioServerParameters

SERVER = Path(sys.executable).parent / "sandbox-mcp"
TOKEN = re.compile(r"bench-[0-9a-f]{16}")
IN_FLIGHT = (8, 32)
FLOOR_IN_FLIGHT = 8
LEAK_IN_FLIGHT = 8
# How long zombies under the server may take to be reaped before they count as leaked: a
# supervisor that has just answered is reaped by the launcher a moment later.
SETTLE_SECONDS = 3.0


class BenchError(Exception):
    """The benchmark could not run: a runtime is missing, or the server would not start."""


@dataclass(frozen=True)
class Language:
    """One language as the floor starts it and as a snippet for `execute_code`."""

    id: str
    floor: tuple[str, ...]
    snippet: str  # prints TOKEN, replaced by each call's own
    source: tuple[str, str] | None = None  # a file the floor's command needs: name, text
    # The share of the run counts this language gets: a JVM start takes half a second.
    share: float = 1.0
    remark: str | None = None  # what makes the floor and the stack differ beyond the sandbox


LANGUAGES = {
    "python": Language(
        id="python",
        floor=("/usr/bin/python3", "-c", "print('hello')"),
        snippet="print('TOKEN')",
    ),
    "javascript": Language(
        id="javascript",
        floor=("node", "-e", "console.log('hello')"),
        snippet="console.log('TOKEN')",
    ),
    "java": Language(
        id="java",
        floor=("java", "Main.java"),
        snippet="public class Main {\n    public static void main(String[] args) {\n"
        '        System.out.println("TOKEN");\n    }\n}\n',
        source=(
            "Main.java",
            "public class Main {\n    public static void main(String[] args) {\n"
            '        System.out.println("hello");\n    }\n}\n',
        ),
        share=0.2,
        remark="the floor is one JVM with its default flags (java Main.java); the stack runs "
        "javac, then java with the serial collector and C1 only, which start faster",
    ),
}


@dataclass(frozen=True)
class Plan:
    """What to measure and how often, from the command line."""

    languages: tuple[Language, ...]
    runs: int  # one at a time, per language
    calls: int | None  # per in-flight level and language; None: each level once (smoke)
    leak_runs: int
    starts: int  # cold starts, and import timings of each kind
    warmup: int  # untimed runs per language and side before measuring
    json_path: Path
    uid_base: int
    smoke: bool

    def sequential(self, language: Language) -> int:
        """How many runs of `language` to make one at a time."""
        return max(3, round(self.runs * language.share))

    def in_flight(self, language: Language, width: int) -> int:
        """How many calls of `language` to make with `width` in flight."""
        if self.calls is None:
            return width
        return max(width, round(self.calls * language.share))


def parse_plan(argv: Sequence[str] | None = None) -> Plan:
    """Read the command line; `--smoke` makes every count tiny unless given."""
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure execute_code through the MCP client against the bare runtimes.",
    )
    parser.add_argument(
        "--languages",
        metavar="LIST",
        default="python,javascript,java",
        help=f"comma-separated, from: {', '.join(LANGUAGES)} (default: all)",
    )
    parser.add_argument(
        "--runs",
        metavar="N",
        type=int,
        help="runs one at a time per language (default 100, smoke 5; Java a fifth, at least 3)",
    )
    parser.add_argument(
        "--calls",
        metavar="N",
        type=int,
        help="calls per in-flight level per language (default 200; Java a fifth; "
        "smoke: each level once)",
    )
    parser.add_argument(
        "--leak-runs",
        metavar="N",
        type=int,
        help="Python runs of the leak check (default 5000, smoke 50)",
    )
    parser.add_argument(
        "--starts",
        metavar="N",
        type=int,
        help="cold starts and import timings (default 5, smoke 2)",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        type=Path,
        default=Path("bench-results/latest.json"),
        help="where to write the results (default: %(default)s, git-ignored)",
    )
    parser.add_argument(
        "--uid-base",
        metavar="UID",
        type=int,
        # Above the tests' ranges (100000 + 64 * up to 4000), so that a benchmark and a test
        # session on one machine do not refuse each other's pool. Fixed, not per process: the
        # server leaves a lock file per uid, and two benchmarks at once measure nothing anyway.
        default=400000,
        help="first uid of the server's pool in pool mode (default: %(default)s)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="everything tiny, for CI: checks, not timings"
    )
    args = parser.parse_args(argv)

    chosen = [name.strip() for name in args.languages.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in LANGUAGES]
    if unknown or not chosen:
        named = ", ".join(repr(name) for name in unknown) or "''"
        parser.error(f"unknown language {named}; known: {', '.join(LANGUAGES)}")
    counts = [args.runs, args.calls, args.leak_runs, args.starts]
    if any(count is not None and count < 1 for count in counts):
        parser.error("--runs, --calls, --leak-runs and --starts must be at least 1")

    return Plan(
        languages=tuple(LANGUAGES[name] for name in dict.fromkeys(chosen)),
        runs=args.runs or (5 if args.smoke else 100),
        calls=args.calls or (None if args.smoke else 200),
        leak_runs=args.leak_runs or (50 if args.smoke else 5000),
        starts=args.starts or (2 if args.smoke else 5),
        warmup=1 if args.smoke else 2,
        json_path=args.json,
        uid_base=args.uid_base,
        smoke=args.smoke,
    )


# --- timing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One run, timed from the caller's side; `problem` says what was wrong with the answer."""

    ms: float
    problem: str | None = None


@dataclass(frozen=True)
class Measurement:
    """A batch of runs made with `in_flight` of them at once."""

    in_flight: int
    outcomes: tuple[Outcome, ...]
    seconds: float

    @property
    def runs(self) -> int:
        return len(self.outcomes)

    @property
    def correct(self) -> int:
        return sum(outcome.problem is None for outcome in self.outcomes)

    @property
    def exact(self) -> float:
        return self.correct / self.runs

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.seconds

    @property
    def p50_ms(self) -> float:
        return percentile([outcome.ms for outcome in self.outcomes], 0.50)

    @property
    def p95_ms(self) -> float:
        return percentile([outcome.ms for outcome in self.outcomes], 0.95)

    def problems(self, limit: int = 3) -> list[str]:
        """The first few wrong answers, each as its check described it."""
        return [outcome.problem for outcome in self.outcomes if outcome.problem][:limit]

    def as_json(self) -> dict[str, Any]:
        """The numbers, rounded to what the clock can tell."""
        return {
            "in_flight": self.in_flight,
            "runs": self.runs,
            "correct": self.correct,
            "exact": self.exact,
            "seconds": round(self.seconds, 3),
            "runs_per_s": round(self.runs_per_s, 2),
            "p50_ms": round(self.p50_ms, 2),
            "p95_ms": round(self.p95_ms, 2),
            "problems": self.problems(),
        }


def percentile(samples: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: the smallest sample with `share` of all at or below it."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def measure(count: int, in_flight: int, run: Callable[[], Awaitable[Outcome]]) -> Measurement:
    """Make `count` runs, keeping `in_flight` of them going until the last has started."""
    remaining = iter(range(count))
    outcomes: list[Outcome] = []

    async def worker() -> None:
        for _ in remaining:
            outcomes.append(await run())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(in_flight, count))))
    return Measurement(in_flight, tuple(outcomes), time.perf_counter() - started)


# --- the floor ---------------------------------------------------------------------------------


async def spawn(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, bytes]:
    """Start `argv` from asyncio, read its output to the end; answer ms, exit status, stdout."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, _ = await process.communicate()
    assert process.returncode is not None  # noqa: S101
    return (time.perf_counter() - started) * 1000, process.returncode, stdout


def floor_run(
    language: Language, cwd: Path, env: dict[str, str]
) -> Callable[[], Awaitable[Outcome]]:
    """One bare start of the runtime, checked to have printed hello."""

    async def run() -> Outcome:
        ms, status, stdout = await spawn(language.floor, cwd, env)
        if status != 0 or stdout != b"hello\n":
            return Outcome(ms, f"bare {language.id}: exit {status}, stdout {stdout[:80]!r}")
        return Outcome(ms)

    return run


# --- the full stack ----------------------------------------------------------------------------


def stack_run(client: Client, language: Language) -> Callable[[], Awaitable[Outcome]]:
    """One `execute_code` call printing a fresh token, checked to answer that token alone."""

    async def run() -> Outcome:
        token = f"bench-{secrets.token_hex(8)}"
        arguments = {"language": language.id, "code": language.snippet.replace("TOKEN", token)}
        started = time.perf_counter()
        try:
            result = await client.call_tool("execute_code", arguments)
        except Exception as exc:  # a failed call is a wrong answer, not the end of the bench
            return Outcome((time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}")
        ms = (time.perf_counter() - started) * 1000

        if result.is_error or not result.structured_content:
            text = getattr(result.content[0], "text", "") if result.content else "no content"
            return Outcome(ms, f"tool error: {text[:120]}")
        content = result.structured_content
        found = TOKEN.findall(content.get("stdout", ""))
        if found != [token]:
            return Outcome(ms, f"{language.id}: wanted {token}, answer had {found or 'no token'}")
        if content.get("exit_code") != 0:
            return Outcome(ms, f"{language.id}: exit {content.get('exit_code')}")
        return Outcome(ms)

    return run


def server_params(run_root: Path, uid_base: int) -> StdioServerParameters:
    """The server as a client would start it: PATH and HOME passed on, a run root of its own."""
    return StdioServerParameters(
        command=str(SERVER),
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "SANDBOX_RUN_ROOT": str(run_root),
            "SANDBOX_UID_BASE": str(uid_base),
            # One log line per run would bury the table; warnings still reach stderr.
            "SANDBOX_LOG_LEVEL": "warning",
        },
    )


# --- processes, through /proc ------------------------------------------------------------------


def process_table() -> dict[int, tuple[int, str]]:
    """Every process now: pid -> (parent pid, state letter)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), fields[0].decode())
    return table


def descendants(pid: int, table: dict[int, tuple[int, str]]) -> list[int]:
    """Every process below `pid` in `table`."""
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def command_line(pid: int) -> str:
    """The process's command line, or '' once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def find_server() -> int:
    """The pid of the sandbox-mcp this process started: its only child running SERVER."""
    mine = [
        pid
        for pid, (parent, _) in process_table().items()
        if parent == os.getpid() and str(SERVER) in command_line(pid)
    ]
    if len(mine) != 1:
        raise BenchError(f"expected one sandbox-mcp child of this process, found {mine}")
    return mine[0]


def find_launcher(server: int) -> int | None:
    """The server's launcher, the one process meant to live below it between runs."""
    for pid in descendants(server, process_table()):
        if "sandbox_mcp.sandbox.launcher" in command_line(pid):
            return pid
    return None


@dataclass(frozen=True)
class Footprint:
    """A process's resident memory, threads and open descriptors, read from /proc."""

    rss_kb: int
    threads: int
    fds: int | None  # None: unreadable, as a non-dumpable process's are to a non-root reader

    @classmethod
    def read(cls, pid: int) -> Footprint:
        """Read it now."""
        status = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            status[key] = value.split()
        try:
            fds: int | None = len(os.listdir(f"/proc/{pid}/fd"))
        except PermissionError:
            fds = None
        return cls(rss_kb=int(status["VmRSS"][0]), threads=int(status["Threads"][0]), fds=fds)

    def as_json(self) -> dict[str, int | None]:
        return {"rss_kb": self.rss_kb, "threads": self.threads, "fds": self.fds}


async def settle_zombies(server: int) -> list[int]:
    """Zombies below the server that are still there after SETTLE_SECONDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        table = process_table()
        zombies = [pid for pid in descendants(server, table) if table[pid][1] == "Z"]
        if not zombies or time.monotonic() > deadline:
            return zombies
        await asyncio.sleep(0.05)


# --- the phases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Startup:
    """The server's cold start and, beside it, what importing the SDK alone costs."""

    cold_ms: tuple[float, ...]  # spawn to the first tools/list answer, one per start
    import_ms: float
    interpreter_ms: float
    import_method: str


@dataclass(frozen=True)
class LeakCheck:
    """The server and its launcher before and after many runs, and what was left below them."""

    runs: Measurement
    before: dict[str, Footprint]
    after: dict[str, Footprint]
    zombies: int
    stray: tuple[str, ...]  # live processes under the server besides the launcher
    launcher_found: bool
    workdirs_left: tuple[str, ...]  # in the run root after the runs, the server still up
    workdirs_left_after_exit: tuple[str, ...] = ()


@dataclass(frozen=True)
class Results:
    """Everything one benchmark run measured."""

    started_at: datetime
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    info: dict[str, Any]  # server_info's structured answer
    versions: dict[str, str | None]  # language -> runtime version, from list_languages
    startup: Startup
    floors: dict[str, dict[str, Measurement]]  # language -> "sequential" or width -> batch
    stacks: dict[str, dict[str, Measurement]]
    leak: LeakCheck


def say(message: str) -> None:
    """Progress on stderr, so that stdout holds only the report."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def workdirs(run_root: Path) -> tuple[str, ...]:
    """What is in the run root now."""
    return tuple(sorted(entry.name for entry in run_root.iterdir())) if run_root.exists() else ()


async def measure_startup(
    starts: int, run_root: Path, uid_base: int, cwd: Path, env: dict[str, str]
) -> Startup:
    """Median cold start through the SDK client's ordinary connect, and the SDK's import."""
    cold = []
    for _ in range(starts):
        started = time.perf_counter()
        async with Client(server_params(run_root, uid_base)) as client:
            await client.list_tools()
            cold.append((time.perf_counter() - started) * 1000)

    # Once untimed, so that no sample pays for writing the SDK's bytecode cache.
    await spawn((sys.executable, "-c", "import mcp"), cwd, env)
    bare, loaded = [], []
    for _ in range(starts):
        bare.append((await spawn((sys.executable, "-c", "pass"), cwd, env))[0])
        loaded.append((await spawn((sys.executable, "-c", "import mcp"), cwd, env))[0])
    return Startup(
        cold_ms=tuple(cold),
        import_ms=statistics.median(loaded) - statistics.median(bare),
        interpreter_ms=statistics.median(bare),
        import_method=f"{sys.executable} -c 'import mcp' minus -c pass, medians of {starts}",
    )


async def measure_language(
    plan: Plan, language: Language, client: Client, cwd: Path, env: dict[str, str]
) -> tuple[dict[str, Measurement], dict[str, Measurement]]:
    """The floor and the stack for one language, alternating so that both see the same load."""
    floor = floor_run(language, cwd, env)
    stack = stack_run(client, language)
    for _ in range(plan.warmup):
        await floor()
        await stack()

    count = plan.sequential(language)
    say(f"{language.id}: {count} runs one at a time, bare then through the stack")
    floors = {"sequential": await measure(count, 1, floor)}
    stacks = {"sequential": await measure(count, 1, stack)}

    count = plan.in_flight(language, FLOOR_IN_FLIGHT)
    say(f"{language.id}: {count} bare runs, {FLOOR_IN_FLIGHT} at a time")
    floors[str(FLOOR_IN_FLIGHT)] = await measure(count, FLOOR_IN_FLIGHT, floor)
    for width in IN_FLIGHT:
        count = plan.in_flight(language, width)
        say(f"{language.id}: {count} calls, {width} in flight")
        stacks[str(width)] = await measure(count, width, stack)
    return floors, stacks


async def check_leaks(plan: Plan, client: Client, server: int, run_root: Path) -> LeakCheck:
    """Read the server and its launcher, make many Python runs, read them again, look below."""
    launcher = find_launcher(server)
    watched = {"server": server} | ({"launcher": launcher} if launcher is not None else {})
    before = {name: Footprint.read(pid) for name, pid in watched.items()}

    say(f"leak check: {plan.leak_runs} Python runs, {LEAK_IN_FLIGHT} in flight")
    runs = await measure(plan.leak_runs, LEAK_IN_FLIGHT, stack_run(client, LANGUAGES["python"]))

    after = {name: Footprint.read(pid) for name, pid in watched.items()}
    zombies = await settle_zombies(server)
    below = descendants(server, process_table())
    stray = [pid for pid in below if pid != launcher and pid not in zombies]
    return LeakCheck(
        runs=runs,
        before=before,
        after=after,
        zombies=len(zombies),
        stray=tuple(command_line(pid) or str(pid) for pid in stray),
        launcher_found=launcher is not None,
        workdirs_left=workdirs(run_root),
    )


async def bench(plan: Plan) -> Results:
    """Every phase, in an order that keeps them from disturbing each other."""
    for language in plan.languages:
        if shutil.which(language.floor[0]) is None:
            raise BenchError(f"{language.floor[0]} not found on PATH: the {language.id} floor")
    started_at = datetime.now(UTC)
    load_before = os.getloadavg()

    # The pool's uids must reach their workdirs under the run root, so its parent is open to
    # all, like /tmp; everything the benchmark makes lives below it.
    scratch = Path(tempfile.mkdtemp(prefix="sandbox-mcp-bench-"))
    scratch.chmod(0o755)
    try:
        # 1. The floor's directory: Java's source file, and a HOME of its own.
        cwd = scratch / "floor"
        cwd.mkdir()
        for language in plan.languages:
            if language.source is not None:
                (cwd / language.source[0]).write_text(language.source[1])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "LANG": "C.UTF-8"}

        # 2. Start-up, with servers on a run root of their own.
        say(f"{plan.starts} cold starts, then the SDK's import time")
        startup = await measure_startup(plan.starts, scratch / "cold", plan.uid_base, cwd, env)

        # 3. One server for the rest: the floor and the stack per language, then the leaks.
        run_root = scratch / "runs"
        async with Client(server_params(run_root, plan.uid_base)) as client:
            server = find_server()
            info = (await client.call_tool("server_info", {})).structured_content or {}
            listed = (await client.call_tool("list_languages", {})).structured_content or {}
            versions = {
                entry["id"]: entry["version"]
                for entry in listed.get("languages", [])
                if entry["available"]
            }
            missing = [language.id for language in plan.languages if language.id not in versions]
            if missing:
                raise BenchError(f"the server cannot run {missing}; list_languages says why")
            say(f"server pid {server}, identity {info.get('identity')}")

            floors, stacks = {}, {}
            for language in plan.languages:
                floors[language.id], stacks[language.id] = await measure_language(
                    plan, language, client, cwd, env
                )
            leak = await check_leaks(plan, client, server, run_root)

        # 4. A server removes its empty run root when it closes: anything there was left.
        leak = replace(leak, workdirs_left_after_exit=workdirs(run_root))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    return Results(
        started_at=started_at,
        load_before=load_before,
        load_after=os.getloadavg(),
        info=info,
        versions=versions,
        startup=startup,
        floors=floors,
        stacks=stacks,
        leak=leak,
    )


# --- the report --------------------------------------------------------------------------------


def problems(results: Results) -> list[str]:
    """What is wrong whatever the machine: wrong answers, zombies, strays, leftover workdirs."""
    found = []
    batches = [(f"{language} bare", by) for language, by in results.floors.items()]
    batches += [(f"{language} stack", by) for language, by in results.stacks.items()]
    batches.append(("leak check", {str(LEAK_IN_FLIGHT): results.leak.runs}))
    for where, by_width in batches:
        for width, batch in by_width.items():
            if batch.correct < batch.runs:
                found.append(
                    f"{where} {width}: {batch.runs - batch.correct} of {batch.runs} answers "
                    f"wrong, e.g. {batch.problems()}"
                )
    leak = results.leak
    if leak.zombies:
        found.append(f"{leak.zombies} zombies under the server")
    if leak.stray:
        found.append(f"processes left under the server: {list(leak.stray)}")
    if not leak.launcher_found:
        found.append("the server's launcher was not found below it")
    if leak.workdirs_left:
        found.append(f"workdirs left in the run root: {list(leak.workdirs_left[:5])}")
    if leak.workdirs_left_after_exit:
        found.append(
            f"workdirs left after the server exited: {list(leak.workdirs_left_after_exit[:5])}"
        )
    return found


def exact(results: Results) -> tuple[int, int]:
    """Correct answers and all answers, over every call through the stack."""
    batches = [batch for by_width in results.stacks.values() for batch in by_width.values()]
    batches.append(results.leak.runs)
    return sum(batch.correct for batch in batches), sum(batch.runs for batch in batches)


def ratios(results: Results, language: str) -> dict[str, float]:
    """Overhead in ms at the median, and the stack's throughput as a share of the floor's."""
    floor, stack = results.floors[language], results.stacks[language]
    floor_rate = floor[str(FLOOR_IN_FLIGHT)].runs_per_s
    found = {"overhead_p50_ms": stack["sequential"].p50_ms - floor["sequential"].p50_ms}
    for width in IN_FLIGHT:
        found[f"throughput_pct_{width}"] = 100 * stack[str(width)].runs_per_s / floor_rate
    return found


def as_json(plan: Plan, results: Results, found: list[str]) -> dict[str, Any]:
    """Every section, each batch with its runs, exactness and timings."""
    correct, total = exact(results)
    startup, leak = results.startup, results.leak
    return {
        "meta": {
            "started_at": results.started_at.isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "load_average_before": [round(value, 2) for value in results.load_before],
            "load_average_after": [round(value, 2) for value in results.load_after],
            "server_version": results.info.get("version"),
            "sdk_version": results.info.get("sdk_version"),
            "identity": results.info.get("identity"),
            "server_uid": results.info.get("server_uid"),
            "runtime_versions": {lang.id: results.versions.get(lang.id) for lang in plan.languages},
            "smoke": plan.smoke,
            "runs": plan.runs,
            "calls": plan.calls,
            "leak_runs": plan.leak_runs,
        },
        "floor": {
            language: {width: batch.as_json() for width, batch in by_width.items()}
            for language, by_width in results.floors.items()
        },
        "stack": {
            language: {width: batch.as_json() for width, batch in by_width.items()}
            for language, by_width in results.stacks.items()
        },
        "ratios": {
            language: {key: round(value, 2) for key, value in ratios(results, language).items()}
            for language in results.stacks
        },
        "exact": {"correct": correct, "total": total, "ratio": correct / total},
        "cold_start": {
            "starts": len(startup.cold_ms),
            "p50_ms": round(statistics.median(startup.cold_ms), 1),
            "samples_ms": [round(sample, 1) for sample in startup.cold_ms],
            "sdk_import_ms": round(startup.import_ms, 1),
            "sdk_import_method": startup.import_method,
            "interpreter_start_ms": round(startup.interpreter_ms, 1),
        },
        "leak": {
            "runs": leak.runs.as_json(),
            "before": {name: footprint.as_json() for name, footprint in leak.before.items()},
            "after": {name: footprint.as_json() for name, footprint in leak.after.items()},
            "zombies": leak.zombies,
            "stray_processes": list(leak.stray),
            "workdirs_left": len(leak.workdirs_left),
            "workdirs_left_after_exit": len(leak.workdirs_left_after_exit),
        },
        "ok": not found,
        "problems": found,
    }


def render(plan: Plan, results: Results, found: list[str]) -> str:
    """The report a person reads."""
    info = results.info
    mode = {
        "pool": "pool (each run its own uid)",
        "shared": "shared (runs use the server's uid)",
    }.get(info.get("identity"), str(info.get("identity")))
    load = " ".join(f"{value:.2f}" for value in results.load_before)
    lines = [
        f"sandbox-mcp {info.get('version')} benchmark, "
        f"{results.started_at.isoformat(timespec='seconds')}"
        + (" (smoke: tiny counts, the timings mean nothing)" if plan.smoke else ""),
        f"MCP SDK {info.get('sdk_version')}; identity {mode}; server uid {info.get('server_uid')}",
        f"{os.cpu_count()} CPUs, Linux {platform.release()}, load average {load} at the start: "
        "other work on the machine moves every timing",
        "floor: the bare runtime started from asyncio; stack: execute_code through the MCP "
        "client over stdio",
        "",
        "One at a time, ms per run",
    ]
    rows = []
    for language, stack in results.stacks.items():
        floor, alone = results.floors[language]["sequential"], stack["sequential"]
        rows.append(
            [
                language,
                str(alone.runs),
                f"{floor.p50_ms:.1f}",
                f"{floor.p95_ms:.1f}",
                f"{alone.p50_ms:.1f}",
                f"{alone.p95_ms:.1f}",
                f"{ratios(results, language)['overhead_p50_ms']:+.1f}",
                percent(alone.exact),
            ]
        )
    headers = ["language", "runs", "floor p50", "p95", "stack p50", "p95", "overhead", "exact"]
    lines += table(headers, rows)
    lines += [
        f"  {language.id}: {language.remark}" for language in plan.languages if language.remark
    ]

    lines += [
        "",
        f"In flight: runs/s, a call's p50 in ms, the stack's runs/s as a share of the "
        f"floor's at {FLOOR_IN_FLIGHT}",
    ]
    rows = []
    for language, stack in results.stacks.items():
        floor = results.floors[language][str(FLOOR_IN_FLIGHT)]
        shares = ratios(results, language)
        for width in IN_FLIGHT:
            batch = stack[str(width)]
            rows.append(
                [
                    language,
                    str(width),
                    str(batch.runs),
                    f"{floor.runs_per_s:.1f}" if width == FLOOR_IN_FLIGHT else "",
                    f"{floor.p50_ms:.0f}" if width == FLOOR_IN_FLIGHT else "",
                    f"{batch.runs_per_s:.1f}",
                    f"{batch.p50_ms:.0f}",
                    f"{shares[f'throughput_pct_{width}']:.0f}%",
                    percent(batch.exact),
                ]
            )
    headers = ["language", "in flight", "calls", "floor runs/s", "p50", "stack runs/s", "p50"]
    lines += table([*headers, "of floor", "exact"], rows)

    startup = results.startup
    samples = " ".join(f"{sample:.0f}" for sample in startup.cold_ms)
    lines += [
        "",
        "Server start",
        f"  cold start, spawn to the first tools/list answer: "
        f"{statistics.median(startup.cold_ms):.0f} ms (median of {len(startup.cold_ms)}: "
        f"{samples})",
        f"  MCP SDK import alone: {startup.import_ms:.0f} ms ({startup.import_method}; "
        f"the bare interpreter: {startup.interpreter_ms:.0f} ms)",
    ]

    leak = results.leak
    lines += [
        "",
        f"Leak check: {leak.runs.runs} Python runs, {LEAK_IN_FLIGHT} in flight, "
        f"{leak.runs.runs_per_s:.1f} runs/s, exact {percent(leak.runs.exact)}",
    ]
    rows = []
    for name, before in leak.before.items():
        after = leak.after[name]
        rows.append(
            [
                f"{name} RSS MB",
                f"{before.rss_kb / 1024:.1f}",
                f"{after.rss_kb / 1024:.1f}",
                f"{(after.rss_kb - before.rss_kb) / 1024:+.1f}",
            ]
        )
        rows.append([f"{name} descriptors", *change(before.fds, after.fds)])
        rows.append([f"{name} threads", *change(before.threads, after.threads)])
    lines += table(["", "before", "after", "change"], rows)
    lines.append(
        f"  zombies under the server: {leak.zombies}; other processes under it than the "
        f"launcher: {len(leak.stray)}; workdirs left in the run root: "
        f"{len(leak.workdirs_left)}, and {len(leak.workdirs_left_after_exit)} after exit"
    )

    lines.append("")
    if found:
        lines += ["!" * 80, "!! BENCHMARK FAILED", *(f"!! {problem}" for problem in found)]
        lines.append("!" * 80)
    else:
        lines.append(f"All {exact(results)[1]} answers exact; nothing left behind.")
    return "\n".join(lines)


def percent(share: float) -> str:
    """A share as a percentage that never rounds a wrong answer up to 100%."""
    return "100%" if share == 1 else f"{math.floor(share * 1000) / 10:.1f}%"


def change(before: int | None, after: int | None) -> list[str]:
    """Before, after and the difference, for counts that may be unreadable."""
    if before is None or after is None:
        return ["unreadable", "unreadable", ""]
    return [str(before), str(after), f"{after - before:+d}"]


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell: the first left-aligned, the rest right-aligned."""
    widths = [max(len(row[column]) for row in [headers, *rows]) for column in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  " + "  ".join([first, *rest])

    return [line(headers), *(line(row) for row in rows)]


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc`, unwrapped from any exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the report, write the JSON; 1 if an answer was wrong or something leaked."""
    plan = parse_plan(argv)
    try:
        results = asyncio.run(bench(plan))
    except Exception as exc:
        # Raised inside the client's task groups, an error arrives wrapped in exception groups.
        found = leaves(exc)
        reasons = [str(leaf) for leaf in found if isinstance(leaf, BenchError)]
        reasons += [
            f"the server stopped answering ({leaf}); its stderr above says why"
            for leaf in found
            if isinstance(leaf, MCPError)
        ]
        if not reasons:
            raise
        print(f"bench: {reasons[0]}", file=sys.stderr)
        return 2

    found = problems(results)
    print(render(plan, results, found), flush=True)
    try:
        plan.json_path.parent.mkdir(parents=True, exist_ok=True)
        plan.json_path.write_text(json.dumps(as_json(plan, results, found), indent=2) + "\n")
    except OSError as exc:
        print(f"bench: cannot write the results: {exc}", file=sys.stderr)
        return 2
    say(f"results written to {plan.json_path}")
    if found:
        print(f"bench: FAILED, {len(found)} problems; see the report", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
