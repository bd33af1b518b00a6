"""A Java call through the whole stack takes the server's warm JVM (warm_java.py)."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from pathlib import Path

import pytest
from mcp import Client

from sandbox_mcp.sandbox.runner import STANDBY_RUNS
from tests.support import server_params

pytestmark = pytest.mark.anyio

HELLO = """
public class Main {
    public static void main(String[] args) throws Exception {
        System.out.println("hello " + String.join(",", args) + " " + System.in.read());
    }
}
"""


async def test_a_java_call_takes_the_warm_jvm_and_answers_as_a_cold_run() -> None:
    run_root = Path("/tmp") / f"sandbox-mcp-warm-java-{secrets.token_hex(4)}"
    log = run_root.with_name(run_root.name + ".log")
    # The server's log goes to a file of the test's: it says which runs were on standby.
    logging = ("sh", "-c", 'exec "$@" 2>>"$SERVER_LOG"', "sh")
    params = server_params(run_root, *logging, SERVER_LOG=str(log))
    try:
        async with Client(params) as client:
            # Two runs on standby for each warm language of SANDBOX_WARM, and one Java run
            # once the server has compiled the JVM's bootstrap (after the version probes).
            for _ in range(1200):
                info = (await client.call_tool("server_info", {})).structured_content or {}
                due = STANDBY_RUNS * len(info.get("warm_languages", [])) + 1
                if info.get("runs_on_standby", 0) >= due:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"no Java run on standby within 60 s: {log.read_text()}")
            answer = await client.call_tool(
                "execute_code",
                {"language": "java", "code": HELLO, "args": ["a", "b"], "stdin": "A"},
            )
        written = log.read_text()
    finally:
        leftovers = list(run_root.iterdir()) if run_root.exists() else []
        shutil.rmtree(run_root, ignore_errors=True)
        run_root.with_name(run_root.name + ".lock").unlink(missing_ok=True)
        log.unlink(missing_ok=True)

    content = answer.structured_content or {}
    assert not answer.is_error, answer.content
    assert content["stdout"] == "hello a,b 65\n"
    assert content["exit_code"] == 0
    assert content["compile"]["exit_code"] == 0
    started = [line for line in written.splitlines() if f"run {content['run_id']} java" in line]
    assert any("(was on standby)" in line for line in started), written
    assert not leftovers
