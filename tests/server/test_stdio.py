"""The stdio transport on the event loop (server/stdio.py), spoken to in raw JSON-RPC lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support import initialize_request, server_command, uid_base

INITIALIZE = initialize_request(0)
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def list_tools(request_id: int) -> bytes:
    return line({"jsonrpc": "2.0", "id": request_id, "method": "tools/list"})


def start(
    run_root: Path, stdin: Any = subprocess.PIPE, stdout: Any = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": "/tmp",
        "SANDBOX_RUN_ROOT": str(run_root),
        "SANDBOX_UID_BASE": str(uid_base(5)),
        "SANDBOX_LOG_LEVEL": "warning",
    }
    return subprocess.Popen(
        [server_command()], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env
    )


def answers(server: subprocess.Popen[bytes], count: int) -> dict[int, dict[str, Any]]:
    assert server.stdout is not None
    found = {}
    while len(found) < count:
        raw = server.stdout.readline()
        assert raw, f"the server closed stdout after {len(found)} answers"
        message = json.loads(raw)
        found[message["id"]] = message
    return found


def stop(server: subprocess.Popen[bytes]) -> bytes:
    if server.stdin is not None:
        server.stdin.close()
    server.wait(timeout=30)
    assert server.stderr is not None
    return server.stderr.read()


def test_requests_in_pieces_and_invalid_utf8_are_served(run_root: Path) -> None:
    server = start(run_root)
    assert server.stdin is not None
    try:
        server.stdin.write(line(INITIALIZE) + line(INITIALIZED))
        server.stdin.flush()
        assert answers(server, 1)[0]["result"]["serverInfo"]["name"]

        # One request a few bytes at a time; then a line that is not UTF-8 (replaced, so
        # the JSON is still read); then a line that is not JSON at all.
        request = list_tools(1)
        for start_at in range(0, len(request), 7):
            server.stdin.write(request[start_at : start_at + 7])
            server.stdin.flush()
            time.sleep(0.002)
        name = b'{"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"x\xff\xfe": 1}}\n'
        server.stdin.write(name + b"not json\n" + list_tools(3))
        server.stdin.flush()
        got = answers(server, 3)
    finally:
        stop(server)

    assert {tool["name"] for tool in got[1]["result"]["tools"]} >= {"execute_code"}
    assert "result" in got[2]
    assert "result" in got[3]
    assert server.returncode == 0


def test_answers_wait_for_a_client_that_reads_late(run_root: Path) -> None:
    # Sixty tools/list answers (several KB each) are far more than a pipe holds: the server
    # must wait for the reader, then deliver every one of them whole.
    server = start(run_root)
    assert server.stdin is not None
    try:
        server.stdin.write(line(INITIALIZE) + line(INITIALIZED))
        server.stdin.write(b"".join(list_tools(index) for index in range(1, 61)))
        server.stdin.flush()
        time.sleep(2)
        got = answers(server, 61)
    finally:
        stop(server)

    assert sum(len(json.dumps(answer)) for answer in got.values()) > 256 * 1024
    assert all("tools" in got[index]["result"] for index in range(1, 61))


def test_stdin_from_a_regular_file_falls_back_to_the_sdk_transport(
    run_root: Path, tmp_path: Path
) -> None:
    # The loop cannot watch a regular file (epoll refuses it). At the file's end the SDK
    # stops serving and drops the requests still in flight, so only the first is asked for.
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(line(INITIALIZE))
    with requests.open("rb") as handle:
        server = start(run_root, stdin=handle)
        try:
            got = answers(server, 1)
        finally:
            stop(server)

    assert got[0]["result"]["serverInfo"]["name"]
    assert server.returncode == 0


def test_the_clients_pipes_are_blocking_again_after_sigterm(run_root: Path) -> None:
    # O_NONBLOCK belongs to the pipe, shared with whoever else holds it (the client's
    # shell); the SIGTERM path leaves through os._exit, past the transport's clean-up.
    requests_read, requests_write = os.pipe()
    answers_read, answers_write = os.pipe()
    server = start(run_root, stdin=requests_read, stdout=answers_write)
    try:
        os.write(requests_write, line(INITIALIZE) + line(INITIALIZED) + list_tools(1))
        with os.fdopen(os.dup(answers_read), "rb") as answers_file:
            got = {json.loads(answers_file.readline())["id"] for _ in range(2)}
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

        assert got == {0, 1}
        assert server.returncode == 0
        assert os.get_blocking(requests_read)
        assert os.get_blocking(answers_write)
    finally:
        for fd in (requests_read, requests_write, answers_read, answers_write):
            os.close(fd)
