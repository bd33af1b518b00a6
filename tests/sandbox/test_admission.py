"""Admission alone: slots, the memory budget and the bounded queue, without processes."""

from __future__ import annotations

import asyncio

import pytest

from sandbox_mcp.errors import ServerBusy
from sandbox_mcp.sandbox.admission import Admission

pytestmark = pytest.mark.anyio


async def hold(admission: Admission, need_mb: int, release: asyncio.Event, log: list[str]) -> None:
    async with admission.slot(need_mb):
        log.append(f"in {need_mb}")
        await release.wait()
    log.append(f"out {need_mb}")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_at_most_max_runs_at_once_and_the_rest_wait_in_order() -> None:
    admission = Admission(max_runs=2, budget_mb=10_000, max_queued=10, queue_timeout=10)
    release = asyncio.Event()
    log: list[str] = []
    tasks = [asyncio.ensure_future(hold(admission, n, release, log)) for n in (1, 2, 3, 4)]
    await settle()

    assert log == ["in 1", "in 2"]
    assert (admission.in_flight, admission.queued) == (2, 2)
    release.set()
    await asyncio.gather(*tasks)
    assert admission.in_flight_high_water == 2
    assert (admission.in_flight, admission.queued, admission.reserved_mb) == (0, 0, 0)


async def test_two_large_runs_never_share_the_budget() -> None:
    # A 512 MB container: 352 MB of budget; a JVM run needs its whole 512 MB limit.
    admission = Admission(max_runs=4, budget_mb=352, max_queued=10, queue_timeout=10)
    first, second = asyncio.Event(), asyncio.Event()
    log: list[str] = []
    jvm_a = asyncio.ensure_future(hold(admission, 512, first, log))
    await settle()
    jvm_b = asyncio.ensure_future(hold(admission, 512, second, log))
    bash = asyncio.ensure_future(hold(admission, 64, second, log))
    await settle()

    # The first runs alone (its need exceeds the budget); the rest wait behind it in order.
    assert log == ["in 512"]
    assert (admission.in_flight, admission.queued, admission.reserved_mb) == (1, 2, 352)
    first.set()
    await settle()
    assert log == ["in 512", "out 512", "in 512"]
    second.set()
    await asyncio.gather(jvm_a, jvm_b, bash)
    assert admission.in_flight_high_water == 1


async def test_small_runs_share_the_budget() -> None:
    admission = Admission(max_runs=8, budget_mb=200, max_queued=10, queue_timeout=10)
    release = asyncio.Event()
    log: list[str] = []
    tasks = [asyncio.ensure_future(hold(admission, 64, release, log)) for _ in range(4)]
    await settle()

    assert (admission.in_flight, admission.queued, admission.reserved_mb) == (3, 1, 192)
    release.set()
    await asyncio.gather(*tasks)


async def test_a_call_beyond_the_queue_bound_is_refused_at_once() -> None:
    admission = Admission(max_runs=1, budget_mb=1000, max_queued=2, queue_timeout=10)
    release = asyncio.Event()
    tasks = [asyncio.ensure_future(hold(admission, 1, release, [])) for _ in range(3)]
    await settle()

    full = r"server busy: 1 run executing, 2 waiting, the most allowed; try again shortly"
    with pytest.raises(ServerBusy, match=full):
        async with admission.slot(1):
            pass
    release.set()
    await asyncio.gather(*tasks)


async def test_a_call_that_waits_past_the_queue_timeout_is_refused() -> None:
    admission = Admission(max_runs=1, budget_mb=1000, max_queued=5, queue_timeout=0.2)
    release = asyncio.Event()
    running = asyncio.ensure_future(hold(admission, 1, release, []))
    await settle()

    waited = r"server busy: waited 0.2 s for a slot; 1 run executing, 0 waiting; try again"
    with pytest.raises(ServerBusy, match=waited):
        async with admission.slot(1):
            pass
    assert admission.queued == 0
    release.set()
    await running
    async with admission.slot(1):
        assert admission.in_flight == 1


async def test_a_cancelled_waiter_leaves_the_queue_and_takes_nothing() -> None:
    admission = Admission(max_runs=1, budget_mb=1000, max_queued=5, queue_timeout=10)
    release = asyncio.Event()
    running = asyncio.ensure_future(hold(admission, 1, release, []))
    await settle()
    waiter = asyncio.ensure_future(hold(admission, 1, release, []))
    await settle()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)

    assert admission.queued == 0
    release.set()
    await running
    assert (admission.in_flight, admission.reserved_mb) == (0, 0)


async def test_close_refuses_the_waiting_and_the_new_and_wait_idle_sees_the_end() -> None:
    admission = Admission(max_runs=1, budget_mb=1000, max_queued=5, queue_timeout=10)
    release = asyncio.Event()
    running = asyncio.ensure_future(hold(admission, 1, release, []))
    await settle()
    waiter = asyncio.ensure_future(hold(admission, 1, release, []))
    await settle()

    admission.close()
    with pytest.raises(ServerBusy, match="shutting down"):
        await waiter
    with pytest.raises(ServerBusy, match="shutting down"):
        async with admission.slot(1):
            pass
    assert not await admission.wait_idle(0.05)
    release.set()
    assert await admission.wait_idle(1)
    await running
