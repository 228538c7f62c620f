"""An event's whole life through the real worker code, a Temporal dev server and a real Moodle.

Moodle's state is asserted with direct REST reads; mails are counted in the mail log when
MOODLE_TEST_MAIL_LOG is set (the lab's sink)."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from openvle_moodle_sync import starter
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.models import course_idnumber, parse_participant
from openvle_moodle_sync.moodle import MoodleClient
from tests.live.conftest import LIVE, PASSWORD, Live, MailLog, addresses, live_settings, live_worker

pytestmark = LIVE

STUDENT, TEACHER = 5, 3


def make_event(live: Live, suffix: str, participants: list[dict[str, Any]]) -> dict[str, Any]:
    event_id = live.name(suffix)
    return {"id": event_id, "name": f"{event_id} Linux Workshop (live test)", "slug": event_id,
            "moodle_course_id": live.template_id, "participants": participants}


async def enrolled_roles(moodle: MoodleClient, course_id: int) -> dict[str, set[int]]:
    """username -> role ids, straight from Moodle."""
    return {u["username"]: {r["roleid"] for r in u.get("roles", [])}
            for u in await moodle.get_enrolled_users(course_id)}


async def user_of(moodle: MoodleClient, username: str) -> dict[str, Any] | None:
    users = await moodle.get_users_by_field("username", [username])
    return dict(users[0]) if users else None


def welcome_mails(mails: MailLog, email: str) -> int:
    return sum(1 for s in mails.subjects(email) if s.lower().startswith("welcome to"))


async def test_event_lifecycle(client: Client, live: Live, moodle: MoodleClient, template: dict[str, Any],
                               people: list[dict[str, Any]], mails: MailLog) -> None:
    event = make_event(live, "ev1", people)
    settings = live_settings(live)
    async with live_worker(client, live, settings) as (_, calls):
        # --- deploy ---------------------------------------------------------------------------------
        # The answer to the first account creation gets lost after Moodle made it: the retry must find
        # that account instead of failing or making a second one.
        fresh = [p for p in people if await user_of(moodle, p["username"]) is None]
        calls.lose_next["core_user_create_users"] = 1 if fresh else 0
        result = await (await starter.deploy_event(client, event, settings=settings)).result()
        assert result.course_id is not None
        live.made_courses.add(result.course_id)
        assert calls.lost == (["core_user_create_users"] if fresh else [])
        assert (result.total, result.done, result.failed, result.course_created) == (4, 4, 0, True)

        (course,) = await moodle.get_courses_by_field("id", result.course_id)
        assert (course["shortname"], course["fullname"], course["idnumber"]) == (
            event["slug"], event["name"], course_idnumber(event["id"]))
        assert course["visible"] == 1 and course["categoryid"] == template["categoryid"]
        assert course["format"] == template["format"]
        expected = {p["username"]: {TEACHER if p["role"] == "instructor" else STUDENT} for p in people}
        assert await enrolled_roles(moodle, course["id"]) == expected  # exactly the participants
        for p in people:
            user = await user_of(moodle, p["username"])
            assert user is not None and user["email"] == p["email"] and user["auth"] == "manual"
            assert (user["firstname"], user["lastname"]) == (p["first_name"], p["last_name"])
        # One creation per new account (several a call): the retry after the lost answer found the account.
        assert sum(1 for f, form in calls.calls if f == "core_user_create_users"
                   for key in form if key.endswith("[username]")) == len(fresh)
        progress = await starter.get_progress(client, event["id"])
        assert (progress.state, progress.total, progress.done, progress.failed) == ("completed", 4, 4, 0)
        if mails.available:
            # Each participant: at most one mail (the new-account mail with the generated password), and
            # no welcome mail (students are enrolled before the teacher).
            counts = mails.per_address(addresses(people))
            assert all(n <= 1 for n in counts.values()), counts
            assert all(welcome_mails(mails, p["email"]) == 0 for p in people)

        # --- re-run of the finished deployment: reads only, no write, no mail --------------------------
        before_mail = mails.per_address(addresses(people))
        mark = calls.mark()
        rerun = await (await starter.rerun_deployment(client, event["id"], settings=settings)).result()
        assert (rerun.course_id, rerun.course_created, rerun.done, rerun.failed) == (course["id"], False, 4, 0)
        assert calls.writes(mark) == [], calls.functions(mark)
        assert mails.per_address(addresses(people)) == before_mail
        assert await enrolled_roles(moodle, course["id"]) == expected

        # --- add a participant (the answer to the enrol call is lost once: the retry sends no mail) ----
        newcomer = {"id": "p-new", "username": live.name("new"), "email": live.email("new"),
                    "first_name": "Nora", "last_name": "Newcomer", "role": "student"}
        calls.lose_next["enrol_manual_enrol_users"] = 1
        mark = calls.mark()
        added = await (await starter.add_participant(client, event, newcomer, settings=settings)).result()
        assert calls.lost[-1] == "enrol_manual_enrol_users"
        assert calls.functions(mark).count("enrol_manual_enrol_users") == 1  # the retry saw it was done
        # (The retry reports "already enrolled": its first attempt had done it.)
        assert added.applied[-1].course_id == course["id"] and added.applied[-1].moodle_user_id
        assert (await enrolled_roles(moodle, course["id"]))[newcomer["username"]] == {STUDENT}
        if mails.available:
            # The course has a teacher now: Moodle welcomes the newcomer, exactly once despite the retry.
            assert welcome_mails(mails, newcomer["email"]) == 1
            assert mails.per_address([newcomer["email"]])[newcomer["email"]] == 2  # + the new-account mail

        # Adding again: no write, no mail.
        before_mail = mails.per_address([newcomer["email"]])
        mark = calls.mark()
        again = await (await starter.add_participant(client, event, newcomer, settings=settings)).result()
        assert not again.applied[-1].changed
        assert calls.writes(mark) == []
        assert mails.per_address([newcomer["email"]]) == before_mail

        # --- remove a student ------------------------------------------------------------------------
        leaver = people[3]
        removed = await (await starter.remove_participant(client, event, leaver, settings=settings)).result()
        assert removed.applied[-1].changed
        roles = await enrolled_roles(moodle, course["id"])
        assert leaver["username"] not in roles and len(roles) == 4
        assert await user_of(moodle, leaver["username"]) is not None  # the account stays

        # --- archive: students out, the instructor stays, the course is hidden -------------------------
        archived = await (await starter.archive_event(client, event, settings=settings)).result()
        assert (archived.course_id, archived.instructors_kept, archived.students_unenrolled, archived.hidden) == (
            course["id"], 1, 3, True)
        assert await enrolled_roles(moodle, course["id"]) == {people[0]["username"]: {TEACHER}}
        assert (await moodle.get_courses_by_field("id", course["id"]))[0]["visible"] == 0

        # --- delete with MOODLE_DELETE_COURSE_ON_EVENT_DELETE false (the default): the course stays ----
        kept = await (await starter.delete_event(client, event, settings=settings)).result()
        assert kept.kept and not kept.deleted and kept.course_id == course["id"]
        assert await moodle.get_courses_by_field("id", course["id"]) != []

    # --- delete with MOODLE_DELETE_COURSE_ON_EVENT_DELETE true: the course goes ------------------------
    deleting = live_settings(live, moodle_delete_course_on_event_delete=True)
    async with live_worker(client, live, deleting):
        deleted = await (await starter.delete_event(client, event, settings=deleting)).result()
        assert deleted.deleted and deleted.course_id == course["id"]
        assert await moodle.get_courses_by_field("id", course["id"]) == []
        assert await moodle.get_courses([course["id"]]) == []
        again_deleted = await (await starter.delete_event(client, event, settings=deleting)).result()
        assert not again_deleted.deleted and again_deleted.course_id is None


async def test_participant_moodle_rejects_fails_alone(client: Client, live: Live, moodle: MoodleClient,
                                                      people: list[dict[str, Any]], mails: MailLog) -> None:
    """A username that belongs to another Moodle account (with another email) under match field email:
    that participant fails alone with UserConflictError; the others are done; the run ends failed."""
    token_user = (await moodle.get_site_info())["username"]  # an account that exists on every site
    clash = {"id": "p-clash", "username": token_user, "email": live.email("clash"),
             "first_name": "Clash", "last_name": "Livetest", "role": "student"}
    long_email = f"{live.prefix}{'x' * (65 - len(live.prefix))}@example.com"  # local part over 64 characters
    rejected = {"id": "p-longmail", "username": live.name("longmail"), "email": long_email,
                "first_name": "Long", "last_name": "Mail", "role": "student"}
    try:
        parse_participant(rejected)
        model_accepts_long_email = True
    except ValueError:  # the model learnt Moodle's rule: nothing to check at run time
        model_accepts_long_email = False
    participants = [people[0], people[1], clash] + ([rejected] if model_accepts_long_email else [])
    event = make_event(live, "ev2", participants)
    settings = live_settings(live, moodle_user_match_field="email")
    async with live_worker(client, live, settings) as (_, calls):
        handle = await starter.deploy_event(client, event, settings=settings)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        cause = failure.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == ErrorType.DEPLOYMENT_INCOMPLETE
        progress = await starter.get_progress(client, event["id"])
        assert progress.course_id is not None
        live.made_courses.add(progress.course_id)
        states = {p.id: p for p in progress.participants}
        assert progress.state == "failed"
        assert (states["p-0"].state, states["p-1"].state) == ("done", "done")
        assert states["p-clash"].state == "failed" and states["p-clash"].error_type == ErrorType.USER_CONFLICT
        assert token_user in (states["p-clash"].error or "")
        if model_accepts_long_email:
            assert states["p-longmail"].state == "failed"
            assert states["p-longmail"].error_type == ErrorType.USER_CREATION
        assert progress.failed == len(participants) - 2 and progress.done == 2

        roles = await enrolled_roles(moodle, progress.course_id)
        assert roles == {people[0]["username"]: {TEACHER}, people[1]["username"]: {STUDENT}}
        assert await moodle.get_users_by_field("email", [clash["email"]]) == []  # no account made
        assert await user_of(moodle, rejected["username"]) is None

        # Re-running the failed deployment fails the same way, without writing or mailing anybody again.
        before_mail = mails.per_address(addresses(participants))
        mark = calls.mark()
        with pytest.raises(WorkflowFailureError):
            await (await starter.rerun_deployment(client, event["id"], settings=settings)).result()
        assert [f for f in calls.writes(mark) if f != "core_user_create_users"] == []
        assert mails.per_address(addresses(participants)) == before_mail
        if mails.available:
            assert all(n <= 1 for n in before_mail.values()), before_mail


async def test_participant_whose_moodle_email_differs_in_case(client: Client, live: Live,
                                                              moodle: MoodleClient) -> None:
    """An existing Moodle account ``…-Mixed@Example.com``; OpenVLE sends ``…-mixed@example.com``.

    Under match field email the participant should be matched to that account (the same person)."""
    stored = f"{live.prefix}Mixed@Example.com"
    username = live.name("mixed")
    if await user_of(moodle, username) is None:
        await moodle.create_users([{"username": username, "password": PASSWORD, "firstname": "Mixed",
                                    "lastname": "Case", "email": stored, "auth": "manual"}])
    account = await user_of(moodle, username)
    assert account is not None
    participant = {"id": "p-mixed", "username": live.name("mixed-openvle"), "email": stored.lower(),
                   "first_name": "Mixed", "last_name": "Case", "role": "student"}
    event = make_event(live, "ev3", [participant])
    settings = live_settings(live, moodle_user_match_field="email")
    async with live_worker(client, live, settings):
        handle = await starter.deploy_event(client, event, settings=settings)
        try:
            result = await handle.result()
        finally:
            progress = await starter.get_progress(client, event["id"])
            if progress.course_id:
                live.made_courses.add(progress.course_id)
            # Whatever happens, no second account appears for the same person.
            assert await user_of(moodle, participant["username"]) is None
        assert result.done == 1 and result.participants[0].moodle_user_id == account["id"]
