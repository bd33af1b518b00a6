"""The benchmark: what `execute_code` costs over the bare runtime, measured side by side.

Run it through `scripts/bench`, which sets things up first; `--help` lists the options. In one
run on one machine it measures:

1. the floor: each runtime started bare from asyncio, one at a time and 8 at a time;
2. the full stack: `execute_code` through the official MCP client over stdio against
   `.venv/bin/sandbox-mcp`, one at a time and with 8 and 32 calls in flight, where every call
   prints a token of its own and an answer without it, or with another call's, is wrong.
   Two servers run side by side: the default one, whose Python runs fork a template
   interpreter started in advance and whose JavaScript runs are node processes started before
   their calls (warm), and one started with SANDBOX_WARM=off, whose runs each start a fresh
   runtime at the call (cold). Python and JavaScript go through both, every other language
   through the default one;
3. the overhead of the stack over the floor, in milliseconds and as a share of throughput,
   each beside the target the server is built to;
4. the server's cold start and the MCP SDK's import time;
5. what thousands of warm Python runs leave behind: the memory, descriptors and threads of the
   server and of the two processes that live below it (the launcher and the warm template)
   before and after; then, below each server, zombies and any other process, and workdirs in
   its run root.

It prints a table and writes the numbers as JSON. A wrong answer, a zombie, a leftover
workdir or a stray process is printed loudly and makes it exit 1: those are bugs, whatever
the machine. The timings are marked as meeting their targets or not, but never fail the run:
other load on the machine moves them.
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
import signal
import statistics
import subprocess  # nosec B404 # mount, umount and stat on the benchmark's own directory
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mcp import Client, MCPError, StdioServerParameters

# How many warm runs the server keeps started ahead of their calls: that many may wait below
# its template, each with a workdir, and are not leftovers. Read from the server's own code so
# that the allowance cannot drift from what it does.
from sandbox_mcp.sandbox.runner import STANDBY_RUNS
from sandbox_mcp.sandbox.warm_java import BOOTSTRAP_CLASS
from sandbox_mcp.sandbox.warm_node import BOOTSTRAP as NODE_PRELOAD

# Java runs the warm server keeps on standby (SANDBOX_WARM_JAVA, set where it is started):
# each is a supervisor below the launcher with one JVM below it, and a workdir.
JAVA_STANDBY_RUNS = 1

SERVER = Path(sys.executable).parent / "sandbox-mcp"
TOKEN = re.compile(r"bench-[0-9a-f]{16}")
IN_FLIGHT = (8, 32)
FLOOR_IN_FLIGHT = 8
LEAK_IN_FLIGHT = 8
# How long a server's runs may take to be gone before what is left below it counts as leaked:
# a supervisor that has just answered is still exiting, and its launcher reaps it after.
SETTLE_SECONDS = 3.0
# The servers measured side by side, each with the SANDBOX_WARM it is started with.
SERVERS = {"warm": "python,javascript", "cold": "off"}
# The languages measured through both servers; every other one goes through the warm server.
BOTH_SERVERS = ("python", "javascript", "java")
# Each server's part of the uid range from --uid-base: two servers fit in the 64 uids that one
# slot of the test suite has, and 32 is plenty for 8 runs at a time.
UIDS_PER_SERVER = 32
# The processes meant to live below a server between runs, known by their command lines. Each
# forks a supervisor per run that keeps its command line, so only a direct child of the
# server counts.
RESIDENTS = {
    "launcher": "sandbox_mcp.sandbox.launcher",
    "template": "sandbox_mcp.sandbox import warm",
}
# The targets the server is built to, per row of the report: what is read (a key of `ratios`,
# or p50_ms, a call's own p50 one at a time), the bound and its unit. Reported beside the
# numbers, never a reason to fail.
ROW_TARGETS: dict[str, tuple[tuple[str, str, str, float, str], ...]] = {
    "python-cold": (
        ("overhead p50", "overhead_p50_ms", "at most", 3.0, "ms"),
        ("runs/s at 8, of floor", "throughput_pct_8", "at least", 85.0, "%"),
    ),
    "python-warm": (
        ("call p50, whole stack", "p50_ms", "at most", 2.0, "ms"),
        ("runs/s at 8, of floor", "throughput_pct_8", "at least", 200.0, "%"),
    ),
    "javascript-cold": (
        ("overhead p50", "overhead_p50_ms", "at most", 2.0, "ms"),
        ("runs/s at 8, of floor", "throughput_pct_8", "at least", 90.0, "%"),
    ),
    "javascript-warm": (
        ("call p50, whole stack", "p50_ms", "at most", 2.0, "ms"),
        ("runs/s at 8, of floor", "throughput_pct_8", "at least", 90.0, "%"),
    ),
    "java-warm": (("hello world, call p50", "p50_ms", "at most", 150.0, "ms"),),
}
COLD_START_OVER_IMPORT_MS = 150.0  # the cold start's target: the SDK's import plus this
LEAK_RSS_MB = 5.0  # the leak check's target: each watched process grows by less than this


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
class Row:
    """A language through one of the servers: a line of the report and a key of the JSON."""

    key: str  # "python-warm", "javascript-cold"; the language's id when one server runs it
    label: str  # "python (warm)"
    language: Language
    server: str  # a key of SERVERS


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

    @property
    def rows(self) -> tuple[Row, ...]:
        """Python, JavaScript and Java through both servers, every other language through
        the default (warm) one."""
        found = []
        for language in self.languages:
            if language.id in BOTH_SERVERS:
                found += [
                    Row(f"{language.id}-{name}", f"{language.id} ({name})", language, name)
                    for name in SERVERS
                ]
            else:
                found.append(Row(language.id, language.id, language, "warm"))
        return tuple(found)

    def uid_base_of(self, server: str) -> int:
        """The first uid of `server`'s pool: each server has UIDS_PER_SERVER of its own."""
        return self.uid_base + UIDS_PER_SERVER * list(SERVERS).index(server)

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
        help="warm Python runs of the leak check (default 5000, smoke 50)",
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
        # Above the tests' ranges (100000 + 64 * up to 8000, below 612000), so that a benchmark
        # and a test session on one machine do not refuse each other's pool. Fixed, not per
        # process: two benchmarks at once measure nothing anyway.
        default=700000,
        help=f"first uid of the servers' pools in pool mode, {UIDS_PER_SERVER} each "
        "(default: %(default)s)",
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


