"""The Streamable HTTP transport: `sandbox-mcp --transport http` as a subprocess, driven by the
official SDK's Streamable HTTP client and by plain HTTP requests."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from sandbox_mcp import __version__
from sandbox_mcp.config import Settings
from sandbox_mcp.sandbox.runner import Sandbox
from sandbox_mcp.server.http import readiness, request_body_limit
from tests.http_server import (
    HttpServer,
    free_port,
    fresh_run_root,
    remove_run_root,
    running_server,
)
from tests.support import initialize_request, server_command, uid_base

TOKEN = secrets.token_hex(24)
INITIALIZE = initialize_request(1)
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server() -> Iterator[HttpServer]:
    """One server with a token from a file (trailing newline and all) for the module."""
    run_root = fresh_run_root()
    token_file = run_root.with_name(run_root.name + ".token")
    token_file.write_text(TOKEN + "\n")
    try:
        with running_server(run_root, 1, "--auth-token-file", str(token_file)) as started:
            yield HttpServer(started.port, TOKEN, started.log_path)
    finally:
        token_file.unlink(missing_ok=True)
        leftovers = remove_run_root(run_root)
    assert not leftovers, f"workdirs left behind: {leftovers}"


def runs_counted(metrics: str) -> dict[str, float]:
    """The sandbox_mcp_runs_total samples of a /metrics page, by their labels."""
    return {
        labels: float(value)
        for labels, value in re.findall(r"^sandbox_mcp_runs_total\{(.*)\} (\S+)$", metrics, re.M)
    }


def gauge(metrics: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", metrics, re.M)
    assert found, f"{name} missing from /metrics:\n{metrics}"
    return float(found.group(1))


async def call_execute(server: HttpServer, code: str) -> dict[str, object]:
    async with (
        httpx2.AsyncClient(headers=server.headers()) as http,
        Client(streamable_http_client(server.url, http_client=http)) as client,
    ):
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"execute_code", "validate_code", "list_languages", "server_info"} <= tools
        result = await client.call_tool("execute_code", {"language": "python", "code": code})
    assert not result.is_error, result
    return result.structured_content


@pytest.mark.anyio
async def test_with_the_token_a_python_snippet_runs_and_is_counted(server: HttpServer) -> None:
    before = runs_counted(server.metrics()).get('language="python",outcome="ok"', 0)

    content = await call_execute(server, "import sys; print('over http', sys.version_info[0])")

    assert content["stdout"] == "over http 3\n"
    assert content["exit_code"] == 0
    metrics = server.metrics()
    assert runs_counted(metrics)['language="python",outcome="ok"'] == before + 1
    assert re.search(
        r'^sandbox_mcp_run_duration_seconds_count\{language="python"\} [1-9]', metrics, re.M
    )
    assert gauge(metrics, "sandbox_mcp_runs_in_flight_high_water") >= 1
    assert gauge(metrics, "sandbox_mcp_runs_in_flight") == 0
    assert gauge(metrics, "sandbox_mcp_runs_queued") == 0
    # An MCP session id is a credential for that session's sandboxes: never in the log.
    assert "session ID" not in server.log()


@pytest.mark.anyio
async def test_a_call_as_large_as_the_limits_allow_fits_in_one_request(server: HttpServer) -> None:
    # The default SANDBOX_MAX_CODE_BYTES (4 MiB) of code and 2 MiB of stdin: more than the
    # SDK's own 4 MiB body limit, which would answer 413.
    code = "import sys\n" + "#" * (4 * 1024 * 1024 - 100) + "\nprint(len(sys.stdin.read()))\n"
    async with (
        httpx2.AsyncClient(headers=server.headers()) as http,
        Client(streamable_http_client(server.url, http_client=http)) as client,
    ):
        result = await client.call_tool(
            "execute_code", {"language": "python", "code": code, "stdin": "x" * 2 * 1024 * 1024}
        )

    assert not result.is_error, result
    assert result.structured_content["stdout"] == f"{2 * 1024 * 1024}\n"


@pytest.mark.anyio
async def test_files_at_their_limit_fit_in_one_request_beside_large_code(
    server: HttpServer,
) -> None:
    # 8 files of 1 MiB as base64 (the default SANDBOX_MAX_FILES_BYTES) and 3 MiB of code.
    blob = base64.b64encode(b"\0" * (1024 * 1024 - 64)).decode()
    files = [{"path": f"f{n}.bin", "content": blob, "encoding": "base64"} for n in range(8)]
    code = "import os\n" + "#" * (3 * 1024 * 1024) + "\nprint(len(os.listdir('.')))\n"
    async with (
        httpx2.AsyncClient(headers=server.headers()) as http,
        Client(streamable_http_client(server.url, http_client=http)) as client,
    ):
        result = await client.call_tool(
            "execute_code", {"language": "python", "code": code, "files": files}
        )

    # Taken and run (how the run ends on a loaded machine is not the point): not a 413.
    assert not result.is_error, result
    assert result.structured_content["run_id"]


def test_a_body_beyond_every_limit_is_refused(server: HttpServer) -> None:
    headers = {**MCP_HEADERS, **server.headers()}
    body = b" " * (request_body_limit(Settings()) + 1)

    response = httpx2.post(server.url, content=body, headers=headers, timeout=60)

    assert response.status_code == 413


@pytest.mark.parametrize(
    ("authorization", "problem"),
    [
        (None, "missing bearer token"),
        (f"Bearer {TOKEN[:-1]}x", "wrong bearer token"),
        ("Bearer", "not a bearer token"),
        (f"Basic {TOKEN}", "not a bearer token"),
        (f"Bearer {TOKEN} extra", "wrong bearer token"),
    ],
)
def test_a_request_without_the_right_token_is_refused_and_runs_nothing(
    server: HttpServer, authorization: str | None, problem: str
) -> None:
    before = server.metrics()
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "execute_code", "arguments": {"language": "bash", "code": "echo hi"}},
    }
    headers = dict(MCP_HEADERS)
    if authorization is not None:
        headers["Authorization"] = authorization

    for body in (INITIALIZE, call):
        response = httpx2.post(server.url, json=body, headers=headers, timeout=30)

        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer ")
        assert problem in response.text
        assert TOKEN not in response.text
    after = server.metrics()
    assert runs_counted(after) == runs_counted(before)
    assert 'language="bash"' not in after
    assert f"refused POST '/mcp' from 127.0.0.1: {problem}" in server.log()
    assert TOKEN not in server.log()


def test_metrics_need_the_token(server: HttpServer) -> None:
    response = httpx2.get(f"{server.base}/metrics", timeout=30)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="sandbox-mcp"'
    assert "sandbox_mcp_" not in response.text


def test_metrics_are_in_the_prometheus_text_format(server: HttpServer) -> None:
    response = httpx2.get(f"{server.base}/metrics", headers=server.headers(), timeout=30)

    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    for line in response.text.splitlines():
        assert re.fullmatch(
            r"# (HELP|TYPE) sandbox_mcp_\w+ .+|sandbox_mcp_\w+(\{[^}]*\})? [0-9.e+-]+", line
        ), line
    for family, kind in (
        ("sandbox_mcp_runs_total", "counter"),
        ("sandbox_mcp_limits_total", "counter"),
        ("sandbox_mcp_run_duration_seconds", "histogram"),
        ("sandbox_mcp_runs_in_flight", "gauge"),
        ("sandbox_mcp_runs_in_flight_high_water", "gauge"),
        ("sandbox_mcp_runs_queued", "gauge"),
    ):
        assert f"# TYPE {family} {kind}\n" in response.text


@pytest.mark.parametrize("path", ["/mcp", "/metrics"])
def test_a_foreign_host_header_is_refused_even_with_the_token(
    server: HttpServer, path: str
) -> None:
    headers = {**MCP_HEADERS, **server.headers(), "Host": f"attacker.example:{server.port}"}

    if path == "/mcp":
        response = httpx2.post(f"{server.base}{path}", json=INITIALIZE, headers=headers, timeout=30)
    else:
        response = httpx2.get(f"{server.base}{path}", headers=headers, timeout=30)

    assert response.status_code == 421
    assert "sandbox_mcp_" not in response.text


def test_a_foreign_origin_is_refused(server: HttpServer) -> None:
    headers = {**MCP_HEADERS, **server.headers(), "Origin": "http://attacker.example"}

    response = httpx2.post(server.url, json=INITIALIZE, headers=headers, timeout=30)

    assert response.status_code == 403


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_without_the_token_and_reveal_nothing(server: HttpServer, path: str) -> None:
    response = httpx2.get(f"{server.base}{path}", timeout=30)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == ("ok" if path == "/healthz" else "ready")
    assert set(body) <= {"status", "languages_available"}
    assert "server" not in response.headers
    text = response.text + json.dumps(dict(response.headers))
    for secret in ("/tmp", "sandbox-mcp-test", __version__, "uvicorn", "python", "uid"):
        assert secret not in text


@pytest.mark.anyio
async def test_a_loopback_server_without_a_token_serves_and_says_it_is_open() -> None:
    run_root = fresh_run_root()
    try:
        with running_server(run_root, 2) as server:
            content = await call_execute(server, "print(6 * 7)")
            metrics = server.metrics()
            log = server.log()
    finally:
        leftovers = remove_run_root(run_root)

    assert content["stdout"] == "42\n"
    assert runs_counted(metrics) == {'language="python",outcome="ok"': 1}
    assert "no auth token: any process on this machine" in log
    assert not leftovers


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--host", "0.0.0.0"],  # noqa: S104 - refused before it binds
            {},
            "without a bearer token (SANDBOX_AUTH_TOKEN, or --auth-token-file PATH) and the "
            "Host names clients use (--allowed-hosts or SANDBOX_ALLOWED_HOSTS",
        ),
        (
            ["--host", "0.0.0.0"],  # noqa: S104
            {"SANDBOX_AUTH_TOKEN": TOKEN},
            "without the Host names clients use (--allowed-hosts or SANDBOX_ALLOWED_HOSTS",
        ),
        (
            ["--allowed-hosts", "sandbox.example:8080"],
            {"SANDBOX_HOST": "0.0.0.0"},  # noqa: S104
            "refusing to serve HTTP on 0.0.0.0, beyond loopback, without a bearer token",
        ),
        (["--auth-token-file", "/nonexistent/token"], {}, "cannot read the auth token file"),
        (["--auth-token-file", "/dev/null"], {}, "the auth token file /dev/null is empty"),
        ([], {"SANDBOX_AUTH_TOKEN": "short"}, "use at least 16"),
    ],
)
def test_an_unsafe_or_broken_http_setup_refuses_to_start(
    args: list[str], env: dict[str, str], message: str
) -> None:
    port = free_port()
    run_root = fresh_run_root()

    completed = subprocess.run(
        [server_command(), "--transport", "http", "--port", str(port), *args],
        env={"PATH": os.environ["PATH"], "SANDBOX_RUN_ROOT": str(run_root), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 2, completed.stderr
    assert message in completed.stderr
    assert not run_root.exists()
    assert TOKEN not in completed.stderr


def test_a_stdio_server_does_not_load_the_http_transport() -> None:
    # The SDK itself imports starlette and uvicorn (through sse_starlette) with mcp.server,
    # so what a stdio start can avoid is this project's HTTP module and what it builds.
    code = (
        "import sys\n"
        "from sandbox_mcp import cli\n"
        "from sandbox_mcp.config import Settings\n"
        "from sandbox_mcp.sandbox.runner import Sandbox\n"
        "from sandbox_mcp.server.app import build\n"
        "build(Sandbox(Settings.load([], {})[0]))\n"
        "print(sorted(name for name in sys.modules if name.startswith('sandbox_mcp.server')))\n"
    )

    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    loaded = completed.stdout.strip()
    assert "sandbox_mcp.server.app" in loaded
    assert "sandbox_mcp.server.http" not in loaded


def test_a_client_that_never_finishes_its_body_does_not_hold_the_shutdown(
    run_root: Path,
) -> None:
    token = secrets.token_hex(24)
    with running_server(run_root, 6, "--shutdown-grace", "1", token=token) as server:
        stalled = socket.create_connection(("127.0.0.1", server.port))
        try:
            stalled.sendall(
                b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
                % (server.port, token.encode())
            )
            os.kill(server.pid, signal.SIGTERM)
            # Generous: drain (1 s), answers (1 s), then connections are cut after 5 s.
            assert _ends_within(server.pid, 40), server.log()
        finally:
            stalled.close()


def _ends_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False


@pytest.mark.anyio
async def test_a_whole_output_is_readable_by_its_own_caller_only(server: HttpServer) -> None:
    code = "print('private ' * 20000)"
    async with (
        httpx2.AsyncClient(headers=server.headers()) as http_a,
        Client(streamable_http_client(server.url, http_client=http_a), mode="legacy") as a,
        httpx2.AsyncClient(headers=server.headers()) as http_b,
        Client(streamable_http_client(server.url, http_client=http_b), mode="legacy") as b,
    ):
        result = await a.call_tool("execute_code", {"language": "python", "code": code})
        uri = result.structured_content["stdout_uri"]
        assert uri, result.structured_content
        own = await a.read_resource(uri)
        with pytest.raises(MCPError):
            await b.read_resource(uri)

    assert own.contents[0].text.count("private") == 20000


@pytest.mark.anyio
async def test_sessions_belong_to_their_mcp_session_and_all_means_ones_own(
    server: HttpServer,
) -> None:
    async with (
        httpx2.AsyncClient(headers=server.headers()) as http_a,
        Client(streamable_http_client(server.url, http_client=http_a), mode="legacy") as a,
        httpx2.AsyncClient(headers=server.headers()) as http_b,
        Client(streamable_http_client(server.url, http_client=http_b), mode="legacy") as b,
    ):
        opened = await a.call_tool(
            "execute_code",
            {
                "language": "python",
                "code": "secret = 's3cr3t'\nopen('note.txt', 'w').write(secret)",
                "session_id": "new",
            },
        )
        session_id = opened.structured_content["session_id"]
        assert session_id, opened.content

        # The same token, another MCP session: the id is as unknown as a made-up one.
        stolen = await b.call_tool(
            "execute_code",
            {"language": "python", "code": "print(secret)", "session_id": session_id},
        )
        assert stolen.is_error
        assert "unknown session_id: no session of yours" in stolen.content[0].text
        with pytest.raises(MCPError, match="unknown session_id"):
            await b.read_resource(f"sandbox://sessions/{session_id}/files/note.txt")
        refused = await b.call_tool("reset_session", {"session_id": session_id})
        assert refused.is_error
        for everything in ({"session_id": "all"}, {"language": "all"}):
            assert (await b.call_tool("reset_session", everything)).structured_content[
                "ended"
            ] == []

        kept = await a.call_tool(
            "execute_code",
            {"language": "python", "code": "print(secret)", "session_id": session_id},
        )
        assert kept.structured_content["stdout"] == "s3cr3t\n"
        ended = await a.call_tool("reset_session", {"session_id": "all"})
        assert ended.structured_content["ended"] == [session_id]


@pytest.mark.anyio
async def test_a_client_without_an_mcp_session_is_told_it_gets_no_sandbox_session(
    server: HttpServer,
) -> None:
    # The SDK client's default mode speaks a revision served without MCP sessions (README,
    # "Ownership"): no owner can be told, so no sandbox session either, and it is told why.
    async with (
        httpx2.AsyncClient(headers=server.headers()) as http,
        Client(streamable_http_client(server.url, http_client=http)) as client,
    ):
        result = await client.call_tool(
            "execute_code", {"language": "python", "code": "x = 1", "session_id": "new"}
        )
        fresh = await client.call_tool("execute_code", {"language": "python", "code": "print(2)"})
        long = await client.call_tool(
            "execute_code", {"language": "python", "code": "print('x' * 100000)"}
        )
        svg = await client.call_tool(
            "execute_code",
            {"language": "python", "code": "open('a.svg', 'w').write('<svg xmlns=\"x\"/>')"},
        )

    assert result.is_error
    assert "sessions need to know who calls" in result.content[0].text
    assert 'mode="legacy"' in result.content[0].text
    assert fresh.structured_content["stdout"] == "2\n"
    # Nor can its whole output be kept for it alone: it is told so, and how to get one.
    assert long.structured_content["stdout_truncated"] is True
    assert long.structured_content["stdout_uri"] is None
    for answer in (long, svg):
        assert any(
            "not kept for reading back" in note and 'mode="legacy"' in note
            for note in answer.structured_content["notes"]
        ), answer.structured_content
    assert not any("not kept" in note for note in fresh.structured_content["notes"])


@pytest.mark.anyio
@pytest.mark.parametrize("authorization", [None, f"Bearer {TOKEN[::-1]}"], ids=["none", "wrong"])
async def test_the_sdk_client_without_the_right_token_is_refused_with_401(
    server: HttpServer, authorization: str | None
) -> None:
    statuses: list[int] = []

    async def record(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    before = runs_counted(server.metrics())
    headers = {} if authorization is None else {"Authorization": authorization}
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the refusal in its own errors
        async with (
            httpx2.AsyncClient(headers=headers, event_hooks={"response": [record]}) as http,
            Client(streamable_http_client(server.url, http_client=http)) as client,
        ):
            await client.call_tool("execute_code", {"language": "bash", "code": "echo hi"})

    assert statuses and set(statuses) == {401}, statuses
    assert runs_counted(server.metrics()) == before


@pytest.mark.anyio
async def test_the_json_log_names_the_http_caller_and_never_the_code_output_or_secrets(
    run_root: Path,
) -> None:
    token = secrets.token_hex(24)
    code_marker, output_marker = secrets.token_hex(8), secrets.token_hex(8)
    mcp_sessions: set[str] = set()

    async def record(request: httpx2.Request) -> None:
        mcp_sessions.add(request.headers.get("mcp-session-id", ""))

    with running_server(run_root, 7, token=token, SANDBOX_LOG_FORMAT="json") as started:
        async with (
            httpx2.AsyncClient(
                headers=started.headers(), event_hooks={"request": [record]}
            ) as http,
            Client(streamable_http_client(started.url, http_client=http), mode="legacy") as client,
        ):
            result = await client.call_tool(
                "execute_code",
                {
                    "language": "python",
                    "code": f"s = {code_marker!r}\nprint({output_marker[:8]!r} + "
                    f"{output_marker[8:]!r})",
                    "session_id": "new",
                },
            )
            session_id = result.structured_content["session_id"]
        log = started.log()

    assert result.structured_content["stdout"] == output_marker + "\n"
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    [run] = [entry for entry in entries if entry.get("event") == "run"]
    assert run["run_id"] == result.structured_content["run_id"]
    assert (run["language"], run["exit_code"], run["limit"]) == ("python", 0, None)
    assert run["stdout_bytes"] == len(output_marker) + 1 and run["duration_ms"] > 0
    assert re.fullmatch(r"http-[0-9a-f]{12}", run["caller"]), run
    mcp_sessions.discard("")
    assert mcp_sessions, "the legacy client never sent its Mcp-Session-Id"
    for secret in (code_marker, output_marker, token, session_id, *mcp_sessions):
        assert secret not in log


@pytest.mark.anyio
async def test_readiness_fails_while_the_run_root_is_gone(run_root: Path) -> None:
    box = Sandbox(replace(Settings(), run_root=run_root, uid_base=uid_base(7), warm="off"))
    await box.start()
    try:
        await box.runtimes()  # probed: readiness answers at once from here on
        assert (await readiness(box))[0] == "ready"
        away = run_root.with_name(run_root.name + ".away")
        run_root.rename(away)
        try:
            status, facts = await readiness(box)
        finally:
            away.rename(run_root)
        assert (status, facts) == ("not ready", {"reason": "the run root is not writable"})
        assert (await readiness(box))[0] == "ready"
    finally:
        await box.close()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_progress_reaches_an_http_client_while_a_run_goes(
    server: HttpServer, mode: str
) -> None:
    seen: list[float] = []
    messages: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)
        messages.append(message)

    async with (
        httpx2.AsyncClient(headers=server.headers()) as http,
        Client(streamable_http_client(server.url, http_client=http), mode=mode) as client,
    ):
        result = await client.call_tool(
            "execute_code",
            {"language": "bash", "code": "for i in 1 2 3 4; do echo tick; sleep 1; done"},
            progress_callback=on_progress,
        )

    assert result.structured_content["stdout"] == "tick\n" * 4
    # About one a second; a loaded machine may lose some.
    assert len(seen) >= 2, seen
    assert seen == sorted(seen)
    assert all(message and "bytes of output" in message for message in messages), messages
