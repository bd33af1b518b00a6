"""The container contract, tested without Docker.

The server is started the way `docker run --read-only --tmpfs /tmp --network none --cap-drop
ALL --security-opt no-new-privileges` starts it: in its own mount, network and pid
namespaces, with a read-only root, a fresh tmpfs on /tmp, only a loopback interface, and then
either as uid 65534 with no capabilities (shared mode) or as root with only SETUID and SETGID
(the privilege-separated pool mode), under Docker's default seccomp profile (loaded by
tests/docker_seccomp.py). A battery of hostile snippets runs through the official MCP client
in both; after each the server must still serve.

What is not reproduced here: Docker's AppArmor profile (docker-default), which confines
mounts, /proc and /sys writes that the namespaces and the read-only root already refuse.
Needs root, to make the namespaces; the non-root test pass skips it, saying so.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.support import IS_ROOT, NOBODY, server_command, uid_base

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not IS_ROOT, reason="making the container's namespaces needs root"),
]


# The checkout whose server is tested. When it lies under /tmp (a CI clone, say), the fresh
# tmpfs would hide it: it is carried over through /mnt, read-only, as an image's files are.
CHECKOUT = str(Path(server_command()).parent.parent.parent)


def container(tmp_options: str) -> tuple[str, ...]:
    """The docker flags, as namespaces and mounts: read-only root, tmpfs /tmp, no network."""
    keep = CHECKOUT.startswith("/tmp/")
    mounts = (
        "mount --rbind / / && mount -o remount,bind,ro / && "
        + (f"mount -n --bind {CHECKOUT} /mnt && " if keep else "")
        + f"mount -t tmpfs -o {tmp_options},nosuid,nodev,size=2g,mode=1777 tmpfs /tmp && "
        + (f"mkdir -p {CHECKOUT} && mount -n --move /mnt {CHECKOUT} && " if keep else "")
        + 'ip link set lo up && exec "$@"'
    )
    return (
        "unshare",
        "--mount",
        "--net",
        "--pid",
        "--fork",
        "--mount-proc",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        mounts,
        "container",
    )


# docker run --cap-drop ALL --cap-add SETUID --cap-add SETGID (as root).
PRIVILEGE_SEPARATED = (
    "setpriv",
    "--bounding-set=-all,+setuid,+setgid",
    "--inh-caps=-all",
    "--no-new-privs",
    "--",
)

MODES = {
    # docker run --user 65534 --cap-drop ALL ... (the shared-uid mode)
    "shared": NOBODY,
    "pool": PRIVILEGE_SEPARATED,
}
CAPABILITIES = {"shared": "", "pool": "SETUID,SETGID"}

# Put in place by scripts/install-runtimes, from the distribution's copy of Docker's source.
DOCKER_PROFILE = Path("/usr/local/share/sandbox-mcp/docker-default-seccomp.json")


def docker_seccomp(mode: str) -> tuple[str, ...]:
    """Docker's default seccomp profile for the mode's capabilities, as `docker run` loads it."""
    if not DOCKER_PROFILE.is_file():
        pytest.fail(f"{DOCKER_PROFILE} is missing: run scripts/install-runtimes as root")
    loader = Path(CHECKOUT) / "tests" / "docker_seccomp.py"
    return (
        "/usr/bin/python3",
        str(loader),
        str(DOCKER_PROFILE),
        "--caps",
        CAPABILITIES[mode],
        "--",
    )


def params(mode: str, tmp_options: str = "exec", **env: str) -> StdioServerParameters:
    command = [*container(tmp_options), *MODES[mode], *docker_seccomp(mode), server_command()]
    return StdioServerParameters(
        command=command[0],
        args=command[1:],
        env={"SANDBOX_LOG_LEVEL": "warning", "SANDBOX_UID_BASE": str(uid_base(3)), **env},
    )


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", params=list(MODES))
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    async with Client(params(request.param)) as connected:
        yield connected


async def execute(client: Client, language: str, code: str, **extra: Any) -> Any:
    return await client.call_tool("execute_code", {"language": language, "code": code, **extra})


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return result.structured_content


@dataclass(frozen=True)
class Case:
    """A hostile snippet and what must be observed when it runs."""

    name: str
    language: str
    code: str
    expect: Callable[[Any], bool]
    timeout: float | None = None


def limit(name: str) -> Callable[[Any], bool]:
    return lambda result: ok(result)["limit"] == name


def refused(result: Any) -> bool:
    content = ok(result)
    return "refused" in content["stdout"] and "ALLOWED" not in content["stdout"]


def tool_error(fragment: str) -> Callable[[Any], bool]:
    return lambda result: result.is_error and fragment in result.content[0].text


def _try(statement: str) -> str:
    # A Python snippet that prints "refused" when `statement` fails and "ALLOWED" when not.
    return (
        f"try:\n    {statement}\n    print('ALLOWED')\n"
        "except Exception as exc:\n    print('refused', exc)\n"
    )


_FIND_SERVER = (
    "import os\n"
    "def server_pids():\n"
    "    for entry in os.listdir('/proc'):\n"
    "        if entry.isdigit() and int(entry) != os.getpid():\n"
    "            try:\n"
    "                if b'sandbox' in open(f'/proc/{entry}/cmdline', 'rb').read():\n"
    "                    yield int(entry)\n"
    "            except OSError:\n"
    "                pass\n"
)

CASES = [
    Case("fork bomb", "python", "import os\nwhile True:\n    os.fork()", limit("processes"), 10),
    Case("shell fork bomb", "bash", ":(){ :|:& };:\nsleep 3", lambda r: not r.is_error, 6),
    Case(
        "thread bomb",
        "python",
        "import threading, time\nwhile True:\n"
        "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()",
        limit("processes"),
        10,
    ),
    Case(
        "heap bomb",
        "python",
        "x = []\nwhile True:\n    x.append(bytearray(10**7))",
        limit("memory"),
    ),
    Case(
        "many small allocations",
        "python",
        "x = []\nwhile True:\n    x.append(' ' * 64)",
        limit("memory"),
        25,
    ),
    Case(
        "JVM heap bomb",
        "java",
        "import java.util.*;\nclass Main { public static void main(String[] a) {\n"
        "  List<long[]> l = new ArrayList<>(); while (true) l.add(new long[1_000_000]); } }",
        limit("memory"),
        25,
    ),
    Case(
        "Node heap bomb",
        "javascript",
        "const a = [];\nwhile (true) a.push({ x: new Array(1000).fill('y') });",
        limit("memory"),
        25,
    ),
    Case(
        "disk fill of the workdir",
        "python",
        "import time\nfor i in range(40):\n    open(f'f{i}', 'wb').write(b'x' * (32 << 20))\n"
        "time.sleep(3)",
        limit("disk"),
    ),
    Case(
        "disk fill of /tmp",
        "python",
        _try("open('/tmp/fill', 'wb').write(b'x' * (1 << 20))"),
        refused,
    ),
    Case("endless output", "bash", "yes flood", limit("output")),
    Case("one 50 MB line", "python", "print('x' * 50_000_000)", limit("output")),
    Case(
        "daemon by double fork and setsid",
        "bash",
        "( setsid sleep 4242 & ) ; ( ( sleep 4242 & ) & ) ; echo spawned",
        lambda r: ok(r)["stdout"] == "spawned\n" and ok(r)["exit_code"] == 0,
    ),
    Case(
        "SIGTERM ignored",
        "python",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)",
        lambda r: ok(r)["limit"] == "timeout" and ok(r)["signal"] == "SIGKILL",
        2,
    ),
    Case(
        "kill(-1)", "python", "import os, signal\n" + _try("os.kill(-1, signal.SIGKILL)"), refused
    ),
    Case(
        "killing the server",
        "python",
        _FIND_SERVER
        + "import signal\nfor pid in server_pids():\n"
        + "    try:\n        os.kill(pid, signal.SIGKILL)\n        print('ALLOWED', pid)\n"
        + "    except PermissionError:\n        print('refused', pid)\n",
        lambda r: "refused" in ok(r)["stdout"] and "ALLOWED" not in ok(r)["stdout"],
    ),
    Case(
        "the server's environment",
        "python",
        _FIND_SERVER
        + "for pid in server_pids():\n"
        + "    try:\n        open(f'/proc/{pid}/environ', 'rb').read()\n        print('ALLOWED')\n"
        + "    except OSError:\n        print('refused')\n",
        refused,
    ),
    Case(
        "the server's memory",
        "python",
        _FIND_SERVER
        + "for pid in server_pids():\n"
        + "    try:\n        open(f'/proc/{pid}/mem', 'rb').read(1)\n        print('ALLOWED')\n"
        + "    except OSError:\n        print('refused')\n",
        refused,
    ),
    Case(
        "symlink out of the workdir",
        "python",
        "import os\nos.symlink('..', 'up')\n" + _try("os.listdir('up')"),
        refused,
    ),
    Case(
        "writing outside the workdir", "python", _try("open('/etc/owned', 'w').write('x')"), refused
    ),
    Case(
        "internet socket",
        "python",
        "import socket\n" + _try("socket.socket(socket.AF_INET6)"),
        refused,
    ),
    Case(
        "DNS", "python", "import socket\n" + _try("socket.getaddrinfo('example.com', 80)"), refused
    ),
    Case(
        "raw socket",
        "python",
        "import socket\n" + _try("socket.socket(socket.AF_PACKET, socket.SOCK_RAW)"),
        refused,
    ),
    Case(
        # CPython stops reading a source file at a NUL byte: the code arrives intact, runs.
        "NUL bytes in code",
        "python",
        "print('a')\0print('b')",
        lambda r: ok(r)["stdout"].startswith("a") and ok(r)["exit_code"] is not None,
    ),
    Case(
        "deep recursion",
        "python",
        "import sys\nsys.setrecursionlimit(10**6)\ndef f(n):\n    return f(n + 1)\nf(0)",
        lambda r: ok(r)["exit_code"] != 0 or ok(r)["signal"] is not None,
    ),
    Case(
        "stack overflow in C",
        "c",
        "int f(int n) { volatile char b[4096]; b[0] = n; return f(n + 1) + b[0]; }\n"
        "int main(void) { return f(0); }",
        lambda r: ok(r)["signal"] == "SIGSEGV",
    ),
    Case(
        "descriptor exhaustion",
        "python",
        "files = []\nwhile True:\n    files.append(open('/dev/null'))",
        limit("open_files"),
    ),
    Case("/dev/shm leftovers", "python", _try("open('/dev/shm/left', 'w').write('x')"), refused),
    Case(
        "SysV shared memory",
        "python",
        "import ctypes\nid = ctypes.CDLL(None).shmget(0, 1 << 20, 0o1666)\n"
        "print('refused' if id == -1 else 'ALLOWED')",
        refused,
    ),
    Case(
        "io_uring",
        "python",
        "import ctypes, platform\nnr = 425\n"
        "print('refused' if ctypes.CDLL(None).syscall(nr, 4, 0) == -1 else 'ALLOWED')",
        refused,
    ),
    Case(
        "ptrace of the parent",
        "python",
        "import ctypes, os\n"
        "print('refused' if ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0) == -1 else 'ALLOWED')",
        refused,
    ),
    Case(
        "user namespace",
        "python",
        "import ctypes\nok = ctypes.CDLL(None).unshare(0x10000000) == 0\n"
        "print('ALLOWED' if ok else 'refused')",
        refused,
    ),
    Case("busy loop to the deadline", "bash", "while :; do :; done", limit("timeout"), 2),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_hostile_case_is_contained_and_the_server_keeps_serving(
    client: Client, case: Case
) -> None:
    extra = {} if case.timeout is None else {"timeout_seconds": case.timeout}
    result = await execute(client, case.language, case.code, **extra)
    after = await execute(client, "bash", "echo next")

    assert case.expect(result), (result.content[0].text, result.structured_content)
    assert ok(after)["stdout"] == "next\n"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"language": "python", "code": "#" * (10 << 20)}, "SANDBOX_MAX_CODE_BYTES"),
        ({"language": "python", "code": "1", "filename": "../x.py"}, "invalid filename"),
        ({"language": "python", "code": "1", "filename": "a\0.py"}, "invalid filename"),
    ],
    ids=["10 MB of code", "dot-dot file name", "NUL in the file name"],
)
async def test_hostile_request_is_refused(
    client: Client, arguments: dict[str, Any], fragment: str
) -> None:
    result = await client.call_tool("execute_code", arguments)

    assert tool_error(fragment)(result), result.content[0].text


async def test_concurrent_runs_cannot_reach_each_other(client: Client) -> None:
    listener = asyncio.ensure_future(
        execute(
            client,
            "python",
            "import os, socket, time\nopen('secret', 'w').write('s3cret')\n"
            "s = socket.socket(socket.AF_UNIX)\ns.bind('\\0sandbox-contract')\ns.listen()\n"
            "print(os.getcwd(), flush=True)\ntime.sleep(6)\nprint('survived')",
            timeout_seconds=10,
        )
    )
    await asyncio.sleep(2.0)
    attacker = ok(
        await execute(
            client,
            "python",
            "import os, socket\nroot = os.path.dirname(os.getcwd())\n"
            + _try("print(os.listdir(root))")
            + _try("socket.socket(socket.AF_UNIX).connect('\\0sandbox-contract')"),
        )
    )
    victim = ok(await listener)

    assert attacker["stdout"].count("refused") == 2, attacker
    # Refused by Landlock's scoping (EPERM), not merely "no one listening" (ECONNREFUSED).
    assert "Operation not permitted" in attacker["stdout"].splitlines()[-1], attacker
    assert "s3cret" not in attacker["stdout"]
    assert victim["stdout"].endswith("survived\n")


async def test_sessions_keep_state_and_end_for_real_in_the_container(client: Client) -> None:
    python = ok(
        await execute(
            client,
            "python",
            "def answer():\n    return 42\nopen('kept.txt', 'w').write('kept')",
            session_id="new",
        )
    )
    session_id = python["session_id"]
    used = ok(await execute(client, "python", "print(answer())", session_id=session_id))
    assert used["stdout"] == "42\n"
    node = ok(await execute(client, "javascript", "let n = 41;", session_id="new"))
    assert not node["session_state_lost"], node
    bumped = ok(
        await execute(client, "javascript", "console.log(++n)", session_id=node["session_id"])
    )
    assert bumped["stdout"] == "42\n", (node, bumped)

    stuck = ok(
        await execute(
            client, "python", "while True: pass", session_id=session_id, timeout_seconds=1
        )
    )
    assert (stuck["limit"], stuck["session_state_lost"]) == ("timeout", True)
    after = ok(
        await execute(
            client,
            "python",
            "print('answer' in globals(), open('kept.txt').read())",
            session_id=session_id,
        )
    )
    assert after["stdout"] == "False kept\n"

    ended = await client.call_tool("reset_session", {"session_id": "all"})
    assert sorted(ended.structured_content["ended"]) == sorted([session_id, node["session_id"]])
    gone = await execute(client, "python", "print(1)", session_id=session_id)
    assert gone.is_error


async def test_nothing_is_left_after_the_battery(client: Client) -> None:
    for _ in range(50):
        info = (await client.call_tool("server_info", {})).structured_content
        if info["workdirs_present"] == 0:
            break
        await asyncio.sleep(0.1)
    leftovers = ok(await execute(client, "bash", "pgrep -c -f 'sleep 4242' || true"))

    assert info["workdirs_present"] == 0
    assert leftovers["stdout"].strip() == "0"
    # Only the runs on standby hold pool uids: a supervisor and a waiting process each. The
    # pgrep run's own supervisor may still be removing its workdir after its answer.
    for _ in range(50):
        holders = _processes_of_pool_uids()
        if len(holders) <= 2 * info["runs_on_standby"]:
            break
        await asyncio.sleep(0.1)
    assert len(holders) <= 2 * info["runs_on_standby"], holders


def _processes_of_pool_uids() -> list[int]:
    # Seen from outside the container's pid namespace: no process holds a pool uid.
    pool = range(uid_base(3), uid_base(3) + 64)
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in pool:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def test_every_language_runs_in_the_container(client: Client) -> None:
    languages = (await client.call_tool("list_languages", {})).structured_content["languages"]
    snippets = {
        "python": "print('ok')",
        "javascript": "console.log('ok')",
        "typescript": "const s: string = 'ok'; console.log(s)",
        "ruby": "puts 'ok'",
        "bash": "echo ok",
        "zsh": "echo ok",
        "fish": "echo ok",
        "java": 'class Main { public static void main(String[] a) { System.out.println("ok"); } }',
        "kotlin": 'println("ok")',
        "groovy": "println 'ok'",
        "scala": 'println("ok")',
        "clojure": '(println "ok")',
        "c": '#include <stdio.h>\nint main(void) { puts("ok"); }',
        "cpp": '#include <cstdio>\nint main() { std::puts("ok"); }',
        "go": 'package main\nimport "fmt"\nfunc main() { fmt.Println("ok") }',
        "rust": 'fn main() { println!("ok"); }',
    }
    results = {}
    for language in languages:
        assert language["available"], language
        results[language["id"]] = ok(
            await execute(client, language["id"], snippets[language["id"]])
        )

    assert {name: result["stdout"] for name, result in results.items()} == {
        name: "ok\n" for name in snippets
    }


async def test_files_plots_and_packages_work_under_a_read_only_root(client: Client) -> None:
    result = await execute(
        client,
        "python",
        "import helper, numpy, matplotlib.pyplot as plt\n"
        "plt.plot(numpy.arange(3)); plt.show()\nprint(helper.WORD)",
        files=[{"path": "helper.py", "content": "WORD = 'from helper'\n"}],
    )

    structured = ok(result)
    assert structured["stdout"] == "from helper\n", structured["stderr"]
    assert structured["stderr"] == ""  # matplotlib found its font list: nothing to rebuild
    assert [(found["path"], found["image"]) for found in structured["files"]] == [
        ("figure_1.png", True)
    ]


@pytest.mark.parametrize("mode", list(MODES))
async def test_noexec_tmp_keeps_interpreters_and_says_what_compiled_languages_need(
    mode: str,
) -> None:
    async with Client(params(mode, tmp_options="noexec")) as client:
        info = (await client.call_tool("server_info", {})).structured_content
        python = ok(await execute(client, "python", "print('still fine')"))
        c = await execute(client, "c", "int main(void) { return 0; }")
        # Checking only writes what it builds: it needs no exec mount.
        checks = {
            language: (
                await client.call_tool("validate_code", {"language": language, "code": code})
            )
            for language, code in (
                ("c", "int main(void) { return 0 }"),
                ("go", "package main\nfunc main() { x := 1 }\n"),
                ("rust", 'fn main() { let x: i32 = "s"; }'),
            )
        }

    assert info["run_root_exec"] is False
    for language, check in checks.items():
        assert not check.is_error, (language, check.content)
        assert check.structured_content["valid"] is False, (language, check.structured_content)
        assert check.structured_content["diagnostics"][0]["line"], language
    assert set(info["unavailable_languages"]) == {"c", "cpp", "go", "rust"}
    assert python["stdout"] == "still fine\n"
    assert c.is_error
    assert "noexec" in c.content[0].text and "exec" in c.content[0].text


@pytest.mark.parametrize("mode", list(MODES))
async def test_server_info_reports_the_measured_posture(mode: str) -> None:
    async with Client(params(mode)) as client:
        info = (await client.call_tool("server_info", {})).structured_content

    assert info["identity"] == mode
    assert info["server_uid"] == (65534 if mode == "shared" else 0)
    assert info["root_filesystem_read_only"] is True
    assert info["network_interfaces"] == ["lo"]
    assert info["sandbox_can_open_inet_socket"] is False
    assert info["kernel"]["no_new_privs"] is True
    assert info["kernel"]["capabilities"] == ([] if mode == "shared" else ["SETGID", "SETUID"])
    assert info["kernel"]["seccomp_used"] is True
    assert info["kernel"]["server_under_seccomp"] == "filter"
    assert info["warm_languages"] == ["python", "javascript"]
    assert info["kernel"]["landlock_used"] is (info["kernel"]["landlock_abi"] > 0)


@pytest.mark.parametrize("mode", list(MODES))
async def test_without_landlock_and_seccomp_the_weaker_posture_is_reported(mode: str) -> None:
    async with Client(params(mode, SANDBOX_DISABLE="landlock,seccomp")) as client:
        info = (await client.call_tool("server_info", {})).structured_content
        hello = ok(await execute(client, "python", "print('runs anyway')"))

    assert info["kernel"]["landlock_used"] is False
    assert info["kernel"]["seccomp_used"] is False
    assert any("no Landlock" in note for note in info["notes"])
    assert any("no seccomp filter" in note for note in info["notes"])
    # With the filter off, the network policy can only be what the namespace gives: the
    # probe says what a child really could do, and the notes flag it.
    assert info["sandbox_can_open_inet_socket"] is True
    assert any("meant to be off" in note for note in info["notes"])
    assert hello["stdout"] == "runs anyway\n"


def test_the_root_refuses_without_the_means_to_drop() -> None:
    import subprocess

    completed = subprocess.run(
        [
            *container("exec"),
            "setpriv",
            "--bounding-set=-all",
            "--inh-caps=-all",
            "--",
            server_command(),
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"]},
        check=False,
    )

    assert completed.returncode == 2
    assert "refusing to run snippets as root" in completed.stderr