async def measure_in_turn(
    count: int, runs: dict[str, Callable[[], Awaitable[Outcome]]]
) -> dict[str, Measurement]:
    """Make `count` runs of each, one at a time, taking turns run by run.

    Taking turns puts every side under the same load, however it moves meanwhile. The order
    rotates each round so that no side always follows the same one. A side's seconds are the
    sum of its own runs.
    """
    names = list(runs)
    outcomes: dict[str, list[Outcome]] = {name: [] for name in names}
    for turn in range(count):
        start = turn % len(names)
        for name in names[start:] + names[:start]:
            outcomes[name].append(await runs[name]())
    return {
        name: Measurement(1, tuple(found), sum(outcome.ms for outcome in found) / 1000)
        for name, found in outcomes.items()
    }


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


def server_params(server: str, run_root: Path, uid_base: int) -> StdioServerParameters:
    """The server as a client would start it: PATH and HOME passed on, a run root of its own.

    `server` names the SANDBOX_WARM it gets (see SERVERS), set even where it is the default so
    that a change of default does not change what the benchmark measures unnoticed.
    """
    return StdioServerParameters(
        command=str(SERVER),
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "SANDBOX_RUN_ROOT": str(run_root),
            "SANDBOX_UID_BASE": str(uid_base),
            "SANDBOX_UID_COUNT": str(UIDS_PER_SERVER),
            "SANDBOX_WARM": SERVERS[server],
            "SANDBOX_WARM_JAVA": str(JAVA_STANDBY_RUNS),
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


def started_servers() -> set[int]:
    """The pids of the sandbox-mcp servers this process has started and that still run."""
    return {
        pid
        for pid, (parent, _) in process_table().items()
        if parent == os.getpid() and str(SERVER) in command_line(pid)
    }


def find_residents(server: int) -> dict[str, int]:
    """The server's launcher and warm template, those of them that are there: name -> pid."""
    children = [pid for pid, (parent, _) in process_table().items() if parent == server]
    found = {}
    for pid in children:
        line = command_line(pid)
        for name, marker in RESIDENTS.items():
            if marker in line:
                found[name] = pid
    return {name: found[name] for name in RESIDENTS if name in found}


def expected_residents(server: str) -> tuple[str, ...]:
    """What should live below `server` between runs: the launcher, and the template if warm."""
    return ("launcher", "template") if "python" in warm_languages(server) else ("launcher",)


def warm_languages(server: str) -> tuple[str, ...]:
    """The languages `server` keeps runs on standby for, from its SANDBOX_WARM."""
    value = SERVERS[server]
    return () if value == "off" else tuple(value.split(","))


@dataclass(frozen=True)
class Footprint:
    """A process's resident memory, threads and open descriptors, read from /proc."""

    rss_kb: int
    threads: int
    fds: int | None  # None: unreadable, as a non-dumpable process's are to a non-root reader
    cpu_s: float = 0.0  # user and system time of the process itself
    reaped_cpu_s: float = 0.0  # and of its children that it has reaped, theirs included

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
        # Fields 14 to 17 of proc(5): utime, stime, cutime, cstime, in clock ticks.
        times = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:15]
        ticks = [int(value) / os.sysconf("SC_CLK_TCK") for value in times]
        return cls(
            rss_kb=int(status["VmRSS"][0]),
            threads=int(status["Threads"][0]),
            fds=fds,
            cpu_s=ticks[0] + ticks[1],
            reaped_cpu_s=ticks[2] + ticks[3],
        )

    def as_json(self) -> dict[str, int | float | None]:
        return {
            "rss_kb": self.rss_kb,
            "threads": self.threads,
            "fds": self.fds,
            "cpu_s": round(self.cpu_s, 2),
            "reaped_cpu_s": round(self.reaped_cpu_s, 2),
        }


