"""Admission: which calls may start a run now, which wait, and which are turned away.

A run needs a slot (at most `max_runs` execute at once) and its language's expected memory
out of a budget shared by all runs in flight, so that two JVM builds cannot push a small
container into the OOM killer together. Calls that cannot start wait in a bounded queue, in
arrival order, for at most `queue_timeout` seconds; a call beyond the bound, or one that
waited too long, gets `ServerBusy` at once rather than hanging.

Arrival order is kept strictly: a large run at the head of the queue holds back small ones
behind it until enough memory is free. Small runs could slip past it, but a large run could
then wait forever behind a stream of them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sandbox_mcp.errors import ServerBusy


@dataclass(eq=False)
class _Waiter:
    need_mb: int
    granted: asyncio.Future[None]


class Admission:
    """Slots, the memory budget and the bounded queue in front of them. One event loop."""

    def __init__(
        self, max_runs: int, budget_mb: int, max_queued: int, queue_timeout: float
    ) -> None:
        self.max_runs = max_runs
        self.budget_mb = budget_mb
        self.max_queued = max_queued
        self.queue_timeout = queue_timeout
        self.in_flight = 0
        self.in_flight_high_water = 0
        self.reserved_mb = 0
        self._waiting: collections.deque[_Waiter] = collections.deque()
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queued(self) -> int:
        """Calls waiting for a slot now."""
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def slot(self, need_mb: int) -> AsyncIterator[None]:
        """Hold a slot and `need_mb` of the budget while the block runs.

        A need larger than the whole budget is cut to the budget: such a run waits until
        nothing else runs and then runs alone, rather than never. Raises `ServerBusy` when
        the queue is full, when the call waited `queue_timeout` seconds, or after `close`.
        """
        need = min(max(need_mb, 0), self.budget_mb)
        await self._enter(need)
        try:
            yield
        finally:
            self._leave(need)

    def close(self) -> None:
        """Refuse every call from now on, those waiting included (the server is stopping)."""
        self._closed = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.granted.done():
                waiter.granted.set_exception(_shutting_down())

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no run is in flight, at most `timeout` seconds; True if none is."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _enter(self, need: int) -> None:
        if self._closed:
            raise _shutting_down()
        if not self._waiting and self._fits(need):
            self._take(need)
            return
        if len(self._waiting) >= self.max_queued:
            raise self._refusal("", ", the most allowed")

        waiter = _Waiter(need, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.granted), self.queue_timeout)
        except BaseException as exc:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            if waiter.granted.done() and not waiter.granted.exception():
                # Granted just as the wait ended: give the slot back to the next in line.
                self._leave(need)
            elif not waiter.granted.done():
                waiter.granted.cancel()
            self._grant()
            if isinstance(exc, TimeoutError):
                limit = f"{self.queue_timeout:g} s"
                raise self._refusal(f"waited {limit} for a slot; ") from None
            raise

    def _leave(self, need: int) -> None:
        self.in_flight -= 1
        self.reserved_mb -= need
        if self.in_flight == 0:
            self._idle.set()
        self._grant()

    def _grant(self) -> None:
        """Start the calls at the head of the queue, in order, while they fit."""
        while self._waiting and self._fits(self._waiting[0].need_mb):
            waiter = self._waiting.popleft()
            if waiter.granted.done():
                continue
            self._take(waiter.need_mb)
            waiter.granted.set_result(None)

    def _fits(self, need: int) -> bool:
        return self.in_flight < self.max_runs and self.reserved_mb + need <= self.budget_mb

    def _take(self, need: int) -> None:
        self.in_flight += 1
        self.in_flight_high_water = max(self.in_flight_high_water, self.in_flight)
        self.reserved_mb += need
        self._idle.clear()

    def _refusal(self, before: str, after: str = "") -> ServerBusy:
        return ServerBusy(
            f"server busy: {before}{_count(self.in_flight, 'run')} executing, "
            f"{self.queued} waiting{after}; try again shortly"
        )


def _shutting_down() -> ServerBusy:
    return ServerBusy("server shutting down: it takes no new runs; try again once it is back")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
