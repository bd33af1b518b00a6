"""End to end: `sandbox-mcp` started as a subprocess, driven by the official SDK client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.support import IS_ROOT, NOBODY, server_command, server_params

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(run_root: Path) -> AsyncIterator[Client]:
    async with Client(server_params(run_root)) as connected:
        yield connected


async def call(client: Client, arguments: dict[str, Any], tool: str = "execute_code") -> Any:
    return await client.call_tool(tool, arguments)


def all_schemas_declare_items(schema: object) -> bool:
    if isinstance(schema, dict):
        if schema.get("type") == "array" and "items" not in schema:
            return False
        return all(all_schemas_declare_items(value) for value in schema.values())
    if isinstance(schema, list):
        return all(all_schemas_declare_items(value) for value in schema)
    return True


async def test_tools_are_listed_with_schemas_and_truthful_annotations(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {
        "execute_code",
        "validate_code",
        "list_languages",
        "server_info",
        "reset_session",
    }
    execute = tools["execute_code"]
    assert execute.input_schema["required"] == ["language", "code"]
    assert all_schemas_declare_items(execute.input_schema)
    assert all_schemas_declare_items(execute.output_schema)
    assert {"stdout", "exit_code", "signal", "timed_out", "limit", "run_id"} <= set(
        execute.output_schema["properties"]
    )
    assert execute.annotations.read_only_hint is False
    assert execute.annotations.destructive_hint is False
    assert execute.annotations.open_world_hint is False
    assert tools["list_languages"].annotations.read_only_hint is True


async def test_instructions_state_the_limits_and_the_closed_network(run_root: Path) -> None:
    async with Client(server_params(run_root, SANDBOX_MEMORY_MB="300")) as client:
        instructions = client.instructions or ""

    assert "300 MB" in instructions
    assert "network is closed" in instructions
    assert "pip install" in instructions


@pytest.mark.parametrize(
    ("language", "code", "expected"),
    [
        ("python", "import sys; print('py', sys.argv[1], input())", "py one stdin-line\n"),
        (
            "javascript",
            "const stdin = require('fs').readFileSync(0, 'utf8').trim();\n"
            "console.log('js', process.argv[2], stdin)",
            "js one stdin-line\n",
        ),
        ("bash", 'read -r line; echo sh "$1" "$line"', "sh one stdin-line\n"),
    ],
)
async def test_each_language_runs_through_the_client(
    client: Client, language: str, code: str, expected: str
) -> None:
    result = await call(
        client, {"language": language, "code": code, "args": ["one"], "stdin": "stdin-line\n"}
    )

    assert not result.is_error
    assert result.structured_content["stdout"] == expected
    assert result.structured_content["exit_code"] == 0
    assert expected.strip() in result.content[0].text


async def test_non_zero_exit_is_a_result_not_a_tool_error(client: Client) -> None:
    result = await call(client, {"language": "python", "code": "raise SystemExit(7)"})

    assert not result.is_error
    assert result.structured_content["exit_code"] == 7
    assert "exit code 7" in result.content[0].text


async def test_timeout_through_the_client(client: Client) -> None:
    result = await call(
        client, {"language": "bash", "code": "echo started; sleep 60", "timeout_seconds": 1}
    )
    content = result.structured_content

    assert content["timed_out"] is True
    assert content["limit"] == "timeout"
    assert content["exit_code"] is None
    assert content["signal"] == "SIGKILL"
    assert content["stdout"] == "started\n"
    assert content["timeout_seconds"] == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"language": "pyhton", "code": "1"}, "unknown language 'pyhton'; known: python"),
        ({"language": "python", "code": "1", "bogus": 1}, "unknown argument 'bogus'; allowed:"),
        ({"language": "python", "code": 5}, "argument 'code' must be string, got integer"),
        ({"language": "python"}, "missing required argument 'code'"),
        ({"language": "python", "code": "1", "args": "x"}, "argument 'args' must be array"),
        ({"language": "python", "code": "1", "args": [1]}, "'args' must be a list of string"),
        ({"language": "python", "code": "1", "filename": "../../etc/passwd"}, "invalid filename"),
        ({"language": "python", "code": "1", "timeout_seconds": -1}, "timeout_seconds"),
    ],
)
async def test_bad_arguments_get_a_clear_tool_error(
    client: Client, arguments: dict[str, Any], message: str
) -> None:
    result = await call(client, arguments)

    assert result.is_error
    assert message in result.content[0].text
    healthy = await call(client, {"language": "python", "code": "print('ok')"})
    assert healthy.structured_content["stdout"] == "ok\n"


async def test_fifty_megabyte_snippet_is_refused_and_the_server_keeps_serving(
    client: Client,
) -> None:
    result = await call(client, {"language": "python", "code": "#" * (50 * 1024 * 1024)})

    assert result.is_error
    assert "SANDBOX_MAX_CODE_BYTES" in result.content[0].text
    healthy = await call(client, {"language": "bash", "code": "echo ok"})
    assert healthy.structured_content["stdout"] == "ok\n"


async def test_concurrent_calls_each_get_their_own_output(client: Client) -> None:
    tokens = [os.urandom(6).hex() for _ in range(16)]
    languages = ["python", "javascript", "bash"]
    snippets = {
        "python": "print({token!r})",
        "javascript": "console.log({token!r})",
        "bash": "echo {token}",
    }
    results = await asyncio.gather(
        *(
            call(
                client,
                {
                    "language": languages[index % 3],
                    "code": snippets[languages[index % 3]].format(token=token),
                },
            )
            for index, token in enumerate(tokens)
        )
    )

    assert [result.structured_content["stdout"].strip() for result in results] == tokens


async def test_hostile_snippets_leave_the_server_healthy_and_nothing_behind(
    client: Client, run_root: Path
) -> None:
    hostile = [
        {
            "language": "python",
            "code": "import os\nwhile True:\n    os.fork()",
            "timeout_seconds": 5,
        },
        {"language": "python", "code": "x = []\nwhile True:\n    x.append(bytearray(10**7))"},
        {"language": "python", "code": "while True:\n    print('flood' * 1000)"},
        {"language": "bash", "code": "(setsid sleep 1000 &); sleep 1000 & exit 0"},
        {"language": "python", "code": "import os, signal; os.kill(os.getppid(), signal.SIGKILL)"},
        {"language": "javascript", "code": "process.kill(process.ppid, 'SIGKILL')"},
        {"language": "python", "code": "import sys; sys.stdout.buffer.write(bytes(range(256)))"},
    ]
    for arguments in hostile:
        result = await call(client, arguments)
        assert not result.is_error, result.content[0].text

    languages = await call(client, {}, tool="list_languages")
    assert {entry["id"] for entry in languages.structured_content["languages"]} >= {
        "python",
        "javascript",
        "bash",
    }
    # A workdir is removed just after its answer; the runs on standby keep theirs.
    for _ in range(50):
        info = await call(client, {}, tool="server_info")
        if info.structured_content["workdirs_present"] == 0:
            break
        await asyncio.sleep(0.1)
    assert info.structured_content["workdirs_present"] == 0
    assert _processes_named("sleep 1000") == []
    launchers = _processes_named("sandbox_mcp.sandbox.launcher")
    assert launchers
    assert all(_zombie_children(pid) == [] for pid in launchers)


async def test_cancelled_call_kills_the_run_and_the_server_keeps_serving(client: Client) -> None:
    with anyio.move_on_after(1.5):
        await call(client, {"language": "bash", "code": "sleep 777"})
    running = _processes_named("sleep 777")

    await anyio.sleep(1.0)
    assert running, "the run's sleep was not seen while it ran"
    assert _processes_named("sleep 777") == []
    healthy = await call(client, {"language": "bash", "code": "echo ok"})
    assert healthy.structured_content["stdout"] == "ok\n"


async def test_list_languages_reports_versions(client: Client) -> None:
    result = await call(client, {}, tool="list_languages")
    languages = {entry["id"]: entry for entry in result.structured_content["languages"]}

    assert languages["python"]["available"] is True
    assert languages["python"]["version"].startswith("3.")
    assert languages["javascript"]["version"].split(".")[0].isdigit()
    assert languages["bash"]["extension"] == ".sh"


# --- identity modes ----------------------------------------------------------------------------


@pytest.mark.skipif(not IS_ROOT, reason="starting the server as another user needs root")
async def test_shared_mode_under_the_containers_non_root_contract(run_root: Path) -> None:
    """The server as uid 65534 with no capabilities and no-new-privs, as in the container."""
    probe = (
        "import os, signal\n"
        "print('uid', os.getuid())\n"
        "for entry in os.listdir('/proc'):\n"
        "    if not entry.isdigit() or int(entry) == os.getpid():\n"
        "        continue\n"
        "    try:\n"
        "        cmdline = open(f'/proc/{entry}/cmdline', 'rb').read()\n"
        "    except OSError:\n"
        "        continue\n"
        "    if b'sandbox' in cmdline and b'main.py' not in cmdline:\n"
        "        try:\n"
        "            os.kill(int(entry), signal.SIGKILL)\n"
        "            print('killed', entry)\n"
        "        except PermissionError:\n"
        "            print('refused', entry)\n"
    )
    async with Client(server_params(run_root, *NOBODY)) as client:
        result = await call(client, {"language": "python", "code": probe})
        after = await call(client, {"language": "bash", "code": "echo still serving"})

    lines = result.structured_content["stdout"].splitlines()
    assert lines[0] == "uid 65534"
    assert len(lines) >= 3, "expected to find the server and the launcher"
    assert all(line.startswith("refused") for line in lines[1:]), lines
    assert after.structured_content["stdout"] == "still serving\n"


@pytest.mark.skipif(not IS_ROOT, reason="starting the server as root needs root")
@pytest.mark.parametrize(
    ("prefix", "env"),
    [
        ((), {"SANDBOX_IDENTITY": "shared"}),
        (("setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"), {}),
    ],
)
def test_root_without_the_means_to_drop_refuses_to_start(
    run_root: Path, prefix: tuple[str, ...], env: dict[str, str]
) -> None:
    completed = subprocess.run(
        [*prefix, server_command()],
        env={"PATH": os.environ["PATH"], "SANDBOX_RUN_ROOT": str(run_root), **env},
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert completed.returncode == 2
    assert "refusing to run snippets as root" in completed.stderr
    assert completed.stdout == ""


def test_version_and_bad_setting_answer_without_serving() -> None:
    version = subprocess.run(
        [server_command(), "--version"], capture_output=True, text=True, check=False
    )
    bad = subprocess.run(
        [server_command()],
        env={"PATH": os.environ["PATH"], "SANDBOX_TIMEOUT": "soon"},
        capture_output=True,
        text=True,
        check=False,
    )

    assert version.stdout.startswith("sandbox-mcp ")
    assert bad.returncode == 2
    assert "SANDBOX_TIMEOUT" in bad.stderr


def _processes_named(fragment: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fragment in cmdline:
            found.append(int(entry.name))
    return found


def _zombie_children(parent: int) -> list[int]:
    zombies = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == b"Z" and int(fields[1]) == parent:
            zombies.append(int(entry.name))
    return zombies


def test_python_dash_m_runs_the_same_cli() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "sandbox_mcp", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert completed.stdout.startswith("sandbox-mcp ")


def test_result_schema_is_json_serialisable() -> None:
    from sandbox_mcp.server.schema import ExecutionResult

    assert json.dumps(ExecutionResult.model_json_schema())
