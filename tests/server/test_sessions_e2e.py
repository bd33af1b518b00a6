"""Sessions end to end: `sandbox-mcp` as a subprocess, driven by the official SDK client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import TextResourceContents

from sandbox_mcp.config import Settings
from sandbox_mcp.server.callers import STDIO, caller_key
from tests.support import IS_ROOT, NOBODY, server_params

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(run_root: Path) -> AsyncIterator[Client]:
    async with Client(server_params(run_root)) as connected:
        yield connected


async def execute(client: Client, **arguments: Any) -> Any:
    return await client.call_tool("execute_code", arguments)


async def test_define_use_reset_then_the_state_is_gone(client: Client) -> None:
    defined = await execute(
        client,
        language="python",
        code="def greet(name):\n    return f'hello {name}'\nopen('out.txt', 'w').write('made')",
        session_id="new",
    )
    assert not defined.is_error
    session_id = defined.structured_content["session_id"]
    assert session_id and session_id in defined.content[0].text
    assert defined.structured_content["session_state_lost"] is False

    used = await execute(
        client, language="python", code="print(greet('agent'))", session_id=session_id
    )
    assert used.structured_content["stdout"] == "hello agent\n"
    assert used.structured_content["session_id"] == session_id

    contents = (
        await client.read_resource(f"sandbox://sessions/{session_id}/files/out.txt")
    ).contents
    assert isinstance(contents[0], TextResourceContents)
    assert contents[0].text == "made"

    reset = await client.call_tool("reset_session", {"session_id": session_id})
    assert not reset.is_error
    assert reset.structured_content["ended"] == [session_id]

    gone = await execute(client, language="python", code="print(greet('x'))", session_id=session_id)
    assert gone.is_error
    assert "has ended: it was reset" in gone.content[0].text
    assert '"new"' in gone.content[0].text


async def test_runs_without_a_session_stay_fresh(client: Client) -> None:
    first = await execute(client, language="python", code="x = 1\nopen('f', 'w').write('1')")
    second = await execute(
        client, language="python", code="import os\nprint('x' in globals(), os.path.exists('f'))"
    )
    assert first.structured_content["session_id"] is None
    assert second.structured_content["stdout"] == "False False\n"


async def test_javascript_session_and_reset_by_language(client: Client) -> None:
    first = await execute(client, language="js", code="let n = 20;", session_id="new")
    session_id = first.structured_content["session_id"]
    second = await execute(
        client, language="javascript", code="n += 22; console.log(n)", session_id=session_id
    )
    assert second.structured_content["stdout"] == "42\n"

    reset = await client.call_tool("reset_session", {"language": "javascript"})
    assert reset.structured_content["ended"] == [session_id]
    again = await execute(
        client, language="javascript", code="console.log(n)", session_id=session_id
    )
    assert again.is_error


async def test_an_unknown_id_and_a_timeout_in_a_session(client: Client) -> None:
    unknown = await execute(client, language="python", code="1", session_id="made-up")
    assert unknown.is_error
    assert "unknown session_id: no session of yours" in unknown.content[0].text

    opened = await execute(client, language="python", code="keep = 1", session_id="new")
    session_id = opened.structured_content["session_id"]
    stuck = await execute(
        client,
        language="python",
        code="while True: pass",
        session_id=session_id,
        timeout_seconds=1,
    )
    assert stuck.structured_content["timed_out"] is True
    assert stuck.structured_content["session_state_lost"] is True
    assert "state" in stuck.content[0].text and "lost" in stuck.content[0].text
    after = await execute(
        client, language="python", code="print('keep' in globals())", session_id=session_id
    )
    assert after.structured_content["stdout"] == "False\n"

    refused = await client.call_tool("reset_session", {})
    assert refused.is_error


async def test_a_resource_path_cannot_leave_the_session(client: Client) -> None:
    opened = await execute(
        client,
        language="bash",
        code="mkdir -p a/b && echo deep > a/b/c.txt && ln -s /etc/passwd l",
        session_id="new",
    )
    session_id = opened.structured_content["session_id"]
    deep = await client.read_resource(f"sandbox://sessions/{session_id}/files/a/b/c.txt")
    assert deep.contents[0].text == "deep\n"
    for bad, why in (
        ("l", "a symbolic link"),
        ("a/../l", "not a relative path"),
        ("a", "not a regular file"),
        ("missing", "No such file"),
    ):
        with pytest.raises(MCPError, match=why):
            await client.read_resource(f"sandbox://sessions/{session_id}/files/{bad}")
    with pytest.raises(MCPError, match="Unknown resource"):  # the SDK refuses it first
        await client.read_resource(f"sandbox://sessions/{session_id}/files/%2Fetc%2Fpasswd")
    with pytest.raises(MCPError, match="unknown session_id"):
        await client.read_resource("sandbox://sessions/someone-elses/files/a/b/c.txt")


@pytest.mark.skipif(not IS_ROOT, reason="starting the server as another user needs root")
async def test_sessions_work_in_shared_mode_under_the_container_contract(run_root: Path) -> None:
    async with Client(server_params(run_root, *NOBODY)) as client:
        first = await execute(client, language="python", code="v = 5", session_id="new")
        session_id = first.structured_content["session_id"]
        second = await execute(
            client, language="python", code="print(v * 2)", session_id=session_id
        )
        assert second.structured_content["stdout"] == "10\n"


def test_the_caller_key_is_the_http_session_when_there_is_one() -> None:
    class Request:
        def __init__(self) -> None:
            self.headers = {"mcp-session-id": "abc"}

    class RequestContext:
        request = Request()

    class Ctx:
        request_context = RequestContext()

    assert caller_key(Ctx()) == "http:abc"  # type: ignore[arg-type]
    Ctx.request_context.request.headers = {
        "mcp-session-id": "abc",
        "mcp-protocol-version": "2025-06-18",
    }
    assert caller_key(Ctx()) == "http:abc"  # type: ignore[arg-type]
    # A revision served without an MCP session: the header was never issued by the server.
    Ctx.request_context.request.headers = {
        "mcp-session-id": "chosen-by-the-client",
        "mcp-protocol-version": "2026-07-28",
    }
    assert caller_key(Ctx()) is None  # type: ignore[arg-type]
    Ctx.request_context.request.headers = {}
    assert caller_key(Ctx()) is None  # type: ignore[arg-type] # no key: no sessions
    assert caller_key(None) == STDIO
    assert Settings().max_sessions + Settings().max_concurrent_runs + 2 <= Settings().uid_count


async def test_files_sent_to_a_session_and_a_plot_made_in_it_come_back(client: Client) -> None:
    opened = await execute(
        client,
        language="python",
        code="import helper\nrows = helper.rows()\nopen('data.csv', 'w').write(rows)",
        files=[{"path": "helper.py", "content": "def rows():\n    return 'x,y\\n1,2\\n2,4\\n'\n"}],
        session_id="new",
    )
    session_id = opened.structured_content["session_id"]
    assert [item["path"] for item in opened.structured_content["files"]] == ["data.csv"]

    plotted = await execute(
        client,
        language="python",
        code=(
            "import matplotlib.pyplot as plt\n"
            "import pandas as pd\n"
            "frame = pd.read_csv('data.csv')\n"
            "plt.plot(frame.x, frame.y)\n"
            "plt.show()\n"
            "print(len(rows))"
        ),
        session_id=session_id,
    )

    assert plotted.structured_content["stdout"] == "12\n", plotted.structured_content
    # Only this call's file: data.csv and helper.py came from the first.
    assert [item["path"] for item in plotted.structured_content["files"]] == ["figure_1.png"]
    assert any(block.type == "image" for block in plotted.content)
    await client.call_tool("reset_session", {"session_id": session_id})


async def test_a_file_in_the_way_is_a_tool_error_and_a_full_disk_ends_the_session(
    run_root: Path,
) -> None:
    limit = 8 * 1024 * 1024
    params = server_params(run_root, SANDBOX_MAX_DISK_BYTES=str(limit))
    async with Client(params) as client:
        opened = await execute(
            client,
            language="python",
            code="import os\nos.mkdir('data.txt')\nkept = 1",
            session_id="new",
        )
        session_id = opened.structured_content["session_id"]
        blocked = await execute(
            client,
            language="python",
            code="print(kept)",
            files=[{"path": "data.txt", "content": "x"}],
            session_id=session_id,
        )
        assert blocked.is_error
        assert "could not write data.txt: it exists and is not a regular file" in (
            blocked.content[0].text
        )
        kept = await execute(client, language="python", code="print(kept)", session_id=session_id)
        assert (
            kept.structured_content["stdout"],
            kept.structured_content["session_state_lost"],
        ) == (
            "1\n",
            False,
        )

        # Calls far shorter than the watchdog's sampling interval.
        fill = "head -c 3000000 /dev/zero > f$RANDOM$RANDOM"
        first = await execute(client, language="bash", code=fill, session_id="new")
        bash_id = first.structured_content["session_id"]
        limits = [first.structured_content["limit"]]
        while limits[-1] is None and len(limits) < 6:
            call = await execute(client, language="bash", code=fill, session_id=bash_id)
            limits.append(call.structured_content["limit"])
        assert limits[-1] == "disk", limits
        assert call.structured_content["session_state_lost"] is True
        assert any(
            f"went past the disk limit of {limit} bytes: the session was ended" in note
            for note in call.structured_content["notes"]
        ), call.structured_content
        after = await execute(client, language="bash", code="ls", session_id=bash_id)
        assert after.is_error and "disk limit" in after.content[0].text


async def test_the_ruby_servers_reset_by_language_and_all_end_only_what_is_named(
    client: Client,
) -> None:
    async def open_session(language: str) -> str:
        code = {"python": "pass", "javascript": "0;", "bash": "true"}[language]
        opened = await execute(client, language=language, code=code, session_id="new")
        assert opened.structured_content["exit_code"] == 0, opened.content[0].text
        return str(opened.structured_content["session_id"])

    python = await open_session("python")
    javascript = await open_session("javascript")
    bash = await open_session("bash")

    # The Ruby server's form: `language`, an id (or an alias) ...
    by_language = await client.call_tool("reset_session", {"language": "py"})
    assert by_language.structured_content["ended"] == [python]
    # ... or "all".
    everything = await client.call_tool("reset_session", {"language": "all"})
    assert sorted(everything.structured_content["ended"]) == sorted([javascript, bash])
    for ended in (python, javascript, bash):
        gone = await execute(client, language="bash", code="true", session_id=ended)
        assert gone.is_error and "it was reset" in gone.content[0].text

    # The same through session_id "all"; nothing left is no error.
    again = await open_session("bash")
    assert (await client.call_tool("reset_session", {"session_id": "all"})).structured_content[
        "ended"
    ] == [again]
    nothing = await client.call_tool("reset_session", {"language": "all"})
    assert not nothing.is_error
    assert nothing.structured_content["ended"] == []
    assert "no session of yours matched" in nothing.content[0].text


async def test_the_caller_is_told_of_an_eviction_and_a_call_on_it_says_so(run_root: Path) -> None:
    # Two sessions at most, so one caller holds at most one: its second evicts its first.
    async with Client(server_params(run_root, SANDBOX_MAX_SESSIONS="2")) as client:
        first = await execute(client, language="python", code="a = 1", session_id="new")
        first_id = first.structured_content["session_id"]
        second = await execute(client, language="python", code="b = 2", session_id="new")

        told = [note for note in second.structured_content["notes"] if first_id in note]
        assert told and "was ended to make room" in told[0], second.structured_content["notes"]
        assert f"note: {told[0]}" in second.content[0].text
        evicted = await execute(client, language="python", code="print(a)", session_id=first_id)
        assert evicted.is_error
        assert "has ended: it was evicted" in evicted.content[0].text

        kept = await execute(
            client,
            language="python",
            code="print(b)",
            session_id=second.structured_content["session_id"],
        )
        assert kept.structured_content["stdout"] == "2\n"


async def test_an_expired_session_is_gone_with_its_files_and_a_call_on_it_says_so(
    run_root: Path,
) -> None:
    async with Client(server_params(run_root, SANDBOX_SESSION_IDLE_SECONDS="1")) as client:
        opened = await execute(
            client, language="bash", code="echo kept > f.txt; pwd", session_id="new"
        )
        workdir = Path(opened.structured_content["stdout"].strip())
        assert workdir.parent == run_root
        # Generous: the idle second, then the expiry's sweep and the clean-up.
        for _ in range(300):
            if not workdir.exists():
                break
            await anyio.sleep(0.1)
        assert not workdir.exists()

        expired = await execute(
            client,
            language="bash",
            code="cat f.txt",
            session_id=opened.structured_content["session_id"],
        )
        assert expired.is_error
        assert "has ended: it was unused for more than 1 s" in expired.content[0].text
