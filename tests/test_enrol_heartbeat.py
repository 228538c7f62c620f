"""An enrol attempt heartbeats WRITING before it writes only where a retry would read it.

A heartbeat is one more write to the workflow's state on the Temporal server, per enrolment. Retries that
check the course first (a course that may have a teacher, or a role change) need it to tell their own lost
write from someone else's. A student of a course the run made is written again on a retry, with no check,
so the heartbeat would only load the server: at 3,000 students, 3,000 writes."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from temporalio.testing import ActivityEnvironment

from openvle_moodle_sync.activities.moodle_sync import FOUND_ENROLLED, WRITING, MoodleSyncActivities
from openvle_moodle_sync.activities.types import EnrolInput, EnrolResult
from openvle_moodle_sync.moodle import MoodleClient
from tests.conftest import make_settings

URL = "https://moodle.example.com"
ENDPOINT = f"{URL}/webservice/rest/server.php"


def fresh_course_moodle(calls: list[str]) -> respx.Route:
    """Moodle answering enrol (null) and the course's enrolment list (empty)."""

    def answer(request: httpx.Request) -> httpx.Response:
        function = parse_qs(request.content.decode())["wsfunction"][0]
        calls.append(function)
        # Moodle answers enrol with a JSON null, the enrolment list with a list.
        return httpx.Response(200, content=b"[]" if function == "core_enrol_get_enrolled_users" else b"null")

    return respx.post(ENDPOINT).mock(side_effect=answer)


async def enrol(spec: EnrolInput) -> tuple[EnrolResult, list[Any], list[str]]:
    heartbeats: list[Any] = []
    calls: list[str] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.extend(details)
    with respx.mock:
        fresh_course_moodle(calls)
        async with MoodleClient(URL, "tok") as moodle:
            result = await env.run(MoodleSyncActivities(moodle, make_settings()).enrol_user, spec)
    return result, heartbeats, calls


def spec(**overrides: Any) -> EnrolInput:
    fields: dict[str, Any] = {"course_id": 3, "user_id": 7, "role_id": 5, "other_role_ids": [],
                              "participant_id": "p-7", **overrides}
    return EnrolInput(**fields)


async def test_a_student_of_a_fresh_course_is_enrolled_without_a_heartbeat() -> None:
    result, heartbeats, calls = await enrol(spec(course_may_have_teacher=False))
    assert result == EnrolResult(enrolled=True)
    assert heartbeats == []
    assert calls == ["enrol_manual_enrol_users"]


@pytest.mark.parametrize("overrides", [
    {"course_may_have_teacher": True},  # an instructor, or any enrolment into an existing course
    {"course_may_have_teacher": False, "other_role_ids": [3]},  # a role change
], ids=["may-have-teacher", "role-change"])
async def test_an_enrolment_a_retry_checks_heartbeats_before_it_writes(overrides: dict[str, Any]) -> None:
    result, heartbeats, calls = await enrol(spec(**overrides))
    assert result.enrolled
    assert heartbeats == [WRITING]
    assert calls[-1] == "enrol_manual_enrol_users"



@pytest.mark.parametrize("first_attempt", [[WRITING], [WRITING, FOUND_ENROLLED]],
                         ids=["was-not-enrolled", "was-enrolled"])
async def test_a_retry_after_its_own_lost_write_says_what_the_first_attempt_found(first_attempt: list[str]) -> None:
    """The retry finds the enrolment its first attempt wrote; whether the user was in the course before that
    write (perhaps by hand: ChangeParticipant then leaves the roster alone) comes from the heartbeat."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=first_attempt)
    def answer(request: httpx.Request) -> httpx.Response:
        suspended_only = "onlysuspended" in request.content.decode()  # nobody is suspended
        return httpx.Response(200, json=[] if suspended_only else [{"id": 7, "roles": [{"roleid": 5}]}])

    with respx.mock:
        respx.post(ENDPOINT).mock(side_effect=answer)
        async with MoodleClient(URL, "tok") as moodle:
            result = await env.run(MoodleSyncActivities(moodle, make_settings()).enrol_user,
                                   spec(other_role_ids=[3], course_may_have_teacher=True))
    assert result == EnrolResult(enrolled=True, found_enrolled=FOUND_ENROLLED in first_attempt)
