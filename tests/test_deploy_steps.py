"""The order of a deployment's steps: what runs alongside the template's duplication, and what waits for it.

Every step one after another waits for the engine and a worker slot (long, beside a large event), so a
first deployment reads the roster and every participant's account while the template is duplicated; a
re-run, whose course exists, looks up only the participants the course still lacks."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.settings import Settings
from tests.conftest import make_event, running_worker


def activity_spans(history: WorkflowHistory) -> dict[str, list[tuple[int, int]]]:
    """activity type -> [(scheduled event id, completed event id)], in the order they were scheduled."""
    scheduled: dict[int, str] = {}
    spans: dict[str, list[tuple[int, int]]] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sid = event.activity_task_completed_event_attributes.scheduled_event_id
            spans.setdefault(scheduled[sid], []).append((sid, event.event_id))
    return spans


async def deploy_history(client: Client, event: dict, settings: Settings) -> WorkflowHistory:
    handle = await starter.deploy_event(client, event, settings=settings)
    await handle.result()
    return await client.get_workflow_handle(handle.id).fetch_history()


async def test_first_deployment_reads_while_the_template_is_duplicated(client: Client, fake: FakeMoodle,
                                                                       settings: Settings) -> None:
    event = make_event(fake, participants=6, instructors=1)
    # Each Moodle call takes 100 ms, as on a real site: the copy (several calls) outlasts the roster read,
    # a Temporal round trip, after which the look-up starts. With instant calls it is a race.
    fake.faults.latency_ms = 100
    async with running_worker(client, settings, fake):
        first = activity_spans(await deploy_history(client, event, settings))
        (_, prepare_end), = first["prepare_course"]
        (lookup_start, _), = first["find_users"]
        # The look-up was scheduled before the duplication ended, not after it (the roster comes with the
        # run's input: no read at all).
        assert lookup_start < prepare_end and "read_roster" not in first

        again = activity_spans(await deploy_history(client, event, settings))
    # A re-run: the course and the roster exist, everyone is enrolled: nobody is looked up or written.
    assert "find_users" not in again and "ensure_user" not in again and "enrol_user" not in again
