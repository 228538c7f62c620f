"""Record the histories of the roster-backed convergence (patch `event-roster`) that tests/test_replay.py
replays, beside those of tests/record_histories.py:

    .venv/bin/python -m tests.record_convergence_histories

Files are named `<scenario>__event-roster.json`; an existing file is kept and a dated one added."""

from __future__ import annotations

import asyncio
import contextlib

from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.devserver import temporal_cli
from openvle_moodle_sync.temporal_client import data_converter, ensure_search_attributes
from openvle_moodle_sync.workflows import ids
from openvle_moodle_sync.workflows.roster import ROSTER_PATCH
from tests.conftest import TOKEN, make_event, make_settings, running_worker
from tests.record_histories import save


async def main() -> None:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_cli(),
                                                data_converter=data_converter(make_settings()))
    client = env.client
    await ensure_search_attributes(client)
    fake = FakeMoodle(token=TOKEN)
    settings = make_settings(moodle_delete_course_on_event_delete=True)
    suffix = f"__{ROSTER_PATCH}"
    async with running_worker(client, settings, fake):
        event = make_event(fake, participants=10, instructors=1, event_id="conv-1")
        await (await starter.deploy_event(client, event, settings=settings)).result()
        await save(client, ids.deploy_id("conv-1"), "deploy_small" + suffix)
        plan = await starter.plan_event(client, {**event, "participants": event["participants"][:8]},
                                        settings=settings)
        async for run in client.list_workflows("WorkflowType = 'PlanEvent'"):
            await save(client, run.id, "plan" + suffix)
        assert len(plan.remove) == 2
        eight = {**event, "participants": event["participants"][:8]}
        await (await starter.deploy_event(client, eight, settings=settings)).result()
        await save(client, ids.deploy_id("conv-1"), "deploy_converge" + suffix)
        three = {**event, "participants": event["participants"][:3]}
        with contextlib.suppress(WorkflowFailureError):
            await (await starter.deploy_event(client, three, settings=settings)).result()
        await save(client, ids.deploy_id("conv-1"), "deploy_brake" + suffix)
        person = {"id": "p-new", "username": "conv-new", "email": "conv-new@example.com",
                  "first_name": "New", "last_name": "Person", "role": "student"}
        await (await starter.add_participant(client, three, person, settings=settings)).result()
        await save(client, ids.participant_id("conv-1", "p-new"), "change_add" + suffix)
        await (await starter.remove_participant(client, three, person, settings=settings)).result()
        await save(client, ids.participant_id("conv-1", "p-new"), "change_remove" + suffix)
        await (await starter.archive_event(client, three, settings=settings)).result()
        await save(client, ids.archive_id("conv-1"), "archive" + suffix)
        await (await starter.delete_event(client, three, settings=settings)).result()
        await save(client, ids.delete_id("conv-1"), "delete" + suffix)
        await save(client, ids.roster_id("conv-1"), "event_roster" + suffix)
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
