"""The runner under admission, with real runs: the wait for a slot, the memory budget."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox_mcp.config import Settings
from sandbox_mcp.errors import ServerBusy
from sandbox_mcp.sandbox.progress import RunProgress
from sandbox_mcp.sandbox.runner import RunRequest, Sandbox
from tests.support import uid_base

pytestmark = pytest.mark.anyio

BASE = Settings(timeout=10, max_timeout=10, uid_base=uid_base(3))


async def test_time_waiting_for_a_slot_does_not_count_against_the_deadline(
    run_root: Path,
) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, max_concurrent_runs=1))
    await box.start()
    try:
        # Each run needs 1.5 s of its 2.5 s; the last waits about 3 s for its slot first.
        requests = [
            RunRequest(language="bash", code=f"sleep 1.5; echo {n}", timeout_seconds=2.5)
            for n in range(3)
        ]
        progress = [RunProgress() for _ in requests]
        results = await asyncio.gather(
            *(box.run(request, live) for request, live in zip(requests, progress, strict=True))
        )
    finally:
        await box.close()

    assert [result.stdout for result in results] == ["0\n", "1\n", "2\n"]
    assert [result.limit for result in results] == [None, None, None]
    last = progress[2]
    assert last.started is not None
    assert last.started - last.arrived > 2.5, "the last run did not wait for its slot"


async def test_memory_budget_keeps_runs_apart_even_with_free_slots(run_root: Path) -> None:
    # bash expects an eighth of its 512 MB limit, 64 MB: a 100 MB budget holds one at once.
    box = Sandbox(replace(BASE, run_root=run_root, max_concurrent_runs=4, memory_budget_mb=100))
    await box.start()
    try:
        results = await asyncio.gather(
            *(box.run(RunRequest(language="bash", code=f"sleep 0.3; echo {n}")) for n in range(3))
        )
        activity = box.activity()
    finally:
        await box.close()

    assert [result.stdout for result in results] == ["0\n", "1\n", "2\n"]
    assert activity.in_flight_high_water == 1
    assert (activity.memory_budget_mb, activity.memory_reserved_mb) == (100, 0)


async def test_a_run_larger_than_the_budget_still_runs_alone(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, memory_budget_mb=64, memory_mb=1024))
    await box.start()
    try:
        result = await box.run(RunRequest(language="javascript", code="console.log('alone')"))
    finally:
        await box.close()

    assert result.stdout == "alone\n"


async def test_a_full_queue_refuses_with_server_busy(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, max_concurrent_runs=1, max_queued=1))
    await box.start()
    try:
        first = asyncio.ensure_future(box.run(RunRequest(language="bash", code="sleep 1")))
        second = asyncio.ensure_future(box.run(RunRequest(language="bash", code="echo 2")))
        await asyncio.sleep(0.3)
        with pytest.raises(ServerBusy, match=r"server busy: 1 run executing, 1 waiting"):
            await box.run(RunRequest(language="bash", code="echo 3"))
        await asyncio.gather(first, second)
    finally:
        await box.close()


async def test_warm_python_runs_on_standby_keep_working_under_admission(
    run_root: Path,
) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, max_concurrent_runs=2))
    await box.start()
    try:
        for _ in range(50):
            if box.standby_ready:
                break
            await asyncio.sleep(0.1)
        assert box.standby_ready, "no warm run stood by"
        results = await asyncio.gather(
            *(box.run(RunRequest(language="python", code=f"print({n})")) for n in range(6))
        )
        activity = box.activity()
    finally:
        await box.close()

    assert [result.stdout for result in results] == [f"{n}\n" for n in range(6)]
    assert activity.in_flight_high_water == 2


async def test_drain_ends_a_run_past_the_grace_as_cancelled(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root))
    await box.start()
    try:
        call = asyncio.ensure_future(box.run(RunRequest(language="bash", code="sleep 30")))
        await asyncio.sleep(0.5)
        await box.drain(0.5)
        result = await call
        with pytest.raises(ServerBusy, match="shutting down"):
            await box.run(RunRequest(language="bash", code="echo late"))
    finally:
        await box.close()

    assert result.limit == "cancelled"
