"""The official MCP Inspector's CLI drives the server, over stdio and over Streamable HTTP.

The Inspector and the Node.js 22 it needs come from tools/package-lock.json (scripts/setup);
this machine's own node is older than the Inspector accepts. Runs in the root pass only
(scripts/test runs tests/ outside tests/sandbox and tests/server as root).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.http_server import HttpServer, fresh_run_root, remove_run_root, running_server
from tests.support import server_command, uid_base

TOOLS = Path(__file__).resolve().parent.parent / "tools" / "node_modules"
NODE = TOOLS / ".bin" / "node"
INSPECTOR = TOOLS / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build"
INSPECTOR_CLI = INSPECTOR / "index.js"
SNIPPET = "import sys; print('inspected', sys.argv[0])"


@pytest.fixture(scope="module")
def inspector() -> list[str]:
    """The command that starts the Inspector's CLI, or a loud failure saying how to get it."""
    missing = [str(path) for path in (NODE, INSPECTOR_CLI) if not path.exists()]
    if missing:
        pytest.fail(
            f"the MCP Inspector or its Node.js 22 is missing ({', '.join(missing)}): run "
            "scripts/setup, which installs both from tools/package-lock.json",
            pytrace=False,
        )
    return [str(NODE), str(INSPECTOR_CLI), "--cli"]


@pytest.fixture(scope="module")
def http_server() -> Iterator[HttpServer]:
    run_root = fresh_run_root()
    try:
        with running_server(run_root, 3, token=secrets.token_hex(24)) as server:
            yield server
    finally:
        leftovers = remove_run_root(run_root)
    assert not leftovers, f"workdirs left behind: {leftovers}"


def inspect(command: list[str], home: Path, *args: str) -> Any:
    """Run the Inspector's CLI, check it succeeded, and return its JSON answer."""
    completed = subprocess.run(
        [*command, *args],
        # Its catalog and storage go under $HOME: a throwaway one.
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(completed.stdout)


def stdio_target(run_root: Path) -> list[str]:
    return [
        server_command(),
        "-e",
        f"SANDBOX_RUN_ROOT={run_root}",
        "-e",
        f"SANDBOX_UID_BASE={uid_base(4)}",
    ]


def http_target(server: HttpServer) -> list[str]:
    assert server.token is not None
    return [
        server.url,
        "--transport",
        "http",
        "--header",
        f"Authorization: Bearer {server.token}",
    ]


def check_tools_listed(answer: Any) -> None:
    names = {tool["name"] for tool in answer["tools"]}
    assert names == {
        "execute_code",
        "validate_code",
        "list_languages",
        "server_info",
        "reset_session",
    }


def check_snippet_ran(answer: Any) -> None:
    assert answer["isError"] is False
    assert answer["structuredContent"]["stdout"] == "inspected main.py\n"
    assert answer["structuredContent"]["exit_code"] == 0
    assert "inspected main.py" in answer["content"][0]["text"]


CALL = ["--method", "tools/call", "--tool-name", "execute_code", "--tool-arg", "language=python"]


def test_inspector_lists_the_tools_over_stdio(
    inspector: list[str], run_root: Path, tmp_path: Path
) -> None:
    answer = inspect(inspector, tmp_path, *stdio_target(run_root), "--method", "tools/list")

    check_tools_listed(answer)


def test_inspector_runs_a_snippet_over_stdio(
    inspector: list[str], run_root: Path, tmp_path: Path
) -> None:
    answer = inspect(inspector, tmp_path, *stdio_target(run_root), *CALL, f"code={SNIPPET}")

    check_snippet_ran(answer)


def test_inspector_lists_the_tools_over_http(
    inspector: list[str], http_server: HttpServer, tmp_path: Path
) -> None:
    answer = inspect(inspector, tmp_path, *http_target(http_server), "--method", "tools/list")

    check_tools_listed(answer)


def test_inspector_runs_a_snippet_over_http(
    inspector: list[str], http_server: HttpServer, tmp_path: Path
) -> None:
    answer = inspect(inspector, tmp_path, *http_target(http_server), *CALL, f"code={SNIPPET}")

    check_snippet_ran(answer)
    assert 'sandbox_mcp_runs_total{language="python",outcome="ok"} 1' in http_server.metrics()


def test_inspector_without_the_token_is_refused_over_http(
    inspector: list[str], http_server: HttpServer, tmp_path: Path
) -> None:
    completed = subprocess.run(
        [*inspector, http_server.url, "--transport", "http", "--method", "tools/list"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )

    # The 401 makes the Inspector want OAuth, which it cannot do without a terminal.
    assert completed.returncode != 0
    assert "execute_code" not in completed.stdout
    assert '"auth_required"' in completed.stderr
    assert "http: refused POST '/mcp' from 127.0.0.1: missing bearer token" in http_server.log()