@dataclass(frozen=True)
class Below:
    """What is below a server besides its residents, sorted out, in pids."""

    standby: tuple[int, ...]  # supervisors of warm runs waiting for their calls
    zombies: tuple[int, ...]
    other: tuple[int, ...]  # alive, and neither a resident nor part of a run on standby


def sort_below(server: int, residents: dict[str, int], warm: tuple[str, ...]) -> Below:
    """Look below `server`, whose runs of the languages `warm` are warm, now.

    A run on standby is a supervisor with one live process below it, its program waiting for
    the go: forked from the template for Python, from the launcher for JavaScript (its
    program is node with the preload) and for Java (a JVM running the bootstrap class). Up
    to STANDBY_RUNS of Python's and JavaScript's and JAVA_STANDBY_RUNS of Java's are the
    server's due. A run whose supervisor hung after its answer with one process left looks
    the same: it is caught here only beyond those, and after the exit (`left_running`) only
    if the server's shutdown did not end it.
    """
    table = process_table()
    below = [pid for pid in descendants(server, table) if pid not in residents.values()]
    zombies = tuple(pid for pid in below if table[pid][1] == "Z")
    standby: list[int] = []
    # Where each language's runs wait: below which resident, told apart by their program.
    kinds = [
        ("python", "template", lambda command: True, STANDBY_RUNS),
        ("javascript", "launcher", lambda command: NODE_PRELOAD in command, STANDBY_RUNS),
        ("java", "launcher", lambda command: BOOTSTRAP_CLASS in command, JAVA_STANDBY_RUNS),
    ]
    for language, resident, is_its, most in kinds:
        if language not in warm and not (language == "java" and warm):
            continue
        due = 0
        for pid in sorted(pid for pid in below if table[pid][0] == residents.get(resident)):
            program = descendants(pid, table)
            waiting = len(program) == 1 and not set(program) & set(zombies)
            mine = waiting and is_its(command_line(program[0]).split())
            if mine and pid not in zombies and pid not in standby and due < most:
                standby.append(pid)
                due += 1
    on_standby = {pid for supervisor in standby for pid in descendants(supervisor, table)}
    on_standby.update(standby)
    other = tuple(pid for pid in below if pid not in on_standby and pid not in zombies)
    return Below(tuple(standby), zombies, other)


def uid_processes(uids: range) -> list[int]:
    """Processes running as any of `uids`: real, effective, saved or file system uid."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:"):
                if any(int(uid) in uids for uid in line.split()[1:]):
                    found.append(int(entry))
                break
    return found


def describe(pid: int, residents: dict[str, int] | None = None) -> str:
    """A process for the report: its pid and command line, or the resident it was forked from.

    A supervisor keeps the command line of the resident that forked it, for the template a
    long one across several lines: naming the resident says as much.
    """
    line = command_line(pid)
    for name, resident in (residents or {}).items():
        if line and line == command_line(resident):
            return f"{pid}, forked from the {name}"
    return f"{pid} {' '.join(line.split())[:120]}" if line else str(pid)


# --- the phases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Startup:
    """The server's cold start and, beside it, what importing the SDK alone costs."""

    cold_ms: tuple[float, ...]  # spawn to the first tools/list answer, one per start
    import_ms: float
    interpreter_ms: float
    import_method: str


@dataclass(frozen=True)
class Server:
    """A running sandbox-mcp that calls go through, and the processes that live below it."""

    name: str  # a key of SERVERS
    client: Client
    pid: int
    run_root: Path
    info: dict[str, Any]  # server_info's structured answer
    residents: dict[str, int]  # launcher and template, as found when it first answered


@dataclass(frozen=True)
class LeakCheck:
    """The warm server, its launcher and its template before and after many Python runs."""

    runs: Measurement
    before: dict[str, Footprint]  # "server", "launcher", "template" -> footprint
    after: dict[str, Footprint]
    client_cpu_s: float = 0.0  # the benchmark's own, as the MCP client, over the runs

    def cpu_ms_per_run(self) -> dict[str, float]:
        """Where a warm run's CPU time goes, in ms per run: the client, the server, the
        template's own work (its forks), and the supervisors and programs it forked.

        From the processes' own accounting, which other load on the machine moves far less
        than the clock. The template reaps its supervisors, and they their programs: their
        time lands in its children's count as they end, so runs on standby at either end of
        the check count in one place or the other.
        """
        count = max(1, self.runs.runs)

        def spent(name: str, field: str) -> float:
            if name not in self.before:
                return 0.0
            return (getattr(self.after[name], field) - getattr(self.before[name], field)) * 1000

        return {
            "client": self.client_cpu_s * 1000 / count,
            "server": spent("server", "cpu_s") / count,
            "template": spent("template", "cpu_s") / count,
            "supervisors and programs": spent("template", "reaped_cpu_s") / count,
        }

    @property
    def rss_growth_mb(self) -> dict[str, float]:
        """How much each watched process's resident memory grew, in MB."""
        return {
            name: (self.after[name].rss_kb - before.rss_kb) / 1024
            for name, before in self.before.items()
        }


