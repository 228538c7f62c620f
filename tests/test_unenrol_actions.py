"""MOODLE_UNENROL_ACTION and role changes in place, on a real Temporal dev server and the simulator.

The simulator answers as the Moodle 4.5 lab does (recorded in tests/live/test_unenrol_actions_live.py):
unenrolling deletes the course grade, the role functions send no mail, and every enrol_manual_enrol_users
call (suspend=1 and suspend=0 included) mails "Welcome to <course>" once the course has a teacher."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.activities.roster import RosterEntry
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.failures import root_cause
from openvle_moodle_sync.settings import Settings
from tests.conftest import (
    EXTENDED_TOKEN,
    TOKEN,
    make_event,
    make_settings,
    roster_entries,
    running_worker,
    without_participant,
)

WRITES = ("enrol_manual_enrol_users", "enrol_manual_unenrol_users", "core_role_assign_roles",
          "core_role_unassign_roles", "core_course_update_courses", "core_user_create_users")


@pytest.fixture
def fake() -> FakeMoodle:
    return FakeMoodle(token=TOKEN, extended_token=EXTENDED_TOKEN)


def settings_for(action: str, token: str = EXTENDED_TOKEN) -> Settings:
    return make_settings(moodle_unenrol_action=action, moodle_token=token)


def welcomes(fake: FakeMoodle, user_id: int) -> int:
    return sum(1 for m in fake.site.messages if m.kind == "welcome" and m.user_id == user_id)


def writes(fake: FakeMoodle) -> int:
    return sum(1 for c in fake.calls if c.function in WRITES)


async def deployed(client: Client, fake: FakeMoodle, settings: Settings) -> tuple[dict[str, Any], int, int]:
    """An event of 1 instructor and 3 students, deployed; the first student has a grade of 87."""
    event = make_event(fake, participants=4, instructors=1)
    result = await (await starter.deploy_event(client, event, settings=settings)).result()
    student = next(p for p in result.participants if p.id == "p-1")
    assert student.moodle_user_id is not None and result.course_id is not None
    fake.site.grades[(result.course_id, student.moodle_user_id)] = 87.0
    return event, result.course_id, student.moodle_user_id


# What each action leaves in Moodle for a removed student: (enrolled, roles, suspended, grade, mails).
AFTER_REMOVAL = {
    "unenrol": (False, None, None, None, 0),
    "keep": (True, {5}, False, 87.0, 0),
    "suspend": (True, {5}, True, 87.0, 1),  # Moodle mails on the suspend=1 call (MDL-70582)
    "remove_roles": (True, set(), False, 87.0, 0),
}
# Mails sent when the student is added back: a new or re-activated enrolment is welcomed.
READD_MAILS = {"unenrol": 1, "keep": 0, "suspend": 1, "remove_roles": 0}


@pytest.mark.parametrize("action", list(AFTER_REMOVAL))
async def test_remove_and_add_back_by_action(client: Client, fake: FakeMoodle, action: str) -> None:
    settings = settings_for(action)
    async with running_worker(client, settings, fake):
        event, course_id, user_id = await deployed(client, fake, settings)
        person = event["participants"][1]
        ue_id = fake.site.enrolments[course_id][user_id].id
        mails = welcomes(fake, user_id)

        removed = await (await starter.remove_participant(client, event, person, settings=settings)).result()
        enrolled, roles, suspended, grade, sent = AFTER_REMOVAL[action]
        enrolment = fake.site.enrolments[course_id].get(user_id)
        assert (enrolment is not None) == enrolled
        if enrolment is not None:
            assert (enrolment.roles, enrolment.suspended) == (roles, suspended)
        assert fake.site.grades.get((course_id, user_id)) == grade
        assert welcomes(fake, user_id) - mails == sent
        assert removed.applied[-1].changed == (action != "keep")

        # Removing again writes nothing (nor mails anybody).
        before = writes(fake), len(fake.site.messages)
        await (await starter.remove_participant(client, event, person, settings=settings)).result()
        assert (writes(fake), len(fake.site.messages)) == before

        mails = welcomes(fake, user_id)
        await (await starter.add_participant(client, event, person, settings=settings)).result()
        back = fake.site.enrolments[course_id][user_id]
        assert (back.roles, back.suspended) == ({5}, False)
        assert (back.id == ue_id) == (action != "unenrol")  # the same enrolment, except after unenrol
        assert fake.site.grades.get((course_id, user_id)) == (None if action == "unenrol" else 87.0)
        assert welcomes(fake, user_id) - mails == READD_MAILS[action]


@pytest.mark.parametrize("action", ["unenrol", "keep", "suspend", "remove_roles"])
async def test_archive_by_action(client: Client, fake: FakeMoodle, action: str) -> None:
    settings = settings_for(action)
    async with running_worker(client, settings, fake):
        event, course_id, user_id = await deployed(client, fake, settings)
        students = {u.id for p in event["participants"][1:] if (u := fake.site.user_by_username(p["username"]))}
        mails = len(fake.site.messages)
        archived = await (await starter.archive_event(client, event, settings=settings)).result()
        assert fake.site.courses[course_id].visible == 0 and archived.hidden
        assert archived.instructors_kept == 1 and archived.unenrol_action == action
        enrolled = fake.site.enrolled(course_id)
        teacher = fake.site.user_by_username(event["participants"][0]["username"])
        assert teacher is not None and enrolled[teacher.id].roles == {3}
        if action == "unenrol":
            assert not students & set(enrolled) and archived.students_unenrolled == 3
        else:
            assert students <= set(enrolled)
            assert {enrolled[s].roles == ({5} if action != "remove_roles" else set()) for s in students} == {True}
            assert {enrolled[s].suspended for s in students} == {action == "suspend"}
            assert archived.students_withdrawn == (0 if action == "keep" else 3)
        assert fake.site.grades.get((course_id, user_id)) == (None if action == "unenrol" else 87.0)
        assert len(fake.site.messages) - mails == (3 if action == "suspend" else 0)

        # A second archive writes nothing but the course's visibility, and mails nobody.
        before = sum(1 for c in fake.calls if c.function in WRITES and c.function != "core_course_update_courses")
        mails = len(fake.site.messages)
        await (await starter.archive_event(client, event, settings=settings)).result()
        assert sum(1 for c in fake.calls if c.function in WRITES and c.function != "core_course_update_courses") \
            == before
        assert len(fake.site.messages) == mails


@pytest.mark.parametrize("token", [EXTENDED_TOKEN, TOKEN], ids=["role-functions", "the-14"])
async def test_role_change(client: Client, fake: FakeMoodle, token: str) -> None:
    """With the role functions a student turned instructor keeps the enrolment and the grade, unmailed;
    without them the enrolment is re-made and Moodle deletes the grade (the README says so)."""
    settings = settings_for("unenrol", token)
    async with running_worker(client, settings, fake):
        event, course_id, user_id = await deployed(client, fake, settings)
        person = {**event["participants"][1], "role": "instructor"}
        ue_id = fake.site.enrolments[course_id][user_id].id
        mails = welcomes(fake, user_id)
        await (await starter.add_participant(client, event, person, settings=settings)).result()
        enrolment = fake.site.enrolments[course_id][user_id]
        assert enrolment.roles == {3}
        in_place = token == EXTENDED_TOKEN
        assert (enrolment.id == ue_id) == in_place
        assert fake.site.grades.get((course_id, user_id)) == (87.0 if in_place else None)
        assert welcomes(fake, user_id) - mails == (0 if in_place else 1)
        # And back to student, in place as well.
        await (await starter.add_participant(client, event, {**person, "role": "student"}, settings=settings)
               ).result()
        assert fake.site.enrolments[course_id][user_id].roles == {5}


async def test_remove_roles_without_the_functions_fails_before_any_write(client: Client, fake: FakeMoodle) -> None:
    settings = settings_for("remove_roles", TOKEN)  # the main token: the guide's 14 functions only
    async with running_worker(client, settings, fake):
        event, _, _ = await deployed(client, fake, settings)
        state, calls = fake.state(), writes(fake)
        with pytest.raises(WorkflowFailureError) as failure:
            await (await starter.remove_participant(client, event, event["participants"][1],
                                                     settings=settings)).result()
        cause = root_cause(failure.value.cause)
        message = str(cause)
        assert isinstance(cause, ApplicationError) and cause.type == ErrorType.MISSING_FUNCTIONS
        assert "core_role_assign_roles and core_role_unassign_roles" in message
        assert "add core_role_assign_roles and core_role_unassign_roles to the service" in message
        with pytest.raises(WorkflowFailureError):
            await (await starter.archive_event(client, event, settings=settings)).result()
        assert writes(fake) == calls
        after = fake.state()
        assert (after["enrolments"], after["courses"], after["grades"]) == (
            state["enrolments"], state["courses"], state["grades"])


@pytest.mark.parametrize("action", ["suspend", "remove_roles"])
async def test_lost_answers_write_and_mail_once(client: Client, fake: FakeMoodle, action: str) -> None:
    """Each write of a removal and of the re-add is applied, then its answer lost: same end state, one mail."""
    settings = settings_for(action)
    async with running_worker(client, settings, fake):
        event, course_id, user_id = await deployed(client, fake, settings)
        person = event["participants"][1]
        fake.faults.lose_next = {fn: 2 for fn in WRITES}
        mails = welcomes(fake, user_id)
        await (await starter.remove_participant(client, event, person, settings=settings)).result()
        enrolment = fake.site.enrolments[course_id][user_id]
        assert (enrolment.roles, enrolment.suspended) == (({5}, True) if action == "suspend" else (set(), False))
        assert welcomes(fake, user_id) - mails == (1 if action == "suspend" else 0)
        await (await starter.add_participant(client, event, person, settings=settings)).result()
        enrolment = fake.site.enrolments[course_id][user_id]
        assert (enrolment.roles, enrolment.suspended) == ({5}, False)
        assert welcomes(fake, user_id) - mails == (2 if action == "suspend" else 0)
        assert any(c.lost for c in fake.calls)
        assert fake.site.grades[(course_id, user_id)] == 87.0


async def test_last_wins_under_remove_roles(client: Client, fake: FakeMoodle) -> None:
    settings = settings_for("remove_roles")
    async with running_worker(client, settings, fake):
        event, course_id, user_id = await deployed(client, fake, settings)
        person = event["participants"][1]
        fake.faults.latency_ms = 20
        handles = [await starter.remove_participant(client, event, person, settings=settings),
                   await starter.add_participant(client, event, person, settings=settings),
                   await starter.remove_participant(client, event, person, settings=settings)]
        await handles[-1].result()
        assert fake.site.enrolments[course_id][user_id].roles == set()
        assert fake.site.grades[(course_id, user_id)] == 87.0


@pytest.mark.parametrize("action", ["suspend", "remove_roles"])
async def test_deploy_again_restores_people_still_enrolled(client: Client, fake: FakeMoodle, action: str) -> None:
    """Deploying the event again (the person is still listed) gives the role back or re-activates, on the
    same enrolment: the grade stays; only the re-activation mails."""
    settings = settings_for(action)
    async with running_worker(client, settings, fake):
        event, course_id, user_id = await deployed(client, fake, settings)
        await (await starter.remove_participant(client, event, event["participants"][1], settings=settings)).result()
        ue_id, mails = fake.site.enrolments[course_id][user_id].id, welcomes(fake, user_id)
        await (await starter.deploy_event(client, event, settings=settings)).result()
        enrolment = fake.site.enrolments[course_id][user_id]
        assert (enrolment.id, enrolment.roles, enrolment.suspended) == (ue_id, {5}, False)
        assert fake.site.grades[(course_id, user_id)] == 87.0
        assert welcomes(fake, user_id) - mails == (1 if action == "suspend" else 0)


async def test_remove_roles_takes_only_the_roles_this_service_gives(client: Client, fake: FakeMoodle) -> None:
    """A role given by hand (a non-editing teacher, 4) stays; Moodle could refuse to unassign it anyway."""
    settings = settings_for("remove_roles")
    async with running_worker(client, settings, fake):
        event, course_id, user_id = await deployed(client, fake, settings)
        fake.site.assign_role(course_id, user_id, 4)
        await (await starter.remove_participant(client, event, event["participants"][1], settings=settings)).result()
        assert fake.site.enrolments[course_id][user_id].roles == {4}
        assert fake.site.grades.get((course_id, user_id)) == 87.0


def withdrawn_in_moodle(fake: FakeMoodle, course_id: int, user_id: int, action: str) -> bool:
    enrolment = fake.site.enrolments[course_id][user_id]
    return enrolment.suspended if action == "suspend" else enrolment.roles == set()


@pytest.mark.parametrize("action", ["suspend", "remove_roles"])
async def test_someone_added_back_after_a_removal_is_the_services_again(client: Client, fake: FakeMoodle,
                                                                        action: str) -> None:
    """Suspended (or without roles) by a remove, then added back: the enrolment is the service's own again,
    so a deploy that no longer lists them takes them away again, and the plan says so."""
    settings = settings_for(action)
    async with running_worker(client, settings, fake):
        event, course_id, user_id = await deployed(client, fake, settings)
        rest = without_participant(event, "p-1")
        await (await starter.remove_participant(client, event, event["participants"][1], settings=settings)).result()
        assert (await roster_entries(client, event["id"]))["p-1"] == RosterEntry(user_id, "student", withdrawn=True)
        # Withdrawn already: a deploy without them takes nobody away, and counts only the others for the brake.
        again = await (await starter.deploy_event(client, rest, settings=settings)).result()
        assert again.removed == [] and withdrawn_in_moodle(fake, course_id, user_id, action)

        await (await starter.add_participant(client, event, event["participants"][1], settings=settings)).result()
        assert (await roster_entries(client, event["id"]))["p-1"] == RosterEntry(user_id, "student")
        plan = await starter.plan_event(client, rest, settings=settings)
        assert [r.participant_id for r in plan.remove] == ["p-1"]
        result = await (await starter.deploy_event(client, rest, settings=settings)).result()
        assert [(r.participant_id, r.action) for r in result.removed] == [("p-1", action)]
        assert withdrawn_in_moodle(fake, course_id, user_id, action)
        assert fake.site.grades[(course_id, user_id)] == 87.0


@pytest.mark.parametrize("action", ["suspend", "remove_roles"])
async def test_students_restored_after_an_archive_are_the_services_again(client: Client, fake: FakeMoodle,
                                                                         action: str) -> None:
    """Archive withdraws the students; a deploy that lists them again restores them, and they are the
    service's own again: a later deploy without one of them takes that one away."""
    settings = settings_for(action)
    async with running_worker(client, settings, fake):
        event, course_id, user_id = await deployed(client, fake, settings)
        rest = without_participant(event, "p-1")
        await (await starter.archive_event(client, event, settings=settings)).result()
        entries = await roster_entries(client, event["id"])
        assert {pid for pid, e in entries.items() if e.withdrawn} == {"p-1", "p-2", "p-3"}
        await (await starter.deploy_event(client, event, settings=settings, reopen=True)).result()
        assert not withdrawn_in_moodle(fake, course_id, user_id, action)
        assert not any(e.withdrawn for e in (await roster_entries(client, event["id"])).values())
        result = await (await starter.deploy_event(client, rest, settings=settings)).result()
        assert [r.participant_id for r in result.removed] == ["p-1"]
        assert withdrawn_in_moodle(fake, course_id, user_id, action)


@pytest.mark.parametrize("action", ["unenrol", "suspend", "remove_roles"])
async def test_archive_of_many_students_stays_within_phps_form_field_limit(client: Client, fake: FakeMoodle,
                                                                          action: str) -> None:
    """The simulator drops the form fields past PHP's default max_input_vars (1,000), as PHP does, silently:
    every student of an archive of 600 is still taken away, so no call was cut short."""
    settings = settings_for(action)
    async with running_worker(client, settings, fake):
        event = make_event(fake, participants=600, instructors=1)
        course_id = (await (await starter.deploy_event(client, event, settings=settings)).result()).course_id or 0
        archived = await (await starter.archive_event(client, event, settings=settings)).result()
    assert archived.students_withdrawn == 599
    enrolled = fake.site.enrolled(course_id)
    if action == "unenrol":
        assert len(enrolled) == 1
    elif action == "suspend":
        assert sum(1 for e in enrolled.values() if e.suspended) == 599
    else:
        assert sum(1 for e in enrolled.values() if not e.roles) == 599
