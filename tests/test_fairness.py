"""Fair share between events: every run carries its event's priority and fairness key, activities and
child workflows inherit them, and a small event started beside a large one is not queued behind it."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.common.v1 import Priority as PriorityProto
from temporalio.client import Client, WorkflowHistory
from temporalio.client import Interceptor as ClientInterceptor
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.fairness import LARGE_PRIORITY, SMALL_EVENT, SMALL_PRIORITY, event_priority
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.workflows import ids
from tests.conftest import make_event, running_worker


def test_priority_by_size_or_by_the_caller() -> None:
    assert event_priority("42", 20).priority_key == SMALL_PRIORITY
    assert event_priority("42", SMALL_EVENT + 1).priority_key == LARGE_PRIORITY
    assert event_priority("42", 20, 5).priority_key == 5
    assert event_priority("ev:1", 3000).fairness_key == "ev:1"
    with pytest.raises(ValueError, match=r"from 1 .* to 5"):
        event_priority("42", 20, 0)


async def deployed_in(client: Client, event: dict[str, Any], settings: Settings) -> tuple[float, str]:
    """How long the deployment took, and its workflow id."""
    started = time.monotonic()
    handle = await starter.deploy_event(client, event, settings=settings)
    await handle.result()
    return time.monotonic() - started, handle.id


class SeenPriorities(ClientInterceptor, Interceptor):
    """Records the priority each activity task reaches the worker with (what the server dispatched)."""

    def __init__(self) -> None:
        self.seen: dict[str, set[tuple[int, str | None]]] = defaultdict(set)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        seen = self.seen

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                info = activity.info()
                if not info.is_local:  # local activities never go through the task queue
                    seen[info.workflow_id or ""].add((info.priority.priority_key or 0, info.priority.fairness_key))
                return await super().execute_activity(input)

        return Inbound(next)


def started_priority(history: WorkflowHistory) -> PriorityProto:
    return history.events[0].workflow_execution_started_event_attributes.priority


async def test_small_event_is_not_queued_behind_a_large_one(client: Client, fake: FakeMoodle,
                                                            settings: Settings) -> None:
    """A 10-person event started while a 1,500-person one fills the queue finishes long before it.

    Measured here: beside it the small event takes about 0.14 of the large one's time; with no priority
    and no fairness key (first come, first served) 0.88. A large event of 800 ends too soon to hold a
    backlog: the small one measured about 0.4 of it."""
    fake.faults.latency_ms = 20  # every call takes a while, so the large event keeps a backlog
    small, large = make_event(fake, participants=10), make_event(fake, participants=SMALL_EVENT + 1000,
                                                                 instructors=2)
    recorder = SeenPriorities()
    config = client.config()
    config["interceptors"] = [recorder]
    client = Client(**config)
    async with running_worker(client, settings, fake):
        large_run = asyncio.create_task(deployed_in(client, large, settings))
        await asyncio.sleep(1.5)  # the large event's tasks fill the queue
        beside, small_id = await deployed_in(client, small, settings)
        large_s, large_id = await large_run
    assert beside < 0.4 * large_s, f"small event {beside:.2f} s beside a large one of {large_s:.2f} s"

    small_history = await client.get_workflow_handle(small_id).fetch_history()
    assert started_priority(small_history) == PriorityProto(priority_key=SMALL_PRIORITY, fairness_key=small["id"])
    child_id = ids.batch_id(large_id, "students", 0)
    child_history = await client.get_workflow_handle(child_id).fetch_history()
    assert started_priority(child_history) == PriorityProto(priority_key=LARGE_PRIORITY, fairness_key=large["id"])
    # Activities (the parent's and the children's) inherit their workflow's priority and fairness key.
    # A task handed straight to a waiting poller (no backlog) arrives without one: nothing to order there.
    backlogged = {run: seen - {(0, None)} for run, seen in recorder.seen.items()}
    assert backlogged[small_id] == {(SMALL_PRIORITY, small["id"])}
    assert backlogged[child_id] == {(LARGE_PRIORITY, large["id"])}
    for run, seen in backlogged.items():
        event_id = small["id"] if run == small_id else large["id"]
        assert seen <= {(SMALL_PRIORITY if event_id == small["id"] else LARGE_PRIORITY, event_id)}, run
