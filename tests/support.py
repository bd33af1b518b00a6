"""Helpers the tests share."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp import StdioServerParameters


def process_exists(pid: int) -> bool:
    """True while `pid` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


IS_ROOT = os.geteuid() == 0


def uid_base(slot: int) -> int:
    """A uid pool range for this test session's `slot`th server.

    Derived from the pid, so that two test sessions on one machine (two checkouts, a
    developer and CI) claim different ranges instead of refusing each other's. Above 100000:
    clear of system and login accounts, and of nobody (65534).
    """
    return 100000 + 64 * (slot + 8 * (os.getpid() % 1000))


def server_command() -> str:
    """The `sandbox-mcp` console script of the environment running the tests."""
    return str(Path(sys.executable).parent / "sandbox-mcp")


def server_params(run_root: Path, *prefix: str, **env: str) -> StdioServerParameters:
    """Start parameters for `sandbox-mcp` over stdio, optionally behind a wrapper like setpriv."""
    command = [*prefix, server_command()]
    return StdioServerParameters(
        command=command[0],
        args=command[1:],
        env={
            "SANDBOX_RUN_ROOT": str(run_root),
            "SANDBOX_LOG_LEVEL": "info",
            "SANDBOX_UID_BASE": str(uid_base(0)),
            **env,
        },
    )


# The container's non-root contract: an unprivileged uid with no capabilities at all and
# no-new-privileges, as `docker run --user 65534 --cap-drop ALL --security-opt
# no-new-privileges` gives it.
NOBODY = (
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
    "--no-new-privs",
    "--",
)


def initialize_request(request_id: int) -> dict[str, object]:
    """A raw JSON-RPC `initialize` request, for tests that speak to the server without the SDK."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }
