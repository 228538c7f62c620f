"""Which waiting call gets a worker's next free Moodle connection: the engine's priority order, kept.

The task queue hands a small event's tasks to the worker before a large event's (task Priority), but the
worker runs more activities than it has Moodle connections (`worker.ACTIVITY_SLOTS_PER_CONNECTION`), so
an activity can still wait for a connection. The connection pool serves its waiters first come, first
served: a small event's call would wait there behind every call of the large event that reached the
worker before it. The gate keeps the queue's order instead: a free connection goes to the waiting call of
the highest priority (the lowest priority key), first come, first served within a key.

The activity worker sets each activity's priority key in `call_priority` (`activities.call_priority`);
code outside an activity (the start-up check, the CLI) gets Temporal's default key.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

DEFAULT_PRIORITY = 3
"""Temporal's default priority key (1 runs first, 5 last)."""

call_priority: ContextVar[int] = ContextVar("moodle_call_priority", default=DEFAULT_PRIORITY)
"""The priority key of the Moodle calls made in this context."""


class PriorityGate:
    """At most ``limit`` holders at once; a freed place goes to the waiter with the lowest priority key."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a gate needs at least one place")
        self.limit = limit
        self._free = limit
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrival = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, future in self._waiting if not future.done())

    @asynccontextmanager
    async def hold(self, priority: int | None = None) -> AsyncIterator[None]:
        """Hold a place for the body of the ``async with``; ``priority`` defaults to `call_priority`."""
        await self.acquire(call_priority.get() if priority is None else priority)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, priority: int) -> None:
        """Take a place (waiting, if none is free, behind every waiter of a lower key); `release` it."""
        if self._free:  # a free place means nobody waits: a release hands its place to a waiter first
            self._free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrival), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():  # granted, then cancelled: pass the place on
                self.release()
            raise

    def try_acquire(self) -> bool:
        """Take a free place if there is one, without waiting; `release` it."""
        if self._free:
            self._free -= 1
            return True
        return False

    def release(self) -> None:
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():  # a cancelled waiter's future is done: skip it
                granted.set_result(None)
                return
        self._free += 1
