"""Load, progress and stopping, end to end: `sandbox-mcp` over stdio and the SDK client.

Admission (slots, the queue and its timeout), progress notifications, a client's
cancellation and disconnection, SIGTERM, and the JSON log, each checked on the real server
with the processes and workdirs it leaves (or does not) on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.http_server import running_server
from tests.support import server_command, uid_base

pytestmark = pytest.mark.anyio


def params(run_root: Path, *wrapper: str, **env: str) -> StdioServerParameters:
    """The server over stdio, its run root on its command line so that tests can find it."""
    command = [*wrapper, server_command(), "--run-root", str(run_root)]
    return StdioServerParameters(
        command=command[0],
        args=command[1:],
        env={"SANDBOX_LOG_LEVEL": "info", "SANDBOX_UID_BASE": str(uid_base(2)), **env},
    )


def reporting_exit(status: Path) -> tuple[str, ...]:
    """A wrapper whose shell writes the server's exit status to `status` when it ends.

    A server that the SDK client had to kill takes the shell with it (the client kills the
    whole process tree), so a status file saying 0 means the server left by itself.
    """
    return ("sh", "-c", f'"$@"; echo $? > {status}', "sh")


def logging_to(log: Path) -> tuple[str, ...]:
    return ("sh", "-c", f'exec "$@" 2> {log}', "sh")


def live_processes(fragment: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains `fragment`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if fragment in cmdline and state not in (b"Z", b"X"):
            found.append(int(entry.name))
    return found


def uid_of(pid: int) -> int:
    return Path(f"/proc/{pid}").stat().st_uid


def processes_of_uid(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
                if state not in (b"Z", b"X"):
                    found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def server_pid(run_root: Path) -> int:
    (pid,) = [
        pid
        for pid in live_processes(f"--run-root {run_root}")
        if "sh -c" not in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    ]
    return pid


async def until(condition: Any, patience: float) -> bool:
    """Whether `condition()` becomes true within `patience` seconds."""
    with anyio.move_on_after(patience):
        while not condition():
            await anyio.sleep(0.05)
        return True
    return bool(condition())


def workdirs(run_root: Path) -> list[str]:
    return sorted(entry.name for entry in run_root.iterdir()) if run_root.exists() else []


@asynccontextmanager
async def connected(run_root: Path, *wrapper: str, **env: str) -> AsyncIterator[Client]:
    async with Client(params(run_root, *wrapper, **env)) as client:
        yield client


async def execute(client: Client, code: str, language: str = "bash", **extra: Any) -> Any:
    return await client.call_tool("execute_code", {"language": language, "code": code, **extra})


# --- admission ---------------------------------------------------------------------------------


async def test_sixteen_calls_on_four_slots_all_answer_and_at_most_four_run(
    run_root: Path,
) -> None:
    async with connected(
        run_root, SANDBOX_MAX_CONCURRENT_RUNS="4", SANDBOX_MAX_QUEUED="16"
    ) as client:
        tokens = [os.urandom(6).hex() for _ in range(16)]
        results = await asyncio.gather(
            *(
                # Each holds its slot half a second: all sixteen are sent before four end.
                execute(client, f"import time\ntime.sleep(0.5)\nprint({token!r})", "python")
                if index % 2
                else execute(client, f"sleep 0.5; echo {token}")
                for index, token in enumerate(tokens)
            )
        )
        info = (await client.call_tool("server_info", {})).structured_content

    assert [result.structured_content["stdout"].strip() for result in results] == tokens
    assert info["in_flight_high_water"] == 4
    assert info["queued"] == 0
    assert info["limits"]["max_concurrent_runs"] == 4
    assert info["limits"]["max_queued"] == 16


async def test_a_call_beyond_the_queue_bound_is_refused_as_busy(run_root: Path) -> None:
    async with connected(
        run_root, SANDBOX_MAX_CONCURRENT_RUNS="1", SANDBOX_MAX_QUEUED="1"
    ) as client:
        results = await asyncio.gather(*(execute(client, "sleep 2; echo done") for _ in range(3)))
        after = await execute(client, "echo still serving")

    refused = [result for result in results if result.is_error]
    assert len(refused) == 1
    assert "server busy" in refused[0].content[0].text
    assert "try again" in refused[0].content[0].text
    assert all(r.structured_content["stdout"] == "done\n" for r in results if not r.is_error)
    assert after.structured_content["stdout"] == "still serving\n"


async def test_a_call_that_waits_past_the_queue_timeout_is_refused_as_busy(
    run_root: Path,
) -> None:
    async with connected(
        run_root, SANDBOX_MAX_CONCURRENT_RUNS="1", SANDBOX_QUEUE_TIMEOUT="1"
    ) as client:
        # Long enough to still hold the slot when the second call has waited its second,
        # however slowly a loaded machine notices it started.
        long = asyncio.ensure_future(execute(client, "sleep 10; echo long"))
        await until(lambda: live_processes("sleep 10"), 10)
        waited = await execute(client, "echo never")
        finished = await long

    assert waited.is_error
    assert "server busy: waited 1 s for a slot" in waited.content[0].text
    assert finished.structured_content["stdout"] == "long\n"


# --- progress ----------------------------------------------------------------------------------


async def test_progress_arrives_while_a_five_second_run_goes(run_root: Path) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with connected(run_root) as client:
        result = await client.call_tool(
            "execute_code",
            {"language": "bash", "code": "for i in 1 2 3 4 5; do echo tick; sleep 1; done"},
            progress_callback=on_progress,
        )

    assert result.structured_content["stdout"] == "tick\n" * 5
    # About one a second; a loaded machine may lose a couple.
    assert len(seen) >= 3, seen
    assert [progress for progress, _, _ in seen] == sorted(progress for progress, _, _ in seen)
    messages = [message or "" for _, _, message in seen]
    assert all("running" in message and "bytes of output" in message for message in messages)
    assert any(" 0 bytes" not in message for message in messages), messages


# --- cancellation and disconnection ----------------------------------------------------------


async def test_cancelled_call_frees_its_processes_workdir_and_slot_at_once(
    run_root: Path,
) -> None:
    async with connected(
        run_root, SANDBOX_MAX_CONCURRENT_RUNS="1", SANDBOX_QUEUE_TIMEOUT="5"
    ) as client:
        call = asyncio.ensure_future(execute(client, "sleep 61.25"))
        assert await until(lambda: live_processes("sleep 61.25"), 10)
        seen = live_processes("sleep 61.25")
        run_uid = uid_of(seen[0])
        # The SDK client sends notifications/cancelled for a call its caller cancels.
        call.cancel()

        assert await until(lambda: not live_processes("sleep 61.25"), 5)
        if run_uid != os.getuid():
            # Pool mode: the run's own uid has no process left (a freed uid goes to the back
            # of the pool, so no other run has it yet).
            assert await until(lambda: not processes_of_uid(run_uid), 5)
        # The one slot is free again: with it still held, this call would be refused.
        after = await execute(client, "echo next")
        info = (await client.call_tool("server_info", {})).structured_content

    assert after.structured_content["stdout"] == "next\n"
    assert info["in_flight"] == 0
    assert info["workdirs_present"] == 0


async def test_client_that_disconnects_mid_run_leaves_nothing_behind(run_root: Path) -> None:
    # By hand rather than with the SDK client: leaving the client's block first cancels its
    # calls (notifications/cancelled), and then kills the server if it lingers, so only a
    # bare stdin closed mid-run shows that the end of stdin alone stops everything.
    server = params(run_root)
    process = await anyio.open_process(
        [server.command, *server.args], env={"PATH": os.environ["PATH"], **(server.env or {})}
    )
    assert process.stdin is not None and process.stdout is not None
    lines = _lines(process.stdout)
    for message in (
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {
                "name": "execute_code",
                "arguments": {"language": "bash", "code": "sleep 62.5"},
            },
        },
    ):
        await process.stdin.send(json.dumps(message).encode() + b"\n")
        if "id" in message and message["id"] == 1:
            assert json.loads(await lines.__anext__())["id"] == 1

    assert await until(lambda: live_processes("sleep 62.5"), 10)
    await process.stdin.aclose()
    with anyio.fail_after(20):
        status = await process.wait()

    assert status == 0
    assert live_processes("sleep 62.5") == []
    assert workdirs(run_root) == []


async def test_sdk_client_leaving_mid_run_leaves_nothing_behind(run_root: Path) -> None:
    # The client cancels the call, closes stdin and, after 2 s, kills what is left of the
    # server: whichever of these ends the server, nothing of the run may remain.
    async with connected(run_root) as client:
        call = asyncio.ensure_future(execute(client, "sleep 63.5"))
        assert await until(lambda: live_processes("sleep 63.5"), 10)
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)

    assert await until(lambda: not live_processes("sleep 63.5"), 10)
    assert await until(lambda: workdirs(run_root) == [], 10)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sdk_client_leaving_mid_run_over_http_leaves_nothing_behind(
    run_root: Path, mode: str
) -> None:
    # Over HTTP the server outlives the client: leaving cancels the call (and, with an MCP
    # session, ends that session), and that alone must stop the run and free its slot.
    marker = "sleep 66.25" if mode == "legacy" else "sleep 66.5"
    with running_server(run_root, 5, "--run-root", str(run_root), token=os.urandom(16).hex()) as s:
        async with (
            httpx2.AsyncClient(headers=s.headers()) as http,
            Client(streamable_http_client(s.url, http_client=http), mode=mode) as client,
        ):
            call = asyncio.ensure_future(execute(client, marker))
            assert await until(lambda: live_processes(marker), 10)
            # Runs on standby hold workdirs of their own while the server lives: this one's.
            workdir = Path(f"/proc/{live_processes(marker)[0]}/cwd").resolve()
            assert workdir.parent == run_root
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)

        assert await until(lambda: not live_processes(marker), 10)
        assert await until(lambda: not workdir.exists(), 10)
        metrics = s.metrics()

    assert "\nsandbox_mcp_runs_in_flight 0\n" in metrics
    assert "\nsandbox_mcp_runs_in_flight_high_water 1\n" in metrics


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_http_client_whose_connection_drops_mid_run_leaves_nothing_behind(
    run_root: Path, mode: str
) -> None:
    # No cancellation sent, no MCP session ended: the connection drops, and the answer can
    # reach no one. In the SDK's default mode each call is its own HTTP request, which the
    # SDK ends with the connection; in legacy mode the call outlives its POST in the MCP
    # session, and the server's own watch (inflight.py) must end it.
    marker = f"sleep 67.{25 if mode == 'auto' else 75}"
    started, workdir = False, None
    with running_server(run_root, 5, "--run-root", str(run_root), token=os.urandom(16).hex()) as s:
        # The client fails in its own ways once its connection is gone: only the run matters.
        with contextlib.suppress(Exception):
            async with (
                httpx2.AsyncClient(headers=s.headers()) as http,
                Client(streamable_http_client(s.url, http_client=http), mode=mode) as client,
            ):
                call = asyncio.ensure_future(execute(client, marker))
                started = await until(lambda: live_processes(marker), 10)
                if started:
                    workdir = Path(f"/proc/{live_processes(marker)[0]}/cwd").resolve()
                await http.aclose()
                await asyncio.gather(call, return_exceptions=True)

        assert started and workdir is not None and workdir.parent == run_root
        assert await until(lambda: not live_processes(marker), 10)
        assert await until(lambda: not workdir.exists(), 10)
        metrics = s.metrics()

    assert "\nsandbox_mcp_runs_in_flight 0\n" in metrics


async def _lines(stream: Any) -> AsyncIterator[bytes]:
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line
        buffer += await stream.receive()


# --- SIGTERM -----------------------------------------------------------------------------------


async def test_sigterm_lets_a_short_run_finish_and_answer(run_root: Path, tmp_path: Path) -> None:
    status = tmp_path / "status"
    tmp_path.chmod(0o777)
    async with connected(run_root, *reporting_exit(status)) as client:
        call = asyncio.ensure_future(execute(client, "sleep 1.03; echo finished"))
        assert await until(lambda: live_processes("sleep 1.03"), 10)
        os.kill(server_pid(run_root), signal.SIGTERM)
        result = await call
        assert await until(status.exists, 15)

    assert result.structured_content["stdout"] == "finished\n"
    assert result.structured_content["limit"] is None
    assert status.read_text().strip() == "0"
    assert workdirs(run_root) == []


async def test_sigterm_ends_a_long_run_after_the_grace(run_root: Path, tmp_path: Path) -> None:
    status = tmp_path / "status"
    tmp_path.chmod(0o777)
    async with connected(run_root, *reporting_exit(status), SANDBOX_SHUTDOWN_GRACE="2") as client:
        call = asyncio.ensure_future(execute(client, "sleep 60.75"))
        assert await until(lambda: live_processes("sleep 60.75"), 10)
        os.kill(server_pid(run_root), signal.SIGTERM)
        # The grace, then the kill and the clean-up, with a wide margin for a busy machine.
        assert await until(status.exists, 2 + 20)
        result = await call

    assert status.read_text().strip() == "0"
    assert result.structured_content["limit"] == "cancelled"
    assert live_processes("sleep 60.75") == []
    assert workdirs(run_root) == []


# --- the log -----------------------------------------------------------------------------------


async def test_json_log_has_one_line_per_run_without_the_code(
    run_root: Path, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    tmp_path.chmod(0o777)
    secret = os.urandom(8).hex()
    async with connected(run_root, *logging_to(log), SANDBOX_LOG_FORMAT="json") as client:
        result = await execute(client, f"s = {secret!r}\nprint(len(s))", "python")

    text = log.read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    runs = [entry for entry in entries if entry.get("event") == "run"]
    assert result.structured_content["stdout"] == "16\n"
    assert len(runs) == 1, runs
    assert {
        "run_id",
        "language",
        "duration_ms",
        "exit_code",
        "limit",
        "stdout_bytes",
        "stderr_bytes",
        "caller",
    } <= runs[0].keys()
    assert runs[0]["run_id"] == result.structured_content["run_id"]
    assert (runs[0]["language"], runs[0]["exit_code"], runs[0]["stdout_bytes"]) == ("python", 0, 3)
    assert secret not in text


# --- SIGTERM over HTTP -------------------------------------------------------------------------


async def test_sigterm_over_http_ends_a_long_run_after_the_grace_and_answers(
    run_root: Path,
) -> None:
    result = None
    with running_server(
        run_root, 4, "--run-root", str(run_root), SANDBOX_SHUTDOWN_GRACE="2"
    ) as server:
        process_id = server_pid(run_root)
        # The client's goodbye (ending its session) may find the server gone: only the
        # answer matters here, and it arrives before.
        with contextlib.suppress(ExceptionGroup, httpx2.HTTPError):
            async with (
                httpx2.AsyncClient(headers=server.headers()) as http,
                Client(streamable_http_client(server.url, http_client=http)) as client,
            ):
                call = asyncio.ensure_future(execute(client, "sleep 60.25"))
                assert await until(lambda: live_processes("sleep 60.25"), 10)
                os.kill(process_id, signal.SIGTERM)
                with anyio.fail_after(2 + 20):
                    result = await call
        assert await until(lambda: not live_processes(f"--run-root {run_root}"), 20)

    assert result is not None, "no answer came before the server stopped"
    assert result.structured_content["limit"] == "cancelled"
    assert live_processes("sleep 60.25") == []
    assert workdirs(run_root) == []
