"""A call waiting for one of the worker's Moodle connections keeps its task's priority: the small event's
calls go before the large event's that reached the worker first (moodle.gate, activities.call_priority)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from urllib.parse import parse_qs

import httpx
import pytest
from temporalio import activity
from temporalio.common import Priority
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from openvle_moodle_sync.activities.call_priority import CallPriority
from openvle_moodle_sync.moodle import MoodleClient
from openvle_moodle_sync.moodle.gate import DEFAULT_PRIORITY, PriorityGate, call_priority


async def test_a_freed_place_goes_to_the_highest_priority_then_first_come() -> None:
    gate = PriorityGate(1)
    order: list[str] = []

    async def call(name: str, priority: int) -> None:
        async with gate.hold(priority):
            order.append(name)
            await asyncio.sleep(0)

    async with gate.hold(3):  # the only place is taken: everyone below waits
        waiters = [asyncio.create_task(call(name, priority)) for name, priority in
                   [("large-1", 3), ("large-2", 3), ("small-1", 2), ("large-3", 3), ("small-2", 2)]]
        await asyncio.sleep(0.01)
        assert gate.waiting == 5 and order == []
    await asyncio.gather(*waiters)
    assert order == ["small-1", "small-2", "large-1", "large-2", "large-3"]


async def test_a_cancelled_waiter_loses_no_place() -> None:
    gate = PriorityGate(1)
    async with gate.hold(3):
        gone = asyncio.create_task(gate.acquire(2))
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
    # The place came back: two holds in a row, no deadlock.
    async with asyncio.timeout(1):
        async with gate.hold(3):
            pass
        async with gate.hold(3):
            pass


async def test_the_client_serves_waiting_calls_by_priority() -> None:
    """One connection, a slow Moodle: calls queued by a large event (priority 3) and then by a small one (2)."""
    served: list[str] = []

    async def moodle(request: httpx.Request) -> httpx.Response:
        served.append(parse_qs(request.content.decode())["values[0]"][0])
        await asyncio.sleep(0.02)
        return httpx.Response(200, text=json.dumps([]))

    async with MoodleClient("http://moodle.test", "secret", max_connections=1,
                            transport=httpx.MockTransport(moodle)) as client:
        async def look_up(value: str, priority: int) -> None:
            call_priority.set(priority)  # as the worker's interceptor does for each activity (own task)
            await client.call("core_user_get_users_by_field", {"field": "username", "values": [value]})

        calls = [asyncio.create_task(look_up(f"large-{i}", 3)) for i in range(4)]
        await asyncio.sleep(0.005)  # the large event's calls reached the worker first
        calls += [asyncio.create_task(look_up(f"small-{i}", 2)) for i in range(2)]
        await asyncio.gather(*calls)
    assert served == ["large-0", "small-0", "small-1", "large-1", "large-2", "large-3"]


class _Recorder(ActivityInboundInterceptor):
    def __init__(self) -> None:
        self.seen: int | None = None

    async def execute_activity(self, input: ExecuteActivityInput) -> None:
        self.seen = call_priority.get()


@pytest.mark.parametrize(("priority", "expected"),
                         [(Priority(priority_key=2), 2), (Priority.default, DEFAULT_PRIORITY)])
async def test_the_worker_gives_each_activity_its_task_priority(priority: Priority, expected: int) -> None:
    recorder = _Recorder()
    inbound = CallPriority().intercept_activity(recorder)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, priority=priority)

    async def run() -> None:
        await inbound.execute_activity(ExecuteActivityInput(fn=lambda: None, args=[], executor=None, headers={}))

    await env.run(run)
    assert recorder.seen == expected
    assert call_priority.get() == DEFAULT_PRIORITY  # reset after the activity
    assert activity.in_activity() is False
