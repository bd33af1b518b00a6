"""A real `sandbox-mcp --transport http` for the tests: started as a subprocess on a free
loopback port, waited for until /readyz says ready, stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2

from tests.support import server_command, uid_base

# Starting the sandbox and probing sixteen runtimes (two JVMs among them) on a busy machine.
_READY_SECONDS = 120.0


@dataclass(frozen=True)
class HttpServer:
    """A running server: where it listens, the token it wants, and its log so far."""

    port: int
    token: str | None
    log_path: Path
    pid: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def headers(self) -> dict[str, str]:
        """The Authorization header, when the server wants a token."""
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}

    def metrics(self) -> str:
        """The /metrics page, fetched with the token."""
        response = httpx2.get(f"{self.base}/metrics", headers=self.headers(), timeout=30)
        assert response.status_code == 200, response.text
        return response.text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    """A loopback TCP port nobody listens on now (a race with other processes is unlikely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fresh_run_root() -> Path:
    """A run root in /tmp that the pool's uids can traverse (see tests/conftest.py)."""
    return Path("/tmp") / f"sandbox-mcp-test-{secrets.token_hex(4)}"


def remove_run_root(path: Path) -> list[Path]:
    """Remove a run root and its lock; return the workdirs a server left behind."""
    leftovers = list(path.iterdir()) if path.exists() else []
    shutil.rmtree(path, ignore_errors=True)
    path.with_name(path.name + ".lock").unlink(missing_ok=True)
    return leftovers


@contextlib.contextmanager
def running_server(
    run_root: Path, slot: int, *args: str, token: str | None = None, **env: str
) -> Iterator[HttpServer]:
    """Start `sandbox-mcp --transport http` on a free port and stop it afterwards.

    `token` goes in SANDBOX_AUTH_TOKEN; `args` and `env` add flags and variables (for a token
    file, say). The log goes to a file beside the run root, shown when startup fails.
    """
    port = free_port()
    log_path = run_root.with_name(run_root.name + ".log")
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "SANDBOX_RUN_ROOT": str(run_root),
        "SANDBOX_UID_BASE": str(uid_base(slot)),
        "SANDBOX_LOG_LEVEL": "info",
        **({"SANDBOX_AUTH_TOKEN": token} if token is not None else {}),
        **env,
    }
    command = [server_command(), "--transport", "http", "--port", str(port), *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    server = HttpServer(port=port, token=token, log_path=log_path, pid=process.pid)
    try:
        _wait_until_ready(server, process)
        yield server
    finally:
        _stop(process)
        log_path.unlink(missing_ok=True)


def _wait_until_ready(server: HttpServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{server.log()}")
        with contextlib.suppress(httpx2.HTTPError):
            if httpx2.get(f"{server.base}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"server not ready after {_READY_SECONDS:g}s:\n{server.log()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    # SIGTERM: uvicorn shuts down, the lifespan closes the sandbox and removes the run root.
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("the server did not stop within 60 s of SIGTERM") from None
