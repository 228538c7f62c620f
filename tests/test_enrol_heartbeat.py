"""An enrol attempt heartbeats WRITING before it writes only where a retry would read it.

A heartbeat is one more write to the workflow's state on the Temporal server, per enrolment. Retries that
check the course first (a course that may have a teacher, or a role change) need it to tell their own lost
write from someone else's. A student of a course the run made is written again on a retry, with no check,
so the heartbeat would only load the server: at 3,000 students, 3,000 writes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from temporalio.testing import ActivityEnvironment

from openvle_moodle_sync.activities.moodle_sync import WRITING, MoodleSyncActivities
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

