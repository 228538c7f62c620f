"""A very large event still starts: its participant list is compressed below Temporal's 2 MB payload limit."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client

from openvle_moodle_sync.models import parse_event
from openvle_moodle_sync.temporal_client import data_converter
from openvle_moodle_sync.workflows import DeployEvent, ids
from openvle_moodle_sync.workflows.types import DeployInput
from tests.conftest import make_settings


async def test_event_of_20000_participants_is_accepted(client: Client) -> None:
    people = [{"id": f"p-{i}", "username": f"big-user-{i}", "email": f"big-user-{i}@example.com",
               "first_name": f"Firstname{i}", "last_name": f"Lastname{i}", "role": "student"} for i in range(20000)]
    event = parse_event({"id": "big-event", "name": "Big", "slug": "big", "moodle_course_id": 2,
                         "participants": people})
    converter = data_converter(make_settings())
    raw = await dataclasses.replace(converter, payload_codec=None).encode([DeployInput(event=event)])
    assert raw[0].ByteSize() > 2 * 1024 * 1024  # would be refused by Temporal uncompressed

    big_client = Client(client.service_client, namespace=client.namespace, data_converter=converter)
    # No worker polls this queue: the run only has to be accepted and its input read back intact.
    handle = await big_client.start_workflow(DeployEvent.run, DeployInput(event=event),
                                             id=ids.deploy_id(event.id, "big"), task_queue="nobody-polls-this-queue")
    history = await handle.fetch_history()
    stored = history.events[0].workflow_execution_started_event_attributes.input.payloads
    assert stored[0].ByteSize() < 512 * 1024
    (decoded,) = await converter.decode(stored, [DeployInput])
    assert decoded.event == event
    await handle.terminate("test done")
