"""Which calls a dropped HTTP connection cancels: its own, by exact id and caller."""

from __future__ import annotations

import anyio
import pytest

from sandbox_mcp.server.inflight import InFlightCalls, _request_ids

pytestmark = pytest.mark.anyio


def test_the_ids_of_a_body_keep_their_json_type() -> None:
    body = (
        b'[{"jsonrpc":"2.0","id":2,"method":"tools/call"},{"jsonrpc":"2.0","id":"2","method":"x"},'
    )
    body += b'{"jsonrpc":"2.0","method":"notifications/cancelled"},{"jsonrpc":"2.0","id":3}]'

    assert _request_ids(body) == ["2", '"2"']
    assert _request_ids(b"not json") == []


async def test_only_the_callers_call_with_that_exact_id_is_cancelled() -> None:
    calls = InFlightCalls()
    ended: dict[str, bool] = {}

    async def call(name: str, owner: str, request_id: object) -> None:
        with calls.track(owner, request_id) as scope:
            await anyio.sleep(5)
        ended[name] = scope.cancelled_caught

    async with anyio.create_task_group() as group:
        group.start_soon(call, "number", "http:a", 2)
        group.start_soon(call, "string", "http:a", "2")
        group.start_soon(call, "other caller", "http:b", 2)
        group.start_soon(call, "duplicate", "http:a", 2)
        await anyio.sleep(0.1)
        assert calls.cancel("http:a", ["2"]) == 1
        await anyio.sleep(0.1)
        group.cancel_scope.cancel()

    # The first call under id 2 was tracked; the duplicate was not, and cannot be hit.
    assert ended == {"number": True}
