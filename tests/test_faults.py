"""Faults converge: lost responses, outages, rejected participants, bad tokens and racing changes."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from temporalio.client import Client, WorkflowFailureError

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.settings import Settings
from tests.conftest import add_moodle_course, add_moodle_user, make_event, make_person, make_settings, running_worker

pytestmark = pytest.mark.usefixtures("worker")

WRITES = ("core_course_duplicate_course", "core_course_update_courses", "core_user_create_users",
          "enrol_manual_enrol_users", "enrol_manual_unenrol_users", "core_course_delete_courses")


def moodle_state(fake: FakeMoodle, course_id: int, event: dict) -> dict:
    """What the event looks like in Moodle, independent of ids."""
    enrolled = fake.site.enrolled(course_id)
    by_id = {u.id: u.username for u in fake.site.users.values()}
    return {
        "courses": sorted(c.shortname for c in fake.site.courses.values() if event["id"] in c.shortname
                          or c.shortname == event["slug"]),
        "accounts": Counter(u.username for u in fake.site.users.values() if u.username.startswith(event["id"])),
        "enrolments": {by_id[uid]: sorted(e.roles) for uid, e in enrolled.items()},
        "newuser_mails": Counter(m.user_id for m in fake.site.messages if m.kind == "newuser"),
        "welcome_mails": sum(1 for m in fake.site.messages if m.kind == "welcome"),
    }


async def test_every_write_losing_its_response_converges(client: Client, fake: FakeMoodle,
                                                         settings: Settings) -> None:
    """Each write applies in Moodle, then its answer is lost once: the end state is as without faults."""
    event = make_event(fake, participants=8, instructors=2)
    fake.faults.lose_next = {fn: 3 for fn in WRITES}
    result = await (await starter.deploy_event(client, event, settings=settings)).result()

    # The first three calls of each write lost their answer (accounts and enrolments go several a call).
    made = Counter(c.function for c in fake.calls)
    assert Counter(c.function for c in fake.calls if c.lost) == {f: min(3, made[f]) for f in WRITES if made[f]}
    assert made["core_user_create_users"] and made["enrol_manual_enrol_users"] > 1
    state = moodle_state(fake, result.course_id, event)
    assert state["courses"] == [event["slug"]]  # one course, no leftover copy
    assert all(n == 1 for n in state["accounts"].values()) and len(state["accounts"]) == 8
    assert len(state["enrolments"]) == 8 and all(len(r) == 1 for r in state["enrolments"].values())
    assert all(n == 1 for n in state["newuser_mails"].values())
    assert state["welcome_mails"] == 1  # the second instructor, once, although its enrol answer was lost


async def test_lost_responses_at_scale_same_end_state(client: Client, settings: Settings) -> None:
    """A few hundred participants, a tenth of all writes lose their response: same state as without faults."""
    states = []
    for rate in (0.0, 0.1):
        fake = FakeMoodle(token=settings.moodle_token.get_secret_value(), seed=7)
        fake.faults.lose_response_rate = rate
        async with running_worker(client, make_settings(temporal_task_queue=settings.temporal_task_queue + "x"
                                                         + str(rate)), fake):
            event = make_event(fake, participants=300, instructors=20, event_id="scale-ev")
            s = make_settings(temporal_task_queue=settings.temporal_task_queue + "x" + str(rate))
            handle = await starter.deploy_event(client, {**event, "id": f"scale-{rate}"}, settings=s)
            result = await handle.result()
            states.append(moodle_state(fake, result.course_id, event))
            if rate:
                # Writes are coalesced (many participants a call): count the participants whose write was lost.
                assert sum(len(c.params.get("users") or c.params.get("enrolments") or [None])
                           for c in fake.calls if c.lost) >= 30
    assert states[0]["enrolments"] == states[1]["enrolments"]
    assert states[0]["accounts"] == states[1]["accounts"]
    assert states[0]["newuser_mails"].keys() == states[1]["newuser_mails"].keys()
    assert all(n == 1 for n in states[1]["newuser_mails"].values())
    assert states[0]["welcome_mails"] == states[1]["welcome_mails"] == 19  # instructors after the first, once


async def test_outage_longer_than_timeout_waits_and_completes(client: Client, fake: FakeMoodle,
                                                              settings: Settings) -> None:
    event = make_event(fake, participants=3)
    fake.faults.outage = "refuse"
    handle = await starter.deploy_event(client, event, settings=settings)
    # The run waits; progress says why.
    for _ in range(50):
        progress = await starter.get_progress(client, event["id"])
        if progress.message:
            break
        await asyncio.sleep(0.2)
    assert progress.state == "running"
    assert progress.message and "Failed to connect to Moodle" in progress.message
    fake.faults.outage = "503"
    await asyncio.sleep(1.5)
    fake.faults.outage = None
    result = await handle.result()
    assert result.done == 3 and len(fake.site.enrolled(result.course_id)) == 3


async def test_rejected_participant_fails_alone(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=4)
    # Someone else already owns the username of participant 2, with another email.
    clash = event["participants"][2]
    await add_moodle_user(fake, username=clash["username"], email="someone.else@example.com", firstname="Other",
                          lastname="Person")
    handle = await starter.deploy_event(client, event, settings=settings)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    message = str(failure.value.cause)
    assert "1 of 4 participants" in message and "participant p-2" in message
    assert "MOODLE_USER_MATCH_FIELD" in message
    progress = await starter.get_progress(client, event["id"])
    assert progress.state == "failed" and (progress.done, progress.failed) == (3, 1)
    failed = [p for p in progress.participants if p.state == "failed"]
    assert failed[0].id == "p-2" and failed[0].error_type == ErrorType.USER_CONFLICT


async def test_bad_token_stops_the_run_with_the_fix(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=3)
    fake.faults.token_valid = False
    handle = await starter.deploy_event(client, event, settings=settings)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    text = str(failure.value.cause)
    assert "Moodle API Error [invalidtoken]" in text and "Generate a new token" in text
    assert settings.moodle_token.get_secret_value() not in text
    # Token fixed: the re-run completes.
    fake.faults.token_valid = True
    result = await (await starter.rerun_deployment(client, event["id"], settings=settings)).result()
    assert result.done == 3


async def test_missing_function_is_named(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=2)
    fake.faults.revoked_functions = {"core_course_duplicate_course"}
    with pytest.raises(WorkflowFailureError) as failure:
        await (await starter.deploy_event(client, event, settings=settings)).result()
    text = str(failure.value.cause)
    assert "[accessexception]" in text and "core_course_duplicate_course" in text
    assert "Check service configuration" in text


async def test_concurrent_add_remove_ends_in_last_requested_state(client: Client, fake: FakeMoodle,
                                                                  settings: Settings) -> None:
    event = make_event(fake, participants=3)
    result = await (await starter.deploy_event(client, event, settings=settings)).result()
    person = make_person(event, "x")
    sequence = ["add", "remove", "add", "remove", "add"]
    handles = []
    for action in sequence:
        fn = starter.add_participant if action == "add" else starter.remove_participant
        handles.append(await fn(client, event, person, settings=settings))
    for h in handles:
        await h.result()
    user = fake.site.user_by_username(person["username"])
    assert user is not None and fake.site.enrolled(result.course_id)[user.id].roles == {5}

    handles = [await fn(client, event, person, settings=settings)
               for fn in (starter.remove_participant, starter.add_participant, starter.remove_participant)]
    for h in handles:
        await h.result()
    assert user.id not in fake.site.enrolled(result.course_id)


async def test_change_during_deployment_waits_for_it(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    """A removal sent while the deployment is still enrolling must win over the deployment."""
    event = make_event(fake, participants=6)
    fake.faults.latency_ms = 30
    deploy = await starter.deploy_event(client, event, settings=settings)
    leaver = event["participants"][-1]
    change = await starter.remove_participant(client, event, leaver, settings=settings)
    result = await deploy.result()
    await change.result()
    user = fake.site.user_by_username(leaver["username"])
    assert user is not None and user.id not in fake.site.enrolled(result.course_id)
    assert len(fake.site.enrolled(result.course_id)) == 5


async def test_slug_of_a_foreign_course_is_never_taken_over(client: Client, fake: FakeMoodle,
                                                            settings: Settings) -> None:
    event = make_event(fake, participants=2)
    foreign = await add_moodle_course(fake, shortname=event["slug"], fullname="Somebody's course")
    with pytest.raises(WorkflowFailureError) as failure:
        await (await starter.deploy_event(client, event, settings=settings)).result()
    assert "already uses the short name" in str(failure.value.cause)
    assert fake.site.enrolled(foreign.id) == {}
    assert fake.calls_by_function().get("core_course_duplicate_course", 0) == 0


async def test_unknown_template_is_a_clear_error(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=2, moodle_course_id=9999)
    with pytest.raises(WorkflowFailureError) as failure:
        await (await starter.deploy_event(client, event, settings=settings)).result()
    assert "Template course 9999 does not exist" in str(failure.value.cause)
    assert fake.calls_by_function().get("core_user_create_users", 0) == 0


async def test_rerun_of_finished_deployment_writes_nothing(client: Client, fake: FakeMoodle,
                                                           settings: Settings) -> None:
    event = make_event(fake, participants=5, instructors=1)
    await (await starter.deploy_event(client, event, settings=settings)).result()
    calls_before, mails_before = len(fake.calls), len(fake.site.messages)
    result = await (await starter.rerun_deployment(client, event["id"], settings=settings)).result()
    assert result.done == 5 and not result.course_created
    new_calls = [c.function for c in fake.calls[calls_before:]]
    assert not set(new_calls) & set(WRITES), new_calls
    assert len(fake.site.messages) == mails_before


async def test_unusual_input_is_handled(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    existing = await add_moodle_user(fake, username="zoe.existing", email="Zoe.Mueller@Example.com",
                                     firstname="Zoë", lastname="Müller")
    event = make_event(fake, participants=0)
    event["participants"] = [
        {"id": "a", "username": "ZOE", "email": "zoe.mueller@example.com", "first_name": "Zoë",
         "last_name": "Müller", "role": "student"},
        {"id": "b", "username": "Dmitri.K", "email": "dmitri@example.com", "first_name": "Дмитрий",
         "last_name": "Кузнецов", "role": "instructor"},
        {"id": "c", "username": "li.wei", "email": "li.wei@example.com", "first_name": "伟",
         "last_name": "李", "role": "student"},
    ]
    result = await (await starter.deploy_event(client, event, settings=settings)).result()
    enrolled = fake.site.enrolled(result.course_id)
    assert existing.id in enrolled  # matched by email despite the letter case
    dmitri = fake.site.user_by_username("dmitri.k")
    assert dmitri is not None and dmitri.firstname == "Дмитрий" and enrolled[dmitri.id].roles == {3}
    empty = await (await starter.deploy_event(client, make_event(fake, participants=0), settings=settings)).result()
    assert empty.total == 0 and empty.course_id in fake.site.courses


async def test_rerun_keeps_participant_changes_made_after_the_deployment(client: Client, fake: FakeMoodle,
                                                                          settings: Settings) -> None:
    event = make_event(fake, participants=4)
    result = await (await starter.deploy_event(client, event, settings=settings)).result()
    leaver = event["participants"][-1]
    newcomer = make_person(event, "late")
    await (await starter.remove_participant(client, event, leaver, settings=settings)).result()
    await (await starter.add_participant(client, event, newcomer, settings=settings)).result()
    for _ in range(50):  # visibility (the run list) trails the runs by a moment
        rerun = await (await starter.rerun_deployment(client, event["id"], settings=settings)).result()
        if rerun.total == 4 and "p-late" in {p.id for p in rerun.participants}:
            break
        await asyncio.sleep(0.2)
    assert {p.id for p in rerun.participants} == {"p-0", "p-1", "p-2", "p-late"}
    gone = fake.site.user_by_username(leaver["username"])
    assert gone.id not in fake.site.enrolled(result.course_id)


async def test_role_change_leaves_exactly_the_new_role(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=3)
    result = await (await starter.deploy_event(client, event, settings=settings)).result()
    promoted = {**event["participants"][2], "role": "instructor"}
    await (await starter.add_participant(client, event, promoted, settings=settings)).result()
    user = fake.site.user_by_username(promoted["username"])
    assert fake.site.enrolled(result.course_id)[user.id].roles == {3}
    # A re-run with the event as it is now changes nobody else and keeps the new role.
    rerun = await (await starter.deploy_event(client, {**event, "participants": [
        *event["participants"][:2], promoted]}, settings=settings)).result()
    assert rerun.done == 3 and fake.site.enrolled(result.course_id)[user.id].roles == {3}


async def test_lost_instructor_enrolments_send_no_second_welcome(client: Client, fake: FakeMoodle,
                                                                 settings: Settings) -> None:
    """Moodle welcomes every teacher after the first, on every enrol call: a retry must not repeat it."""
    event = make_event(fake, participants=4, instructors=4)
    fake.faults.lose_next = {"enrol_manual_enrol_users": 4}
    result = await (await starter.deploy_event(client, event, settings=settings)).result()
    enrols = [c for c in fake.calls if c.function == "enrol_manual_enrol_users"]
    assert sum(1 for c in enrols if c.lost) == min(4, len(enrols))  # several instructors a call when coalesced
    assert all(e.roles == {3} for e in fake.site.enrolled(result.course_id).values())
    welcomed = Counter(m.user_id for m in fake.site.messages if m.kind == "welcome")
    assert sorted(welcomed.values()) == [1, 1, 1]
