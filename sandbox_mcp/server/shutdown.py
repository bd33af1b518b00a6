"""Serving until the client leaves or SIGTERM asks the server to stop, then stopping cleanly.

On SIGTERM the server stops taking runs (new calls get `ServerBusy`), gives the runs in
flight `shutdown_grace` seconds to finish and answer, kills the rest (they answer with limit
"cancelled" where the transport still carries answers), removes every workdir, lets go of
the uid pool and exits with status 0. The transport is any coroutine function that serves
until its client leaves; only the stdio one is wired up here.

The SDK's stdio transport, which serves when stdin is a terminal or a file (stdio.py), reads
stdin in a worker thread that cannot be interrupted while the client keeps stdin open: once
everything is cleaned up the process leaves with `os._exit` rather than wait for that read.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

import anyio

from sandbox_mcp.sandbox.runner import Sandbox
from sandbox_mcp.server import stdio

logger = logging.getLogger(__name__)
# Time for the answers of the runs that finished during the grace to be written out.
_ANSWER_FLUSH_SECONDS = 1.0


async def serve_until_terminated(serve: Callable[[], Awaitable[None]], sandbox: Sandbox) -> None:
    """Run `serve` until it returns (the client left) or SIGTERM arrives; then stop cleanly."""
    async with anyio.create_task_group() as group:
        group.start_soon(_stop_on_sigterm, sandbox)
        await serve()
        group.cancel_scope.cancel()


async def _stop_on_sigterm(sandbox: Sandbox) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            break
    grace = sandbox.settings.shutdown_grace
    logger.info("SIGTERM: no new runs; waiting up to %gs for the runs in flight", grace)
    with anyio.CancelScope(shield=True):
        await sandbox.drain(grace)
        await anyio.sleep(_ANSWER_FLUSH_SECONDS)
        await sandbox.close()
    logger.info("stopped: every run ended and its workdir removed")
    logging.shutdown()
    sys.stderr.flush()
    stdio.give_back_blocking()
    os._exit(0)
