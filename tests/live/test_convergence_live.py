"""Deploy converges on a real Moodle: dropped people go by the unenrol action, the mass-removal brake holds,
people enrolled by hand stay (also when an add changes their role), drift shows in the plan and a re-run
repairs it, and a plan writes nothing (no write call, the same enrolments, no new line in the mail log)."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from openvle_moodle_sync import starter
from openvle_moodle_sync.activities.plan_types import CourseAction, DriftKind
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.moodle import MoodleClient
from tests.live.conftest import LIVE, PASSWORD, Live, MailLog, RecordingTransport, live_settings, live_worker

pytestmark = LIVE


@pytest.fixture(scope="module")
async def crowd(live: Live, moodle: MoodleClient) -> list[dict[str, Any]]:
    """Eleven participants (the first teaches) and one more account, made once with a password (no mail)."""
    people = [{"id": f"c-{i}", "username": live.name(f"cv{i}"), "email": live.email(f"cv{i}"),
               "first_name": f"Conv{i}", "last_name": "Livetest", "role": "instructor" if i == 0 else "student"}
              for i in range(12)]
    existing = {u["username"] for u in await moodle.get_users_by_field("username", [p["username"] for p in people])}
    missing = [p for p in people if p["username"] not in existing]
    if missing:
        await moodle.create_users([{"username": p["username"], "email": p["email"], "firstname": p["first_name"],
                                    "lastname": p["last_name"], "password": PASSWORD} for p in missing])
    return people


async def enrolled(moodle: MoodleClient, course_id: int) -> dict[str, set[int]]:
    return {u["username"]: {r["roleid"] for r in u.get("roles", [])}
            for u in await moodle.get_enrolled_users(course_id)}


def names(people: list[dict[str, Any]]) -> set[str]:
    return {p["username"] for p in people}


def mail_lines(mails: MailLog) -> int:
    return len(mails.path.read_text().splitlines()) if mails.path and mails.path.exists() else 0


async def plan_reading_only(client: Client, calls: RecordingTransport, moodle: MoodleClient, mails: MailLog,
                            course_id: int | None, event: dict[str, Any], settings: Any) -> Any:
    before = (await enrolled(moodle, course_id)) if course_id else None
    mark, lines = calls.mark(), mail_lines(mails)
    plan = await starter.plan_event(client, event, settings=settings)
    assert calls.functions(mark) and calls.writes(mark) == []
    assert mail_lines(mails) == lines
    if course_id:
        assert await enrolled(moodle, course_id) == before
    return plan


async def test_deploy_converges_with_brake_and_plan(client: Client, live: Live, moodle: MoodleClient,
                                                    crowd: list[dict[str, Any]], mails: MailLog) -> None:
    ten, newcomer, hand = crowd[:10], crowd[10], crowd[11]
    event_id = live.name("conv")
    event = {"id": event_id, "name": f"{event_id} Convergence (live test)", "slug": event_id,
             "moodle_course_id": live.template_id, "participants": ten}
    settings = live_settings(live)
    async with live_worker(client, live, settings) as (_, calls):
        plan = await plan_reading_only(client, calls, moodle, mails, None, event, settings)
        assert plan.course.action == CourseAction.CREATE and len(plan.matched_accounts) == 10

        # deploy 10
        first = await (await starter.deploy_event(client, event, settings=settings)).result()
        assert first.course_id is not None
        live.made_courses.add(first.course_id)
        course = first.course_id
        assert set(await enrolled(moodle, course)) == names(ten)

        # deploy again with 8: the plan says who goes, the deploy takes the 2 away by the action
        eight = {**event, "participants": ten[:8]}
        plan = await plan_reading_only(client, calls, moodle, mails, course, eight, settings)
        assert [r.participant_id for r in plan.remove] == ["c-8", "c-9"] and not plan.blocked_by_brake
        result = await (await starter.deploy_event(client, eight, settings=settings)).result()
        assert sorted(r.participant_id for r in result.removed) == ["c-8", "c-9"]
        assert set(await enrolled(moodle, course)) == names(ten[:8])

        # someone enrolled by hand in Moodle
        (hand_user,) = await moodle.get_users_by_field("username", [hand["username"]])
        await moodle.enrol_users([{"roleid": 5, "userid": hand_user["id"], "courseid": course}])

        # deploy with 3 (two of the 8 and a newcomer): the brake keeps everyone, the add is done
        three = {**event, "participants": [*ten[:2], newcomer]}
        with pytest.raises(WorkflowFailureError) as failure:
            await (await starter.deploy_event(client, three, settings=settings)).result()
        cause = failure.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == ErrorType.MASS_REMOVAL_BLOCKED
        assert "take 6 of the 8 people" in cause.message and "75%" in cause.message
        assert "--allow-mass-removal" in cause.message
        assert set(await enrolled(moodle, course)) == names([*ten[:8], newcomer, hand])

        # the same past the brake: the 6 go, the hand-enrolled user stays
        allowed = await (await starter.deploy_event(client, three, settings=settings,
                                                    allow_mass_removal=True)).result()
        assert len(allowed.removed) == 6
        assert set(await enrolled(moodle, course)) == names([*ten[:2], newcomer, hand])

        # a student unenrolled by hand is drift in the plan; rerun puts them back
        (student,) = await moodle.get_users_by_field("username", [ten[1]["username"]])
        await moodle.unenrol_users([{"userid": student["id"], "courseid": course}])
        plan = await plan_reading_only(client, calls, moodle, mails, course, three, settings)
        assert [(d.participant_id, d.kind) for d in plan.drift] == [("c-1", DriftKind.NOT_ENROLLED)]
        assert plan.remove == []
        await (await starter.rerun_deployment(client, event_id, settings=settings)).result()
        roles = await enrolled(moodle, course)
        assert roles[ten[1]["username"]] == {5} and hand["username"] in roles

        # the hand-enrolled user, added by the backend as an instructor: their role changes, but they stay
        # out of the roster, so a deploy that does not list them leaves them in the course
        as_teacher = {**hand, "role": "instructor"}
        added = await (await starter.add_participant(client, three, as_teacher, settings=settings)).result()
        assert added.applied[-1].changed and added.applied[-1].found_enrolled
        assert (await enrolled(moodle, course))[hand["username"]] == {3}
        again = await (await starter.deploy_event(client, three, settings=settings)).result()
        assert again.removed == [] and (await enrolled(moodle, course))[hand["username"]] == {3}
