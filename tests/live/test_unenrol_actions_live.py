"""MOODLE_UNENROL_ACTION and role changes in place on a real Moodle (the lab's Extended token).

- The simulator answers the new calls (role assign/unassign, suspend and re-activate through
  enrol_manual_enrol_users, the enrolment form, the ue unenrol, the enrolment methods) as Moodle does:
  same answer or errorcode, same roles and suspensions afterwards, same number of mails.
- For each action, a removed student's grade survives or is gone as the README documents. The grade is
  written into Moodle's database with ``psql`` (``MOODLE_TEST_PG_DSN``, e.g.
  ``postgresql:///moodle?host=/tmp/moodle-lab/pg/run&port=5433&user=postgres``; ``.ci/run`` derives it from
  the lab); without it those tests skip.

Needs ``MOODLE_TEST_EXTENDED_TOKEN`` (a token whose service has the 14 functions and
core_role_assign_roles, core_role_unassign_roles); without it the module skips."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.failures import root_cause
from openvle_moodle_sync.moodle import MoodleClient, MoodleError
from openvle_moodle_sync.moodle.check import check_connection, missing_for_action_message
from openvle_moodle_sync.moodle.errors import MoodleApiError
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.worker import build_worker
from tests.conftest import without_participant
from tests.live.conftest import LIVE, PASSWORD, WRITE_FUNCTIONS, Live, MailLog, RecordingTransport, live_settings

EXTENDED = os.environ.get("MOODLE_TEST_EXTENDED_TOKEN", "").strip()
PG_DSN = os.environ.get("MOODLE_TEST_PG_DSN", "").strip()
pytestmark = [*LIVE, pytest.mark.skipif(not EXTENDED, reason="needs MOODLE_TEST_EXTENDED_TOKEN")]
needs_db = pytest.mark.skipif(not (PG_DSN and shutil.which("psql")),
                              reason="grades need MOODLE_TEST_PG_DSN and psql (the lab's database)")

STUDENT, TEACHER = 5, 3
ROLE_WRITES = {"enrol_manual_enrol_users", "enrol_manual_unenrol_users", "core_role_assign_roles",
               "core_role_unassign_roles", "core_course_update_courses"}


# --- the lab's database: grades ---------------------------------------------------------------------

def sql(query: str) -> str:
    out = subprocess.run(["psql", PG_DSN, "-Atqc", query], check=True, capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def write_grade(course_id: int, user_id: int, grade: float) -> None:
    """A course-total grade, as the gradebook would store it (the copy has its course grade item)."""
    sql(f"INSERT INTO mdl_grade_grades (itemid, userid, rawgrade, finalgrade, timecreated, timemodified) "
        f"SELECT id, {user_id}, {grade}, {grade}, 1, 1 FROM mdl_grade_items "
        f"WHERE courseid = {course_id} AND itemtype = 'course'")
    assert read_grade(course_id, user_id) == grade


def read_grade(course_id: int, user_id: int) -> float | None:
    value = sql(f"SELECT g.finalgrade FROM mdl_grade_grades g JOIN mdl_grade_items i ON i.id = g.itemid "
                f"WHERE i.courseid = {course_id} AND i.itemtype = 'course' AND g.userid = {user_id}")
    return float(value) if value else None


def enrolment_id(course_id: int, user_id: int) -> int | None:
    value = sql(f"SELECT ue.id FROM mdl_user_enrolments ue JOIN mdl_enrol e ON e.id = ue.enrolid "
                f"WHERE e.courseid = {course_id} AND ue.userid = {user_id}")
    return int(value) if value else None


# --- Moodle's state ----------------------------------------------------------------------------------

async def state(moodle: MoodleClient, course_id: int) -> dict[int, tuple[frozenset[int], bool]]:
    """user id -> (role ids, suspended)."""
    suspended = await moodle.get_suspended_user_ids(course_id)
    return {u["id"]: (frozenset(r["roleid"] for r in u.get("roles", [])), u["id"] in suspended)
            for u in await moodle.get_enrolled_users(course_id)}


def welcomes(mails: MailLog, email: str) -> int:
    return sum(1 for s in mails.subjects(email) if s.lower().startswith("welcome to"))


@asynccontextmanager
async def extended_worker(client: Client, live: Live, settings: Settings
                          ) -> AsyncIterator[tuple[Worker, RecordingTransport]]:
    """The real worker with the token of ``settings`` (the Extended one, or the main one)."""
    transport = RecordingTransport()
    http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(settings.moodle_timeout))
    moodle = MoodleClient(live.url, settings.moodle_token.get_secret_value(), http=http,
                          timeout=settings.moodle_timeout)
    try:
        async with build_worker(client, settings, moodle) as worker:
            yield worker, transport
    finally:
        await http.aclose()


def people(live: Live, tag: str) -> list[dict[str, Any]]:
    return [{"id": f"p-{i}", "username": live.name(f"{tag}{i}"), "email": live.email(f"{tag}{i}"),
             "first_name": f"Ovlt{i}", "last_name": "Unenrol", "role": "instructor" if i == 0 else "student"}
            for i in range(3)]


def make_event(live: Live, tag: str) -> dict[str, Any]:
    event_id = live.name(f"ua-{tag}")
    return {"id": event_id, "name": f"{event_id} (live test)", "slug": event_id,
            "moodle_course_id": live.template_id, "participants": people(live, tag)}


async def deploy(client: Client, live: Live, moodle: MoodleClient, event: dict[str, Any],
                 settings: Settings) -> tuple[int, dict[str, int]]:
    result = await (await starter.deploy_event(client, event, settings=settings)).result()
    assert result.course_id is not None and result.failed == 0
    live.made_courses.add(result.course_id)
    return result.course_id, {p.id: p.moodle_user_id or 0 for p in result.participants}


# --- the simulator answers as Moodle ------------------------------------------------------------------

Call = Callable[[MoodleClient, dict[str, int]], Awaitable[Any]]


def roles_call(function: str, key: str, user: str, role: int, course: str = "course") -> Call:
    async def run(m: MoodleClient, ids: dict[str, int]) -> Any:
        return await m.call(function, {key: [{"roleid": role, "userid": ids[user], "contextlevel": "course",
                                              "instanceid": ids[course]}]})
    return run


def enrol_call(user: str, role: int, suspend: int) -> Call:
    async def run(m: MoodleClient, ids: dict[str, int]) -> Any:
        return await m.call("enrol_manual_enrol_users", {"enrolments": [
            {"roleid": role, "userid": ids[user], "courseid": ids["course"], "suspend": suspend}]})
    return run


def plain(function: str, params: Callable[[dict[str, int]], dict[str, Any]]) -> Call:
    async def run(m: MoodleClient, ids: dict[str, int]) -> Any:
        return await m.call(function, params(ids))
    return run


SCRIPT: list[tuple[str, Call]] = [
    ("unassign student role", roles_call("core_role_unassign_roles", "unassignments", "student", STUDENT)),
    ("unassign again", roles_call("core_role_unassign_roles", "unassignments", "student", STUDENT)),
    ("assign it back", roles_call("core_role_assign_roles", "assignments", "student", STUDENT)),
    ("assign again", roles_call("core_role_assign_roles", "assignments", "student", STUDENT)),
    ("suspend (enrol suspend=1)", enrol_call("student", STUDENT, 1)),
    ("suspend again", enrol_call("student", STUDENT, 1)),
    ("re-activate (suspend=0)", enrol_call("student", STUDENT, 0)),
    ("swap: assign teacher", roles_call("core_role_assign_roles", "assignments", "student", TEACHER)),
    ("swap: unassign student", roles_call("core_role_unassign_roles", "unassignments", "student", STUDENT)),
    ("swap back: assign student", roles_call("core_role_assign_roles", "assignments", "student", STUDENT)),
    ("swap back: unassign teacher", roles_call("core_role_unassign_roles", "unassignments", "student", TEACHER)),
    ("assign to an unknown user", roles_call("core_role_assign_roles", "assignments", "unknown", STUDENT)),
    ("unassign an unknown user", roles_call("core_role_unassign_roles", "unassignments", "unknown", STUDENT)),
    ("assign in an unknown course", roles_call("core_role_assign_roles", "assignments", "student", STUDENT,
                                               "unknown")),
    ("assign a role not assignable", roles_call("core_role_assign_roles", "assignments", "student", 99)),
    ("assign to someone not enrolled", roles_call("core_role_assign_roles", "assignments", "outsider", STUDENT)),
    ("enrolment methods", plain("core_enrol_get_course_enrolment_methods", lambda i: {"courseid": i["course"]})),
    ("enrolment form without the marker", plain("core_enrol_submit_user_enrolment_form",
                                                lambda i: {"formdata": f"ue={i['ue']}&status=1"})),
    ("enrolment form with the marker", plain("core_enrol_submit_user_enrolment_form", lambda i: {
        "formdata": f"ue={i['ue']}&status=1&_qf__enrol_user_enrolment_form=1"})),
    ("enrolment form of an unknown ue", plain("core_enrol_submit_user_enrolment_form",
                                              lambda i: {"formdata": "ue=999999&status=1"})),
    ("unenrol an unknown ue", plain("core_enrol_unenrol_user_enrolment", lambda i: {"ueid": 999999})),
]


async def run_script(moodle: MoodleClient, ids: dict[str, int], mails: Callable[[], int]
                     ) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for name, step in SCRIPT:
        before = mails()
        try:
            answer: Any = await step(moodle, ids)
        except MoodleApiError as error:
            answer = {"errorcode": error.errorcode, "exception": error.exception}
        except MoodleError as error:  # pragma: no cover - shown in the diff
            answer = {"error": type(error).__name__}
        roles = await state(moodle, ids["course"])
        seen[name] = {"answer": answer, "mails": mails() - before,
                      "student": sorted(roles[ids["student"]][0]), "suspended": roles[ids["student"]][1],
                      "listed": sorted(len(v[0]) for k, v in roles.items()), "outsider": ids["outsider"] in roles}
    return seen


async def setup_side(moodle: MoodleClient, template_id: int, category_id: int, live: Live, tag: str
                     ) -> dict[str, int]:
    copy = await moodle.duplicate_course(template_id, live.name(f"diff-{tag}"), live.name(f"diff-{tag}"),
                                         category_id)
    if tag == "lab":
        live.made_courses.add(copy["id"])
    made = await moodle.create_users([
        {"username": live.name(f"d{tag}{n}"), "firstname": "Ovlt", "lastname": n, "email": live.email(f"d{tag}{n}"),
         "password": PASSWORD} for n in ("t", "s", "o")])
    teacher, student, outsider = (u["id"] for u in made)
    await moodle.enrol_users([{"roleid": TEACHER, "userid": teacher, "courseid": copy["id"]}])
    await moodle.enrol_users([{"roleid": STUDENT, "userid": student, "courseid": copy["id"]}])
    return {"course": copy["id"], "teacher": teacher, "student": student, "outsider": outsider,
            "unknown": 999999}


async def test_simulator_answers_the_extended_calls_like_moodle(live: Live, template: dict[str, Any],
                                                                mails: MailLog) -> None:
    async with live.client(EXTENDED) as lab:
        ids = await setup_side(lab, live.template_id, template["categoryid"], live, "lab")
        ids["ue"] = (enrolment_id(ids["course"], ids["student"]) if PG_DSN and shutil.which("psql") else None) or 999999
        student_mail = live.email("dlabs")
        real = await run_script(lab, ids, lambda: welcomes(mails, student_mail) if mails.available else 0)
    fake = FakeMoodle(token="fake-main", extended_token="fake-extended", template_shortname=template["shortname"])
    async with MoodleClient("http://moodle.test", "fake-extended", transport=httpx.ASGITransport(app=fake)) as sim:
        fake_ids = await setup_side(sim, fake.site.template_course_id, 2, live, "sim")
        fake_ids["ue"] = fake.site.enrolments[fake_ids["course"]][fake_ids["student"]].id if ids["ue"] != 999999 \
            else 999999
        student = fake_ids["student"]
        simulated = await run_script(sim, fake_ids, lambda: sum(
            1 for m in fake.site.messages if m.kind == "welcome" and m.user_id == student))
    if not mails.available:
        for step in (*real.values(), *simulated.values()):
            step["mails"] = None
    differences = [f"{name}: lab {real[name]} / simulator {simulated[name]}"
                   for name, _ in SCRIPT if real[name] != simulated[name]]
    assert not differences, "\n".join(differences)


# --- the actions on the lab ----------------------------------------------------------------------------

@needs_db
async def test_remove_roles_keeps_the_grade_and_mails_nobody(client: Client, live: Live, moodle: MoodleClient,
                                                             mails: MailLog) -> None:
    """Deploy, grade a student, remove, add back, turn another student into an instructor, archive."""
    event = make_event(live, "rr")
    settings = live_settings(live, moodle_token=EXTENDED, moodle_unenrol_action="remove_roles")
    student, other = event["participants"][1], event["participants"][2]
    async with extended_worker(client, live, settings) as (_, calls):
        course_id, users = await deploy(client, live, moodle, event, settings)
        uid, other_uid = users["p-1"], users["p-2"]
        write_grade(course_id, uid, 87.0)
        write_grade(course_id, other_uid, 64.0)
        ue = enrolment_id(course_id, uid)
        mailed = {p["email"]: welcomes(mails, p["email"]) for p in event["participants"]}

        await (await starter.remove_participant(client, event, student, settings=settings)).result()
        assert (await state(moodle, course_id))[uid] == (frozenset(), False)  # enrolled, no role
        assert read_grade(course_id, uid) == 87.0

        mark = calls.mark()
        again = await (await starter.remove_participant(client, event, student, settings=settings)).result()
        assert not again.applied[-1].changed and not set(calls.functions(mark)) & ROLE_WRITES

        await (await starter.add_participant(client, event, student, settings=settings)).result()
        assert (await state(moodle, course_id))[uid] == (frozenset({STUDENT}), False)
        assert enrolment_id(course_id, uid) == ue and read_grade(course_id, uid) == 87.0

        turned = {**other, "role": "instructor"}
        await (await starter.add_participant(client, event, turned, settings=settings)).result()
        assert (await state(moodle, course_id))[other_uid] == (frozenset({TEACHER}), False)
        assert read_grade(course_id, other_uid) == 64.0

        archived = await (await starter.archive_event(client, event, settings=settings)).result()
        assert archived.hidden and archived.students_withdrawn == 1 and archived.instructors_kept == 2
        after = await state(moodle, course_id)
        assert after[uid] == (frozenset(), False) and after[other_uid] == (frozenset({TEACHER}), False)
        (course,) = await moodle.get_courses_by_field("id", course_id)
        assert course["visible"] == 0
        assert read_grade(course_id, uid) == 87.0 and read_grade(course_id, other_uid) == 64.0
        if mails.available:
            assert {e: welcomes(mails, e) for e in mailed} == mailed  # no mail from any of it


@needs_db
async def test_unenrol_deletes_the_grade(client: Client, live: Live, moodle: MoodleClient) -> None:
    event = make_event(live, "un")
    settings = live_settings(live, moodle_token=EXTENDED)  # unenrol, the default
    async with extended_worker(client, live, settings):
        course_id, users = await deploy(client, live, moodle, event, settings)
        write_grade(course_id, users["p-1"], 87.0)
        await (await starter.remove_participant(client, event, event["participants"][1], settings=settings)).result()
        assert users["p-1"] not in await state(moodle, course_id)
        assert read_grade(course_id, users["p-1"]) is None


@needs_db
@pytest.mark.parametrize("action", ["suspend", "keep"])
async def test_suspend_and_keep_keep_the_grade(client: Client, live: Live, moodle: MoodleClient, mails: MailLog,
                                               action: str) -> None:
    event = make_event(live, action[:2])
    settings = live_settings(live, moodle_token=EXTENDED, moodle_unenrol_action=action)
    student = event["participants"][1]
    async with extended_worker(client, live, settings):
        course_id, users = await deploy(client, live, moodle, event, settings)
        uid = users["p-1"]
        write_grade(course_id, uid, 87.0)
        before = welcomes(mails, student["email"])
        await (await starter.remove_participant(client, event, student, settings=settings)).result()
        assert (await state(moodle, course_id))[uid] == (frozenset({STUDENT}), action == "suspend")
        assert read_grade(course_id, uid) == 87.0
        await (await starter.remove_participant(client, event, student, settings=settings)).result()
        await (await starter.add_participant(client, event, student, settings=settings)).result()
        assert (await state(moodle, course_id))[uid] == (frozenset({STUDENT}), False)
        assert read_grade(course_id, uid) == 87.0
        if mails.available:  # Moodle mails on the suspend=1 call and on the re-activation (MDL-70582)
            assert welcomes(mails, student["email"]) - before == (2 if action == "suspend" else 0)
        # Added back, they are the service's again: a deploy that no longer lists them takes them away again.
        rest = without_participant(event, student["id"])
        result = await (await starter.deploy_event(client, rest, settings=settings)).result()
        assert [(r.participant_id, r.action) for r in result.removed] == [("p-1", action)]
        assert (await state(moodle, course_id))[uid] == (frozenset({STUDENT}), action == "suspend")
        assert read_grade(course_id, uid) == 87.0


async def test_remove_roles_with_the_14_functions_fails_before_any_write(client: Client, live: Live,
                                                                        moodle: MoodleClient) -> None:
    event = make_event(live, "mt")
    settings = live_settings(live, moodle_unenrol_action="remove_roles")  # the main token
    async with live.client() as main:
        report = await check_connection(main, "remove_roles")
    assert not report.ok and report.missing_for_action == ["core_role_assign_roles", "core_role_unassign_roles"]
    async with extended_worker(client, live, settings) as (_, calls):
        course_id, _ = await deploy(client, live, moodle, event, settings)
        before = await state(moodle, course_id)
        mark = calls.mark()
        with pytest.raises(WorkflowFailureError) as failure:
            await (await starter.remove_participant(client, event, event["participants"][1],
                                                     settings=settings)).result()
        cause = root_cause(failure.value.cause)
        assert isinstance(cause, ApplicationError) and cause.type == ErrorType.MISSING_FUNCTIONS
        # The run's failure: what failed, then the doctor's words.
        assert cause.message.endswith(missing_for_action_message("remove_roles", report.missing_for_action))
        assert "add core_role_assign_roles and core_role_unassign_roles to the service" in cause.message
        assert "core_webservice_get_site_info" in calls.functions(mark)
        assert not set(calls.functions(mark)) & (WRITE_FUNCTIONS | ROLE_WRITES)  # nothing written
        assert await state(moodle, course_id) == before