@dataclass(frozen=True)
class Leftovers:
    """What one server had below it and in its run root once its runs were over, and after."""

    missing: tuple[str, ...]  # residents not there from the first answer to the end
    standby: int  # warm runs waiting for their calls, up to STANDBY_RUNS per warm language
    zombies: int
    stray: tuple[str, ...]  # other live processes below the server, described
    workdirs: tuple[str, ...]  # in the run root after the runs, one per run on standby due
    workdirs_after_exit: tuple[str, ...] = ()
    # Processes running as one of the server's uids once it has exited; None in shared mode,
    # where that uid is the benchmark's own and tells nothing.
    running_after_exit: tuple[str, ...] | None = None

    @property
    def workdirs_left(self) -> int:
        """Workdirs in the run root beyond the one each run on standby has."""
        return max(0, len(self.workdirs) - self.standby)

    def as_json(self) -> dict[str, Any]:
        running = self.running_after_exit
        return {
            "missing_residents": list(self.missing),
            "standby_runs": self.standby,
            "zombies": self.zombies,
            "stray_processes": list(self.stray),
            "workdirs_left": self.workdirs_left,
            "workdirs_left_after_exit": len(self.workdirs_after_exit),
            "processes_left_after_exit": None if running is None else list(running),
        }


@dataclass(frozen=True)
class Results:
    """Everything one benchmark run measured."""

    started_at: datetime
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    info: dict[str, dict[str, Any]]  # server name -> server_info's structured answer
    versions: dict[str, str | None]  # language -> runtime version, from list_languages
    startup: Startup
    rows: tuple[Row, ...]
    floors: dict[str, dict[str, Measurement]]  # language -> "sequential" or width -> batch
    stacks: dict[str, dict[str, Measurement]]  # row key -> "sequential" or width -> batch
    leak: LeakCheck
    leftovers: dict[str, Leftovers]  # server name -> what it left
    filesystem: str  # where the run roots and the floor's directory live


def say(message: str) -> None:
    """Progress on stderr, so that stdout holds only the report."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def workdirs(run_root: Path) -> tuple[str, ...]:
    """What is in the run root now."""
    return tuple(sorted(entry.name for entry in run_root.iterdir())) if run_root.exists() else ()


async def measure_startup(
    starts: int, run_root: Path, uid_base: int, cwd: Path, env: dict[str, str]
) -> Startup:
    """Median cold start of the default server through the client's connect, and SDK import."""
    cold = []
    for _ in range(starts):
        started = time.perf_counter()
        async with Client(server_params("warm", run_root, uid_base)) as client:
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


async def open_servers(exits: AsyncExitStack, plan: Plan, scratch: Path) -> dict[str, Server]:
    """Start every server of SERVERS on a run root of its own; check each runs Python as asked.

    They start one after another and are then asked for server_info together: a server
    answers it once it has read its runtimes' versions, seconds of JVM starts, and both read
    theirs at once.
    """
    started = {}
    for name in SERVERS:
        running = started_servers()
        run_root = scratch / f"runs-{name}"
        params = server_params(name, run_root, plan.uid_base_of(name))
        client = await exits.enter_async_context(Client(params))
        new = started_servers() - running
        if len(new) != 1:
            raise BenchError(f"expected one new sandbox-mcp child of this process, found {new}")
        started[name] = (client, new.pop(), run_root)

    answers = await asyncio.gather(
        *(client.call_tool("server_info", {}) for client, _, _ in started.values())
    )
    servers = {}
    for (name, (client, pid, run_root)), answer in zip(started.items(), answers, strict=True):
        info = answer.structured_content or {}
        if set(info.get("warm_languages", [])) != set(warm_languages(name)):
            raise BenchError(
                f"the {name} server, started with SANDBOX_WARM={SERVERS[name]}, reports "
                f"warm_languages {info.get('warm_languages')}; its stderr above says why"
            )
        residents = find_residents(pid)
        named = ", ".join(f"{resident} {found}" for resident, found in residents.items())
        say(f"{name} server pid {pid} ({named}), identity {info.get('identity')}")
        servers[name] = Server(name, client, pid, run_root, info, residents)
    return servers


