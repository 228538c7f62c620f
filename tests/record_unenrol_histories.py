"""Record the stored histories of the `unenrol-action` patch (MOODLE_UNENROL_ACTION in ChangeParticipant and
ArchiveEvent), for tests/test_replay.py:

    .venv/bin/python -m tests.record_unenrol_histories

Writes only its own files (``<scenario>__unenrol-action.json``); the histories of older code stay as they are."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.devserver import temporal_cli
from openvle_moodle_sync.temporal_client import data_converter, ensure_search_attributes
from tests.conftest import TOKEN, make_event, make_settings, running_worker

HERE = Path(__file__).parent / "histories"
PATCH = "unenrol-action"
EXTENDED = "extended-token-0123456789abcdef"


async def save(client: Client, workflow_id: str, scenario: str) -> None:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    path = HERE / f"{scenario}__{PATCH}.json"
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
    print("recorded", path.name, len(history.events), "events")


async def main() -> None:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_cli(),
                                                data_converter=data_converter(make_settings()))
    client = env.client
    await ensure_search_attributes(client)
    fake = FakeMoodle(token=TOKEN, extended_token=EXTENDED)
    for action in ("remove_roles", "suspend"):
        settings = make_settings(moodle_token=EXTENDED, moodle_unenrol_action=action)
        async with running_worker(client, settings, fake):
            event = make_event(fake, participants=4, instructors=1, event_id=f"rec-{action.replace('_', '-')}")
            await (await starter.deploy_event(client, event, settings=settings)).result()
            person = event["participants"][1]
            await (await starter.remove_participant(client, event, person, settings=settings)).result()
            await save(client, f"moodle-participant-{event['id']}-{person['id']}", f"change_remove_{action}")
            await (await starter.archive_event(client, event, settings=settings)).result()
            await save(client, f"moodle-archive-{event['id']}", f"archive_{action}")
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
