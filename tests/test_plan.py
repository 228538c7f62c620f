"""The read-only plan: what a deploy would do, from reads only; drift after hand edits; the brake's verdict."""

from __future__ import annotations

import json
from typing import Any

import pytest
from temporalio.client import Client

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.activities.plan_types import CourseAction, DriftKind, MailKind, MatchHow
from openvle_moodle_sync.models import InputError
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.starter import cli
from tests.conftest import (
    EXTENDED_TOKEN,
    TOKEN,
    add_moodle_user,
    make_event,
    make_person,
    make_settings,
    moodle_for,
    running_worker,
)

pytestmark = pytest.mark.usefixtures("worker")

READS = {"core_course_get_courses_by_field", "core_user_get_users_by_field", "core_enrol_get_enrolled_users",
         "core_webservice_get_site_info"}


def mails(fake: FakeMoodle) -> dict[str, int]:
    return {MailKind.NEW_ACCOUNT: sum(1 for m in fake.site.messages if m.kind == "newuser"),
            MailKind.WELCOME: sum(1 for m in fake.site.messages if m.kind == "welcome")}


async def plan_reading_only(client: Client, fake: FakeMoodle, event: dict[str, Any], settings: Settings) -> Any:
    """The plan, checking that it called only Moodle's read functions and sent no mail."""
    calls, sent = len(fake.calls), len(fake.site.messages)
    plan = await starter.plan_event(client, event, settings=settings)
    called = {c.function for c in fake.calls[calls:]}
    assert called and called <= READS, called
    assert len(fake.site.messages) == sent
    return plan


async def test_plan_of_a_new_event_tells_what_the_deploy_then_does(client: Client, fake: FakeMoodle,
                                                                   settings: Settings) -> None:
    event = make_event(fake, participants=6, instructors=2)
    existing = await add_moodle_user(fake, username="someone-else", email=event["participants"][5]["email"],
                                     firstname="Has", lastname="Account")
    courses = len(fake.site.courses)
    plan = await plan_reading_only(client, fake, event, settings)
    assert len(fake.site.courses) == courses
    assert (plan.course.action, plan.course.id) == (CourseAction.CREATE, None)
    assert plan.create_accounts == ["p-0", "p-1", "p-2", "p-3", "p-4"]
    assert [(m.participant_id, m.moodle_user_id) for m in plan.matched_accounts] == [("p-5", existing.id)]
    assert [p.participant_id for p in plan.enrol] == [f"p-{i}" for i in range(6)]
    assert plan.change_role == plan.remove == plan.drift == [] and not plan.blocked_by_brake

    before = mails(fake)
    await (await starter.deploy_event(client, event, settings=settings)).result()
    after = mails(fake)
    assert plan.expected_mails == {kind: after[kind] - before[kind] for kind in after} == {
        MailKind.NEW_ACCOUNT: 5, MailKind.WELCOME: 1}


async def test_account_matches_say_how(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=3)
    exact, case = event["participants"][0], event["participants"][1]
    a = await add_moodle_user(fake, username="a-exact", email=exact["email"], firstname="A", lastname="A")
    b = await add_moodle_user(fake, username=case["username"], email=case["email"].replace("user", "User"),
                              firstname="B", lastname="B")
    plan = await plan_reading_only(client, fake, event, settings)
    assert [(m.participant_id, m.moodle_user_id, m.how) for m in plan.matched_accounts] == [
        ("p-0", a.id, MatchHow.EXACT), ("p-1", b.id, MatchHow.EMAIL_CASE)]
    by_username = make_settings(moodle_user_match_field="username")
    async with running_worker(client, by_username, fake):
        plan = await starter.plan_event(client, event, settings=by_username)
    assert [(m.participant_id, m.how) for m in plan.matched_accounts] == [("p-1", MatchHow.USERNAME)]


