"""An event's whole life on a real Temporal dev server and the Moodle simulator, asserting Moodle's state."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.models import course_idnumber
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.starter.progress import read_life
from tests.conftest import add_moodle_user, make_event, make_settings, running_worker

pytestmark = pytest.mark.usefixtures("worker")


def welcome_mails(fake: FakeMoodle, user_id: int | None = None) -> int:
    return sum(1 for m in fake.site.messages if m.kind == "welcome" and user_id in (None, m.user_id))


async def test_full_lifecycle(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=6, instructors=2)

    handle = await starter.deploy_event(client, event, settings=settings)
    result = await handle.result()

    course = fake.site.courses[result.course_id]
    assert (course.shortname, course.fullname, course.idnumber) == (event["slug"], event["name"],
                                                                    course_idnumber(event["id"]))
    assert course.visible
    assert result.total == result.done == 6 and result.failed == 0
    enrolled = fake.site.enrolled(course.id)
    users = {p["id"]: fake.site.user_by_username(p["username"]) for p in event["participants"]}
    assert {u.id for u in users.values()} == set(enrolled)  # exactly the participants, nobody else
    for p in event["participants"]:
        assert enrolled[users[p["id"]].id].roles == ({3} if p["role"] == "instructor" else {5})
        assert users[p["id"]].auth == "manual"
    # One "new account" mail each (manual accounts get a generated password). No student is welcomed at
    # deploy (students are enrolled before any teacher); Moodle welcomes every teacher after the first.
    assert sorted(m.user_id for m in fake.site.messages if m.kind == "newuser") == sorted(u.id for u in users.values())
    welcomed = [m.user_id for m in fake.site.messages if m.kind == "welcome"]
    assert len(welcomed) == 1 and welcomed[0] in {users["p-0"].id, users["p-1"].id}
    progress = await starter.get_progress(client, event["id"])
    assert (progress.state, progress.total, progress.done, progress.failed) == ("completed", 6, 6, 0)
    assert all(p.state == "done" for p in progress.participants)

    # Add a participant to the running event: created, enrolled, welcomed once.
    newcomer = {"id": "p-new", "username": "newcomer-" + event["id"], "email": f"new-{event['id']}@example.com",
                "first_name": "Nora", "last_name": "New", "role": "student"}
    change = await (await starter.add_participant(client, event, newcomer, settings=settings)).result()
    new_user = fake.site.user_by_username(newcomer["username"])
    assert new_user is not None and fake.site.enrolled(course.id)[new_user.id].roles == {5}
    assert change.applied[-1].changed and welcome_mails(fake, new_user.id) == 1
    # Adding again writes nothing and mails nobody.
    enrol_calls = fake.calls_by_function().get("enrol_manual_enrol_users", 0)
    again = await (await starter.add_participant(client, event, newcomer, settings=settings)).result()
    assert not again.applied[-1].changed
    assert fake.calls_by_function().get("enrol_manual_enrol_users", 0) == enrol_calls
    assert welcome_mails(fake, new_user.id) == 1

    # Remove a student.
    leaver = event["participants"][-1]
    await (await starter.remove_participant(client, event, leaver, settings=settings)).result()
    assert users[leaver["id"]].id not in fake.site.enrolled(course.id)

    # Archive: students out, instructors stay, course hidden.
    archived = await (await starter.archive_event(client, event, settings=settings)).result()
    remaining = fake.site.enrolled(course.id)
    assert {uid for uid, e in remaining.items()} == {users["p-0"].id, users["p-1"].id}
    assert all(e.roles == {3} for e in remaining.values())
    assert not fake.site.courses[course.id].visible
    assert (archived.instructors_kept, archived.students_unenrolled, archived.hidden) == (2, 4, True)

    # Delete with the default setting keeps the course.
    deleted = await (await starter.delete_event(client, event, settings=settings)).result()
    assert deleted.kept and not deleted.deleted and course.id in fake.site.courses


async def test_delete_removes_course_when_configured(client: Client, fake: FakeMoodle) -> None:
    settings = make_settings(moodle_delete_course_on_event_delete=True)
    async with running_worker(client, settings, fake):
        event = make_event(fake, participants=2)
        result = await (await starter.deploy_event(client, event, settings=settings)).result()
        deleted = await (await starter.delete_event(client, event, settings=settings)).result()
        assert deleted.deleted and result.course_id not in fake.site.courses
        # Deleting again is harmless: the course is already gone.
        again = await (await starter.delete_event(client, event, settings=settings)).result()
        assert not again.deleted and again.course_id is None


@pytest.mark.parametrize("kind", ["deploy", "add", "remove", "archive", "delete"])
async def test_disabled_integration_touches_nothing(client: Client, fake: FakeMoodle, kind: str) -> None:
    settings = make_settings(moodle_enabled=False, moodle_url="", moodle_token="")
    async with running_worker(client, settings, fake):
        result = await _run(client, kind, make_event(fake, participants=2), settings)
    assert "MOODLE_ENABLED" in result.skipped_reason
    assert fake.calls == []


@pytest.mark.parametrize("kind", ["deploy", "add", "remove", "archive", "delete"])
async def test_event_without_moodle_mapping_is_a_no_op(client: Client, fake: FakeMoodle, settings: Settings,
                                                       kind: str) -> None:
    result = await _run(client, kind, make_event(fake, participants=2, moodle_course_id=None), settings)
    assert "moodle_course_id is null" in result.skipped_reason
    assert fake.calls == []


async def _run(client: Client, kind: str, event: dict, settings: Settings) -> Any:
    """The operation ``kind`` on ``event``, after a deploy where the event's life needs one (add, remove,
    archive): that deploy skips Moodle too, and the event counts as deployed."""
    person = event["participants"][0]
    handle: Any
    if kind in ("add", "remove", "archive"):
        assert (await (await starter.deploy_event(client, event, settings=settings)).result()).skipped_reason
    if kind == "deploy":
        handle = await starter.deploy_event(client, event, settings=settings)
    elif kind == "add":
        handle = await starter.add_participant(client, event, person, settings=settings)
    elif kind == "remove":
        handle = await starter.remove_participant(client, event, person, settings=settings)
    elif kind == "archive":
        handle = await starter.archive_event(client, event, settings=settings)
    else:
        handle = await starter.delete_event(client, event, settings=settings)
    return await handle.result()


async def test_change_before_deployment_fails_clearly(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=2)
    with pytest.raises(starter.EventNotDeployed, match="is not deployed to Moodle") as refused:
        await starter.add_participant(client, event, event["participants"][0], settings=settings)
    assert refused.value.state == starter.LifeState.NOT_DEPLOYED and "deploy" in refused.value.next_step
    assert fake.calls == [] and await read_life(client, event["id"]) is None  # nothing started


async def test_existing_accounts_are_found_in_bulk_and_reused(client: Client, fake: FakeMoodle,
                                                               settings: Settings) -> None:
    event = make_event(fake, participants=250, instructors=5)
    for p in event["participants"][::2]:  # half of the people already have a Moodle account
        await add_moodle_user(fake, username=p["username"], email=p["email"], firstname=p["first_name"],
                              lastname=p["last_name"])
    before = fake.calls_by_function()
    result = await (await starter.deploy_event(client, event, settings=settings)).result()
    calls = {f: n - before.get(f, 0) for f, n in fake.calls_by_function().items()}
    assert result.done == 250
    # 250 people, 100 per look-up call; the accounts to create are screened by look-ups too, a batch at a time,
    # and several accounts or enrolments go in one call (moodle.coalesce).
    writes = fake.calls[sum(before.values()):]
    creates = [c for c in writes if c.function == "core_user_create_users"]
    assert sum(len(c.params["users"]) for c in creates) == 125
    assert sum(len(c.params["enrolments"]) for c in writes if c.function == "enrol_manual_enrol_users") == 250
    assert 3 <= calls["core_user_get_users_by_field"] <= 3 + 2 * len(creates)
    reused = [o for o in result.participants if not o.user_created]
    assert len(reused) == 125 and all(o.moodle_user_id for o in reused)
