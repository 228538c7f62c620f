"""Promises of docs/workflows.md that a single edit could break without another test noticing (issue 24,
point 5): each test here fails when its promise does."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.activities.roster import RosterEntry
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.workflows.common import is_configuration_error
from tests.conftest import add_moodle_user, make_event, roster_entries, without_participant

CREATE = "core_user_create_users"


async def test_a_deploy_stopped_by_a_configuration_error_still_records_whom_it_enrolled(
        client: Client, fake: FakeMoodle, settings: Settings, worker: Any) -> None:
    """Two students have accounts already and are enrolled; the instructor's account cannot be created (the
    function is gone from the token's service), which stops the run. The roster still holds the two students,
    so a later deploy that no longer lists one takes them away ("Convergence": the service's own)."""
    event = make_event(fake, participants=3, instructors=1)
    instructor, first, second = event["participants"]
    accounts = {}
    for p in (first, second):
        user = await add_moodle_user(fake, username=p["username"], email=p["email"], firstname=p["first_name"],
                                     lastname=p["last_name"])
        accounts[p["id"]] = user.id
    fake.faults.revoked_functions = {CREATE}
    # The first creation's answer is lost, so the refusal comes on its retry, once the students are enrolled.
    fake.faults.lose_next = {CREATE: 1}

    with pytest.raises(WorkflowFailureError) as stopped:
        await (await starter.deploy_event(client, event, settings=settings)).result()
    assert is_configuration_error(stopped.value.cause), stopped.value.cause
    course = fake.site.course_by_idnumber(f"openvle-event-{event['id']}")
    assert course is not None and set(fake.site.enrolled(course.id)) == set(accounts.values())
    assert await roster_entries(client, event["id"]) == {
        pid: RosterEntry(user_id, "student") for pid, user_id in accounts.items()}

    fake.faults.revoked_functions = set()
    result = await (await starter.deploy_event(client, without_participant(event, first["id"]),
                                               settings=settings)).result()
    assert [r.participant_id for r in result.removed] == [first["id"]]
    assert accounts[first["id"]] not in fake.site.enrolled(course.id)
    assert set(await roster_entries(client, event["id"])) == {instructor["id"], second["id"]}