async def test_drift_shows_in_the_plan_and_rerun_repairs_it(client: Client, fake: FakeMoodle,
                                                            settings: Settings) -> None:
    event = make_event(fake, participants=5, instructors=1)
    result = await (await starter.deploy_event(client, event, settings=settings)).result()
    converged = await plan_reading_only(client, fake, event, settings)
    assert (converged.course.action, converged.course.id) == (CourseAction.REUSE, result.course_id)
    assert converged.unchanged == 5 and converged.enrol == converged.change_role == converged.drift == []
    assert converged.expected_mails == {MailKind.NEW_ACCOUNT: 0, MailKind.WELCOME: 0}

    ids = {o.id: o.moodle_user_id or 0 for o in result.participants}
    assert result.course_id is not None
    async with moodle_for(fake, settings) as moodle:  # hand edits in Moodle
        await moodle.unenrol_users([{"userid": ids["p-1"], "courseid": result.course_id}])
        await moodle.unenrol_users([{"userid": ids["p-2"], "courseid": result.course_id}])
        await moodle.enrol_users([{"roleid": 3, "userid": ids["p-2"], "courseid": result.course_id}])
    plan = await plan_reading_only(client, fake, event, settings)
    assert [(d.participant_id, d.kind) for d in plan.drift] == [("p-1", DriftKind.NOT_ENROLLED),
                                                                ("p-2", DriftKind.ROLE_CHANGED)]
    assert [e.participant_id for e in plan.enrol] == ["p-1"] and [c.participant_id for c in plan.change_role] == ["p-2"]
    # The course has a teacher: both enrol calls get Moodle's welcome.
    assert plan.expected_mails == {MailKind.NEW_ACCOUNT: 0, MailKind.WELCOME: 2}

    before = mails(fake)
    await (await starter.rerun_deployment(client, event["id"], settings=settings)).result()
    assert mails(fake)[MailKind.WELCOME] - before[MailKind.WELCOME] == 2
    enrolled = fake.site.enrolled(result.course_id)
    assert enrolled[ids["p-1"]].roles == {5} and enrolled[ids["p-2"]].roles == {5}
    assert (await starter.plan_event(client, event, settings=settings)).drift == []


async def test_plan_shows_removals_and_the_brake(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=10)
    result = await (await starter.deploy_event(client, event, settings=settings)).result()
    ids = {o.id: o.moodle_user_id for o in result.participants}
    eight = await plan_reading_only(client, fake, {**event, "participants": event["participants"][:8]}, settings)
    assert [(r.participant_id, r.moodle_user_id, r.action) for r in eight.remove] == [
        ("p-8", ids["p-8"], "unenrol"), ("p-9", ids["p-9"], "unenrol")]
    assert not eight.blocked_by_brake
    empty = await plan_reading_only(client, fake, {**event, "participants": []}, settings)
    assert len(empty.remove) == 10 and empty.blocked_by_brake
    assert len(fake.site.enrolled(result.course_id)) == 10


async def test_plan_of_a_bad_event_starts_nothing(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=2)
    event["participants"][1]["email"] = "nope"
    with pytest.raises(InputError, match=r"email: 'nope' is not a valid email address"):
        await starter.plan_event(client, event, settings=settings)
    assert [r async for r in client.list_workflows(f"OpenVLEEventId = '{event['id']}'")] == []
    assert fake.calls == []


async def test_plan_command_prints_json_and_a_table(client: Client, fake: FakeMoodle, settings: Settings,
                                                    tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    event = make_event(fake, participants=3)
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    assert await cli.run(["plan", "--event", str(path), "--json"], settings=settings, client=client) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["course"] == {"action": "create", "id": None} and printed["blocked_by_brake"] is False
    assert printed["create_accounts"] == ["p-0", "p-1", "p-2"]
    assert printed["expected_mails"] == {"new_account": 3, "welcome": 0}
    assert {"matched_accounts", "enrol", "change_role", "remove", "drift"} <= printed.keys()
    assert await cli.run(["plan", "--event", str(path)], settings=settings, client=client) == 0
    table = capsys.readouterr().out
    assert "create" in table and "new_account" in table and "p-2" in table


@pytest.mark.parametrize("token", [EXTENDED_TOKEN, TOKEN], ids=["role-functions", "guide-functions"])
async def test_expected_mails_are_what_the_deploy_sends_under_suspend(client: Client, token: str) -> None:
    """On a course with a teacher, MOODLE_UNENROL_ACTION=suspend: two people leave (suspended: a welcome each),
    one suspended earlier is listed again (re-activated: one), one is new (one, and a password), one student
    becomes instructor (in place with the role functions: none; re-enrolled without them: one)."""
    fake = FakeMoodle(token=TOKEN, extended_token=EXTENDED_TOKEN)
    settings = make_settings(moodle_unenrol_action="suspend", moodle_token=token)
    async with running_worker(client, settings, fake):
        event = make_event(fake, participants=10, instructors=1)
        await (await starter.deploy_event(client, event, settings=settings)).result()
        people = event["participants"]
        await (await starter.remove_participant(client, event, people[5], settings=settings)).result()
        newcomer = make_person(event, "new")
        promoted = {**people[3], "role": "instructor"}
        then = {**event, "participants": [*people[:3], promoted, *people[4:8], newcomer]}

        plan = await plan_reading_only(client, fake, then, settings)
        before = mails(fake)
        await (await starter.deploy_event(client, then, settings=settings)).result()
        after = mails(fake)
    sent = {kind: after[kind] - before[kind] for kind in after}
    assert sorted(r.participant_id for r in plan.remove) == ["p-8", "p-9"] and not plan.blocked_by_brake
    assert plan.expected_mails == sent == {MailKind.NEW_ACCOUNT: 1,
                                           MailKind.WELCOME: 4 if token == EXTENDED_TOKEN else 5}