async def measure_language(
    plan: Plan,
    language: Language,
    servers: dict[str, Server],
    cwd: Path,
    env: dict[str, str],
) -> tuple[dict[str, Measurement], dict[str, dict[str, Measurement]]]:
    """The floor and each row of one language, taking turns so that all see the same load."""
    rows = [row for row in plan.rows if row.language == language]
    floor = floor_run(language, cwd, env)
    stack = {row.key: stack_run(servers[row.server].client, language) for row in rows}
    sides = {"floor": floor, **stack}
    for _ in range(plan.warmup):
        for run in sides.values():
            await run()

    count = plan.sequential(language)
    names = ", ".join(["bare", *(row.label for row in rows)])
    say(f"{language.id}: {count} runs one at a time each, in turn: {names}")
    alone = await measure_in_turn(count, sides)
    floors = {"sequential": alone["floor"]}
    stacks = {row.key: {"sequential": alone[row.key]} for row in rows}

    # In flight a batch's rate is the number, so each side has its own batch, one after
    # another: the floor, then every row at 8, then every row at 32.
    count = plan.in_flight(language, FLOOR_IN_FLIGHT)
    say(f"{language.id}: {count} bare runs, {FLOOR_IN_FLIGHT} at a time")
    floors[str(FLOOR_IN_FLIGHT)] = await measure(count, FLOOR_IN_FLIGHT, floor)
    for width in IN_FLIGHT:
        count = plan.in_flight(language, width)
        for row in rows:
            say(f"{row.label}: {count} calls, {width} in flight")
            stacks[row.key][str(width)] = await measure(count, width, stack[row.key])
    return floors, stacks


async def check_leaks(plan: Plan, server: Server) -> LeakCheck:
    """Read the server and its residents, make many Python runs through it, read them again."""
    watched = {"server": server.pid, **server.residents}
    before = {name: Footprint.read(pid) for name, pid in watched.items()}

    say(f"leak check: {plan.leak_runs} Python runs, {LEAK_IN_FLIGHT} in flight, {server.name}")
    python = LANGUAGES["python"]
    client_before = os.times()
    runs = await measure(plan.leak_runs, LEAK_IN_FLIGHT, stack_run(server.client, python))
    client_after = os.times()

    after = {name: Footprint.read(pid) for name, pid in watched.items()}
    client_cpu = (client_after.user + client_after.system) - (
        client_before.user + client_before.system
    )
    return LeakCheck(runs=runs, before=before, after=after, client_cpu_s=client_cpu)


async def look_below(server: Server) -> Leftovers:
    """Once its runs are over: the server's residents, its runs on standby, anything else below
    it, and its run root.

    Waits up to SETTLE_SECONDS for the last runs' supervisors to go (they exit after their
    answers) and for two looks in a row to agree, the run root read between them: the server
    refills its standby runs in the background.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        warm = warm_languages(server.name)
        first = sort_below(server.pid, server.residents, warm)
        found = workdirs(server.run_root)
        below = sort_below(server.pid, server.residents, warm)
        clean = not below.zombies and not below.other and len(found) <= len(below.standby)
        if (first == below and clean) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)

    now = find_residents(server.pid)
    missing = tuple(
        name
        for name in expected_residents(server.name)
        if name not in server.residents or now.get(name) != server.residents[name]
    )
    return Leftovers(
        missing=missing,
        standby=len(below.standby),
        zombies=len(below.zombies),
        stray=tuple(describe(pid, server.residents) for pid in below.other),
        workdirs=found,
    )


async def left_running(uids: range) -> tuple[str, ...]:
    """Processes still running as one of `uids` after SETTLE_SECONDS, or none at once."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while (found := uid_processes(uids)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return tuple(describe(pid) for pid in found)


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
    filesystem = mount_tmpfs(scratch)
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
        starts_root = scratch / "starts"
        startup = await measure_startup(plan.starts, starts_root, plan.uid_base, cwd, env)

        # 3. The two servers, up side by side for the rest: the floor and every row per
        # language, then the leak check through the warm one, then what each left below it.
        async with AsyncExitStack() as exits:
            servers = await open_servers(exits, plan, scratch)
            default = servers["warm"]
            listed = (await default.client.call_tool("list_languages", {})).structured_content
            versions = {
                entry["id"]: entry["version"]
                for entry in (listed or {}).get("languages", [])
                if entry["available"]
            }
            missing = [language.id for language in plan.languages if language.id not in versions]
            if missing:
                raise BenchError(f"the server cannot run {missing}; list_languages says why")

            floors, stacks = {}, {}
            for language in plan.languages:
                floors[language.id], found = await measure_language(
                    plan, language, servers, cwd, env
                )
                stacks.update(found)
            leak = await check_leaks(plan, default)
            leftovers = {name: await look_below(server) for name, server in servers.items()}

        # 4. A server removes its empty run root when it closes, and no process of its runs
        # outlives it: anything in the run root, or running as one of its uids, was left.
        for name, left in leftovers.items():
            uids = range(plan.uid_base_of(name), plan.uid_base_of(name) + UIDS_PER_SERVER)
            pool = servers[name].info.get("identity") == "pool"
            leftovers[name] = replace(
                left,
                workdirs_after_exit=workdirs(servers[name].run_root),
                running_after_exit=await left_running(uids) if pool else None,
            )
    finally:
        if filesystem.startswith("tmpfs"):
            # Lazily: after an interruption a server may still hold a directory in it.
            subprocess.run(["umount", "--lazy", str(scratch)], check=False)  # nosec B603 B607
        shutil.rmtree(scratch, ignore_errors=True)

    return Results(
        started_at=started_at,
        load_before=load_before,
        load_after=os.getloadavg(),
        info={name: server.info for name, server in servers.items()},
        versions=versions,
        startup=startup,
        rows=plan.rows,
        floors=floors,
        stacks=stacks,
        leak=leak,
        leftovers=leftovers,
        filesystem=filesystem,
    )


