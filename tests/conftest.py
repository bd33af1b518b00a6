"""Shared fixtures: a run root that non-root pool uids can reach, and the anyio backend."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def run_root() -> Iterator[Path]:
    # Not pytest's tmp_path: that lives in a 0700 directory that a run's own uid could not
    # traverse. /tmp itself is open to all, like the container's tmpfs.
    path = Path("/tmp") / f"sandbox-mcp-test-{secrets.token_hex(4)}"
    yield path
    leftovers = list(path.iterdir()) if path.exists() else []
    shutil.rmtree(path, ignore_errors=True)
    path.with_name(path.name + ".lock").unlink(missing_ok=True)
    assert not leftovers, f"workdirs left behind: {leftovers}"
