"""Large events run in child workflows: every history stays small, progress answers during the run, the
instructors' accounts are made beside the students and enrolled after them, and no workflow task is failed
by the server. (The benchmark takes this to 10,000 participants; here 1,200 keep the suite fast.)"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.starter.progress import NOT_STARTED
from openvle_moodle_sync.workflows.batch import BATCH_SIZE
from tests.conftest import make_event

pytestmark = pytest.mark.usefixtures("worker")


async def test_large_event_uses_small_histories_and_reports_progress(client: Client, fake: FakeMoodle,
                                                                     settings: Settings) -> None:
    n = 1200
    event = make_event(fake, participants=n, instructors=30)
    handle = await starter.deploy_event(client, event, settings=settings)
    seen_partial = False
    while True:
        progress = await starter.get_progress(client, event["id"])
        if progress.state == NOT_STARTED:  # the event's life has not started the deployment yet
            await asyncio.sleep(0.1)
            continue
        assert progress.total == n and len(progress.participants) == n
        if 0 < progress.done < n:
            seen_partial = True
        if progress.state != "running":
            break
        await asyncio.sleep(0.3)
    result = await handle.result()
    assert result.done == n and len(fake.site.enrolled(result.course_id)) == n
    assert seen_partial, "progress never showed a deployment in flight"

    # The instructors' accounts are made while the students are enrolled; their enrolment comes after every
    # student's, so that Moodle mails no student a welcome (DeployEvent).
    instructors = {p["username"] for p in event["participants"] if p["role"] == "instructor"}
    made_instructor = [i for i, c in enumerate(fake.calls) if c.ok and c.function == "core_user_create_users"
                       and instructors & {u["username"] for u in c.params["users"]}]
    enrols = [(i, {int(e["roleid"]) for e in c.params["enrolments"]}) for i, c in enumerate(fake.calls)
              if c.ok and c.function == "enrol_manual_enrol_users"
              and int(c.params["enrolments"][0]["courseid"]) == result.course_id]
    last_student = max(i for i, roles in enrols if settings.moodle_student_role_id in roles)
    first_instructor = min(i for i, roles in enrols if settings.moodle_instructor_role_id in roles)
    assert made_instructor and max(made_instructor) < last_student < first_instructor
    assert len([m for m in fake.site.messages if m.kind == "welcome"]) == len(instructors) - 1

    lengths = {}
    async for wf in client.list_workflows(f"OpenVLEEventId = '{event['id']}'"):
        lengths[wf.id] = (await client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()).history_length
    batches = [w for w in lengths if w.startswith(f"{handle.id}-")]
    assert len(batches) == 3 + 1  # 1,170 students in shares of 500, 30 instructors
    assert max(lengths.values()) < 8 * BATCH_SIZE, lengths
    # A share's 500 activity completions come faster than its workflow tasks run: the server buffers them
    # meanwhile and, past its limit (devserver.DEV_SERVER_ARGS), fails the running task, which costs a replay.
    force_closed = {}
    for batch in batches:
        events = [e async for e in client.get_workflow_handle(batch).fetch_history_events()]
        force_closed[batch] = sum(
            1 for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
            and e.workflow_task_failed_event_attributes.cause
            == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND)
    assert not any(force_closed.values()), force_closed