def mount_tmpfs(scratch: Path) -> str:
    """Put the benchmark's directory on a tmpfs of its own, as `docker run --tmpfs /tmp` puts
    the server's run root; where that cannot be done (not root), say what it is on instead.

    On this project's test machine /tmp is ext4 on a virtual disk, where making and removing
    a run's directories costs about 0.7 ms more than on a tmpfs.
    """
    if os.geteuid() == 0:
        mounted = subprocess.run(  # nosec B603 B607 # a fixed command on our own directory
            ["mount", "-t", "tmpfs", "-o", "size=2g,mode=0755", "sandbox-mcp-bench", str(scratch)],
            capture_output=True,
            check=False,
        )
        if mounted.returncode == 0:
            return "tmpfs (as the container's --tmpfs /tmp)"
    kind = subprocess.run(  # nosec B603 B607
        ["stat", "-f", "-c", "%T", str(scratch)], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"{kind or 'unknown'} (the machine's {scratch.parent}; not root, so no tmpfs of its own)"


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A target the server is built to, beside what this run measured; never judged."""

    subject: str  # a row's label, or the part of the report it is about
    measure: str
    value: float
    bound: str  # "at most", "at least" or "under"
    limit: float
    unit: str  # "ms", "%" or "MB"

    @property
    def met(self) -> bool:
        if self.bound == "at most":
            return self.value <= self.limit
        if self.bound == "at least":
            return self.value >= self.limit
        return self.value < self.limit

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "measure": self.measure,
            "value": round(self.value, 2),
            "bound": self.bound,
            "limit": round(self.limit, 2),
            "unit": self.unit,
            "met": self.met,
        }


def problems(results: Results) -> list[str]:
    """What is wrong whatever the machine: wrong answers, zombies, strays, leftover workdirs."""
    found = []
    batches = [(f"{language} bare", by) for language, by in results.floors.items()]
    batches += [(f"{row.label} stack", results.stacks[row.key]) for row in results.rows]
    batches.append(("leak check", {str(LEAK_IN_FLIGHT): results.leak.runs}))
    for where, by_width in batches:
        for width, batch in by_width.items():
            if batch.correct < batch.runs:
                found.append(
                    f"{where} {width}: {batch.runs - batch.correct} of {batch.runs} answers "
                    f"wrong, e.g. {batch.problems()}"
                )
    for name, left in results.leftovers.items():
        found += [
            f"{name} server: its {resident} was not below it from the first call to the last"
            for resident in left.missing
        ]
        if left.zombies:
            found.append(f"{name} server: {left.zombies} zombies below it")
        if left.stray:
            found.append(f"{name} server: processes left below it: {list(left.stray)}")
        if left.workdirs_left:
            found.append(
                f"{name} server: {len(left.workdirs)} workdirs in its run root for "
                f"{left.standby} runs on standby: {list(left.workdirs[:5])}"
            )
        if left.workdirs_after_exit:
            found.append(
                f"{name} server: workdirs left after it exited: "
                f"{list(left.workdirs_after_exit[:5])}"
            )
        if left.running_after_exit:
            found.append(
                f"{name} server: processes of its uids left after it exited: "
                f"{list(left.running_after_exit[:5])}"
            )
    return found


def exact(results: Results) -> tuple[int, int]:
    """Correct answers and all answers, over every call through the stack."""
    batches = [batch for by_width in results.stacks.values() for batch in by_width.values()]
    batches.append(results.leak.runs)
    return sum(batch.correct for batch in batches), sum(batch.runs for batch in batches)


def ratios(results: Results, row: Row) -> dict[str, float]:
    """Overhead in ms at the median, and the row's throughput as a share of its floor's."""
    floor, stack = results.floors[row.language.id], results.stacks[row.key]
    floor_rate = floor[str(FLOOR_IN_FLIGHT)].runs_per_s
    found = {"overhead_p50_ms": stack["sequential"].p50_ms - floor["sequential"].p50_ms}
    for width in IN_FLIGHT:
        found[f"throughput_pct_{width}"] = 100 * stack[str(width)].runs_per_s / floor_rate
    return found


def targets(results: Results) -> list[Target]:
    """Every target this run has a number for: per row, the cold start, the leak check."""
    found = []
    for row in results.rows:
        readings = {
            **ratios(results, row),
            "p50_ms": results.stacks[row.key]["sequential"].p50_ms,
        }
        found += [
            Target(row.label, measure, readings[key], bound, limit, unit)
            for measure, key, bound, limit, unit in ROW_TARGETS.get(row.key, ())
        ]

    startup = results.startup
    found.append(
        Target(
            "server",
            f"cold start, SDK import + {COLD_START_OVER_IMPORT_MS:.0f}",
            statistics.median(startup.cold_ms),
            "at most",
            startup.import_ms + COLD_START_OVER_IMPORT_MS,
            "ms",
        )
    )
    growth = results.leak.rss_growth_mb
    worst = max(growth, key=lambda name: growth[name])
    found.append(
        Target(
            "leak check",
            f"RSS growth, largest ({worst})",
            growth[worst],
            "under",
            LEAK_RSS_MB,
            "MB",
        )
    )
    return found


def as_json(plan: Plan, results: Results, found: list[str]) -> dict[str, Any]:
    """Every section, each batch with its runs, exactness and timings."""
    correct, total = exact(results)
    startup, leak = results.startup, results.leak
    info = results.info["warm"]
    return {
        "meta": {
            "started_at": results.started_at.isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "load_average_before": [round(value, 2) for value in results.load_before],
            "load_average_after": [round(value, 2) for value in results.load_after],
            "filesystem": results.filesystem,
            "server_version": info.get("version"),
            "sdk_version": info.get("sdk_version"),
            "identity": info.get("identity"),
            "server_uid": info.get("server_uid"),
            "runtime_versions": {lang.id: results.versions.get(lang.id) for lang in plan.languages},
            "smoke": plan.smoke,
            "runs": plan.runs,
            "calls": plan.calls,
            "leak_runs": plan.leak_runs,
        },
        "servers": {
            name: {
                "sandbox_warm": SERVERS[name],
                "uid_base": plan.uid_base_of(name),
                "warm_languages": server_info.get("warm_languages"),
            }
            for name, server_info in results.info.items()
        },
        "rows": {
            row.key: {"label": row.label, "language": row.language.id, "server": row.server}
            for row in results.rows
        },
        "floor": {
            language: {width: batch.as_json() for width, batch in by_width.items()}
            for language, by_width in results.floors.items()
        },
        "stack": {
            row.key: {width: batch.as_json() for width, batch in results.stacks[row.key].items()}
            for row in results.rows
        },
        "ratios": {
            row.key: {key: round(value, 2) for key, value in ratios(results, row).items()}
            for row in results.rows
        },
        "targets": [target.as_json() for target in targets(results)],
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
            "server": "warm",
            "runs": leak.runs.as_json(),
            "before": {name: footprint.as_json() for name, footprint in leak.before.items()},
            "after": {name: footprint.as_json() for name, footprint in leak.after.items()},
            "cpu_ms_per_run": {
                name: round(value, 2) for name, value in leak.cpu_ms_per_run().items()
            },
        },
        "leftovers": {name: left.as_json() for name, left in results.leftovers.items()},
        "ok": not found,
        "problems": found,
    }


def render(plan: Plan, results: Results, found: list[str]) -> str:
    """The report a person reads."""
    info = results.info["warm"]
    mode = {
        "pool": "pool (each run its own uid)",
        "shared": "shared (runs use the server's uid)",
    }.get(info.get("identity"), str(info.get("identity")))
    load, load_after = (
        " ".join(f"{value:.2f}" for value in loads)
        for loads in (results.load_before, results.load_after)
    )
    lines = [
        f"sandbox-mcp {info.get('version')} benchmark, "
        f"{results.started_at.isoformat(timespec='seconds')}"
        + (" (smoke: tiny counts, the timings mean nothing)" if plan.smoke else ""),
        f"MCP SDK {info.get('sdk_version')}; identity {mode}; server uid {info.get('server_uid')}",
        f"{os.cpu_count()} CPUs, Linux {platform.release()}, load average {load} at the start, "
        f"{load_after} at the end: other work on the machine moves every timing",
        "floor: the bare runtime started from asyncio; stack: execute_code through the MCP "
        "client over stdio",
        f"run roots and the floor's directory on {results.filesystem}",
        "(warm): the default server, whose Python runs fork a template interpreter started "
        "in advance, whose JavaScript runs are nodes started before their calls, and whose "
        "Java runs are JVMs started before their calls with their compiler warm;",
        "(cold): a second server with SANDBOX_WARM=off, a fresh runtime per run; "
        "other languages: the default server",
        "",
        "One at a time, ms per run",
    ]
    rows = []
    for row in results.rows:
        floor = results.floors[row.language.id]["sequential"]
        alone = results.stacks[row.key]["sequential"]
        rows.append(
            [
                row.label,
                str(alone.runs),
                f"{floor.p50_ms:.1f}",
                f"{floor.p95_ms:.1f}",
                f"{alone.p50_ms:.1f}",
                f"{alone.p95_ms:.1f}",
                f"{ratios(results, row)['overhead_p50_ms']:+.1f}",
                percent(alone.exact),
            ]
        )
    headers = ["", "runs", "floor p50", "p95", "stack p50", "p95", "overhead", "exact"]
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
    for row in results.rows:
        floor = results.floors[row.language.id][str(FLOOR_IN_FLIGHT)]
        shares = ratios(results, row)
        for width in IN_FLIGHT:
            batch = results.stacks[row.key][str(width)]
            rows.append(
                [
                    row.label,
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
    headers = ["", "in flight", "calls", "floor runs/s", "p50", "stack runs/s", "p50"]
    lines += table([*headers, "of floor", "exact"], rows)

    startup = results.startup
    samples = " ".join(f"{sample:.0f}" for sample in startup.cold_ms)
    lines += [
        "",
        "Server start (the default server)",
        f"  cold start, spawn to the first tools/list answer: "
        f"{statistics.median(startup.cold_ms):.0f} ms (median of {len(startup.cold_ms)}: "
        f"{samples})",
        f"  MCP SDK import alone: {startup.import_ms:.0f} ms ({startup.import_method}; "
        f"the bare interpreter: {startup.interpreter_ms:.0f} ms)",
    ]

    leak = results.leak
    lines += [
        "",
        f"Leak check: {leak.runs.runs} Python runs through the warm server, {LEAK_IN_FLIGHT} in "
        f"flight, {leak.runs.runs_per_s:.1f} runs/s, exact {percent(leak.runs.exact)}",
    ]
    rows = []
    for name, before in leak.before.items():
        after = leak.after[name]
        rows.append(
            [
                f"{name} RSS MB",
                f"{before.rss_kb / 1024:.1f}",
                f"{after.rss_kb / 1024:.1f}",
                f"{leak.rss_growth_mb[name]:+.1f}",
            ]
        )
        rows.append([f"{name} descriptors", *change(before.fds, after.fds)])
        rows.append([f"{name} threads", *change(before.threads, after.threads)])
    lines += table(["", "before", "after", "change"], rows)
    spent = leak.cpu_ms_per_run()
    total = sum(spent.values())
    lines += [
        "  CPU per warm run, ms: "
        + ", ".join(f"{name} {value:.2f}" for name, value in spent.items())
        + f"; {total:.2f} in all, so at most {(os.cpu_count() or 1) * 1000 / total:.0f} runs/s"
        f" on {os.cpu_count()} CPUs"
        if total
        else "  CPU per warm run: too few runs to measure"
    ]
    for name, left in results.leftovers.items():
        residents = " and ".join(expected_residents(name))
        running = left.running_after_exit
        after = str(len(running)) if running is not None else "not checked (shared mode)"
        lines += [
            f"  {name} server, its runs over: {residents} there throughout: "
            f"{'no' if left.missing else 'yes'}; runs on standby {left.standby}; zombies "
            f"{left.zombies}; other processes {len(left.stray)}; workdirs left "
            f"{left.workdirs_left}",
            f"  {name} server, exited: workdirs left {len(left.workdirs_after_exit)}; processes "
            f"of its uids {after}",
        ]

    found_targets = targets(results)
    lines += [
        "",
        "Targets: marked, never a reason to fail (other load on the machine moves timings)",
    ]
    rows = [
        [
            target.subject,
            target.measure,
            amount(target.value, target.unit),
            f"{target.bound} {amount(target.limit, target.unit)}",
            "met" if target.met else "not met",
        ]
        for target in found_targets
    ]
    lines += table(["", "measure", "measured", "target", ""], rows, left=2)

    lines.append("")
    met = sum(target.met for target in found_targets)
    if found:
        lines += ["!" * 80, "!! BENCHMARK FAILED", *(f"!! {problem}" for problem in found)]
        lines.append("!" * 80)
    else:
        lines.append(
            f"All {exact(results)[1]} answers exact; nothing left behind. "
            f"Targets met: {met} of {len(found_targets)}."
        )
    return "\n".join(lines)


def amount(value: float, unit: str) -> str:
    """A measured or target value with its unit."""
    return f"{value:.0f}%" if unit == "%" else f"{value:.1f} {unit}"


def percent(share: float) -> str:
    """A share as a percentage that never rounds a wrong answer up to 100%."""
    return "100%" if share == 1 else f"{math.floor(share * 1000) / 10:.1f}%"


def change(before: int | None, after: int | None) -> list[str]:
    """Before, after and the difference, for counts that may be unreadable."""
    if before is None or after is None:
        return ["unreadable", "unreadable", ""]
    return [str(before), str(after), f"{after - before:+d}"]


def table(headers: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Columns padded to their widest cell: the first `left` left-aligned, the rest right."""
    widths = [max(len(row[column]) for row in [headers, *rows]) for column in range(len(headers))]

    def line(cells: list[str]) -> str:
        padded = [
            cell.ljust(width) if column < left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return ("  " + "  ".join(padded)).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc`, unwrapped from any exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the report, write the JSON; 1 if an answer was wrong or something leaked."""
    plan = parse_plan(argv)
    # SIGTERM ends the benchmark as Ctrl-C does, through its clean-up: the servers stopped,
    # the tmpfs unmounted, the scratch directory removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        results = asyncio.run(bench(plan))
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped and scratch files removed", file=sys.stderr)
        return 130
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
