"""Deploy converges on the event's current list: it takes away the people it enrolled earlier who are no
longer listed, never anyone enrolled by other means, and the mass-removal brake stops a deploy that would
take away too many at once (simulator; the same scenarios run on the lab in tests/live)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHistory
from temporalio.exceptions import ApplicationError

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.activities.roster import RosterEntry, RosterUpdate
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.lifecycle import OperationKind
from openvle_moodle_sync.models import parse_participant
from openvle_moodle_sync.settings import ConfigError, Settings
from openvle_moodle_sync.starter import cli
from openvle_moodle_sync.workflows import EventLife, ids
from openvle_moodle_sync.workflows.life import OPERATIONS_PER_RUN, RECENT_KEPT, SIGNALS_PER_RUN
from openvle_moodle_sync.workflows.types import LifeInput, Operation
from openvle_moodle_sync.workflows.withdraw import PEOPLE_PER_ACTIVITY
from tests.conftest import (
    add_moodle_user,
    enrol_by_hand,
    eventually,
    make_event,
    make_person,
    make_settings,
    roster_entries,
    running_worker,
)

pytestmark = pytest.mark.usefixtures("worker")

WRITES = {"core_course_duplicate_course", "core_course_update_courses", "core_user_create_users",
          "enrol_manual_enrol_users", "enrol_manual_unenrol_users", "core_course_delete_courses"}


def with_people(event: dict[str, Any], people: list[dict[str, Any]]) -> dict[str, Any]:
    return {**event, "participants": people}


def user_ids(fake: FakeMoodle, people: list[dict[str, Any]]) -> set[int]:
    return {fake.site.user_by_username(p["username"]).id for p in people}  # type: ignore[union-attr]


async def test_deploy_takes_away_the_people_no_longer_listed(client: Client, fake: FakeMoodle,
                                                             settings: Settings) -> None:
    event = make_event(fake, participants=10, instructors=1)
    first = await (await starter.deploy_event(client, event, settings=settings)).result()
    assert set((await roster_entries(client, event["id"])).keys()) == {p["id"] for p in event["participants"]}

    staying = event["participants"][:8]
    again = await (await starter.deploy_event(client, with_people(event, staying), settings=settings)).result()
    assert set(fake.site.enrolled(first.course_id)) == user_ids(fake, staying)
    assert sorted(r.participant_id for r in again.removed) == ["p-8", "p-9"]
    assert {r.action for r in again.removed} == {"unenrol"} and again.removal_blocked == 0
    assert set((await roster_entries(client, event["id"])).keys()) == {p["id"] for p in staying}

    # Converged: a deploy of the same list writes nothing and mails nobody.
    calls, mails = len(fake.calls), len(fake.site.messages)
    same = await (await starter.deploy_event(client, with_people(event, staying), settings=settings)).result()
    assert not {c.function for c in fake.calls[calls:]} & WRITES and len(fake.site.messages) == mails
    assert same.removed == [] and same.done == 8


async def test_brake_keeps_everyone_does_the_adds_and_fails_with_the_numbers(client: Client, fake: FakeMoodle,
                                                                            settings: Settings) -> None:
    event = make_event(fake, participants=10, instructors=1)
    first = await (await starter.deploy_event(client, event, settings=settings)).result()
    newcomer = make_person(event, "new")
    three = [*event["participants"][:2], newcomer]

    with pytest.raises(WorkflowFailureError) as failure:
        await (await starter.deploy_event(client, with_people(event, three), settings=settings)).result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == ErrorType.MASS_REMOVAL_BLOCKED
    assert "take 8 of the 10 people" in cause.message and "80%" in cause.message
    assert "--allow-mass-removal" in cause.message and "MOODLE_MAX_REMOVAL_PERCENT=25%" in cause.message
    enrolled = set(fake.site.enrolled(first.course_id))
    assert enrolled == user_ids(fake, [*event["participants"], newcomer])  # nobody gone, the add done
    assert "p-new" in await roster_entries(client, event["id"])

    allowed = await (await starter.deploy_event(client, with_people(event, three), settings=settings,
                                                allow_mass_removal=True)).result()
    assert len(allowed.removed) == 8 and set(fake.site.enrolled(first.course_id)) == user_ids(fake, three)


async def test_an_empty_list_is_what_the_brake_is_for(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=4)
    first = await (await starter.deploy_event(client, event, settings=settings)).result()
    with pytest.raises(WorkflowFailureError) as failure:
        await (await starter.deploy_event(client, with_people(event, []), settings=settings)).result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == ErrorType.MASS_REMOVAL_BLOCKED
    assert len(fake.site.enrolled(first.course_id)) == 4


def scheduled(history: WorkflowHistory, activity_type: str) -> int:
    return sum(1 for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
               and e.activity_task_scheduled_event_attributes.activity_type.name == activity_type)


def most_pending(history: WorkflowHistory, activity_type: str) -> int:
    """The most activities of ``activity_type`` the run had scheduled and not yet finished at one time."""
    pending: set[int] = set()
    most = 0
    for event in history.events:
        scheduled = event.activity_task_scheduled_event_attributes
        if event.HasField("activity_task_scheduled_event_attributes") and scheduled.activity_type.name == activity_type:
            pending.add(event.event_id)
            most = max(most, len(pending))
        for ended in ("completed", "failed", "timed_out", "canceled"):
            field = f"activity_task_{ended}_event_attributes"
            if event.HasField(field):
                pending.discard(getattr(event, field).scheduled_event_id)
    return most


async def test_a_mass_removal_past_the_brake_keeps_the_pending_activities_bounded(
        client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=600, instructors=1)
    first = await (await starter.deploy_event(client, event, settings=settings)).result()
    handle = await starter.deploy_event(client, with_people(event, []), settings=settings, allow_mass_removal=True)
    result = await handle.result()
    assert len(result.removed) == 600 and result.removal_blocked == 0
    assert fake.site.enrolled(first.course_id) == {}
    # Temporal allows 2,000 pending activities and 51,200 events per run: thousands leaving go in batches,
    # one at a time, each a few events (here 599 students in 2 batches, then the instructor).
    history = await handle.fetch_history()
    assert most_pending(history, "withdraw_users") == 1
    student_batches = -(-599 // PEOPLE_PER_ACTIVITY)
    assert scheduled(history, "withdraw_users") == student_batches + 1  # and one for the instructor
    assert scheduled(history, "withdraw_user") == 0


async def test_two_removals_always_pass_the_brake(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=3)
    first = await (await starter.deploy_event(client, event, settings=settings)).result()
    last = await (await starter.deploy_event(client, with_people(event, event["participants"][:1]),
                                             settings=settings)).result()
    assert len(last.removed) == 2 and len(fake.site.enrolled(first.course_id)) == 1


async def test_the_brake_follows_the_setting(client: Client, fake: FakeMoodle) -> None:
    loose = make_settings(moodle_max_removal_percent=80)
    async with running_worker(client, loose, fake):
        event = make_event(fake, participants=10)
        await (await starter.deploy_event(client, event, settings=loose)).result()
        result = await (await starter.deploy_event(client, with_people(event, event["participants"][:3]),
                                                   settings=loose)).result()
    assert len(result.removed) == 7


async def test_people_enrolled_by_other_means_are_never_taken_away(client: Client, fake: FakeMoodle,
                                                                   settings: Settings) -> None:
    event = make_event(fake, participants=4)
    # Someone already enrolled in the course by hand who is also listed: the service did not enrol them.
    listed_by_hand = event["participants"][3]
    first = await (await starter.deploy_event(client, with_people(event, event["participants"][:3]),
                                              settings=settings)).result()
    hand = await add_moodle_user(fake, username=f"{event['id']}-hand", email=f"{event['id']}-hand@example.com",
                                 firstname="By", lastname="Hand")
    other = await add_moodle_user(fake, username=listed_by_hand["username"], email=listed_by_hand["email"],
                                  firstname="Listed", lastname="ByHand")
    assert first.course_id is not None
    await enrol_by_hand(fake, first.course_id, [hand.id, other.id], role_id=5)
    await (await starter.deploy_event(client, event, settings=settings)).result()
    assert "p-3" not in await roster_entries(client, event["id"])

    result = await (await starter.deploy_event(client, with_people(event, []), settings=settings,
                                               allow_mass_removal=True)).result()
    assert sorted(r.participant_id for r in result.removed) == ["p-0", "p-1", "p-2"]
    assert set(fake.site.enrolled(first.course_id)) == {hand.id, other.id}


async def test_added_and_removed_participants_update_the_roster(client: Client, fake: FakeMoodle,
                                                                settings: Settings) -> None:
    event = make_event(fake, participants=6)
    first = await (await starter.deploy_event(client, event, settings=settings)).result()
    newcomer = make_person(event, "late")
    await (await starter.add_participant(client, event, newcomer, settings=settings)).result()
    await (await starter.remove_participant(client, event, event["participants"][5], settings=settings)).result()
    entries = await roster_entries(client, event["id"])
    assert "p-late" in entries and "p-5" not in entries
    # The backend's list without the newcomer: the service enrolled them, so they go.
    result = await (await starter.deploy_event(client, with_people(event, event["participants"][:5]),
                                               settings=settings)).result()
    assert [r.participant_id for r in result.removed] == ["p-late"]
    assert set(fake.site.enrolled(first.course_id)) == user_ids(fake, event["participants"][:5])


async def test_an_add_that_only_changes_a_role_keeps_the_roster_as_it_was(client: Client, fake: FakeMoodle,
                                                                          settings: Settings) -> None:
    event = make_event(fake, participants=3)
    first = await (await starter.deploy_event(client, event, settings=settings)).result()
    assert first.course_id is not None
    # A teacher enrolled by hand, then added by the backend as a student: only their role changes.
    teacher = make_person(event, "teacher")
    account = await add_moodle_user(fake, username=teacher["username"], email=teacher["email"],
                                    firstname="By", lastname="Hand")
    await enrol_by_hand(fake, first.course_id, [account.id], role_id=3)
    added = await (await starter.add_participant(client, event, teacher, settings=settings)).result()
    assert added.applied[0].changed and added.applied[0].found_enrolled
    # A student the service enrolled, added again as an instructor: still the service's, with the new role.
    promoted = {**event["participants"][2], "role": "instructor"}
    again = await (await starter.add_participant(client, event, promoted, settings=settings)).result()
    assert again.applied[0].changed and again.applied[0].found_enrolled
    entries = await roster_entries(client, event["id"])
    assert "p-teacher" not in entries and entries["p-2"].role == "instructor"

    # A deploy of the list that never had them leaves the hand-enrolled person in the course.
    result = await (await starter.deploy_event(client, with_people(event, event["participants"][:2]),
                                               settings=settings)).result()
    assert [r.participant_id for r in result.removed] == ["p-2"]
    assert account.id in fake.site.enrolled(first.course_id)


async def test_archive_and_delete_update_the_roster(client: Client, fake: FakeMoodle) -> None:
    settings = make_settings(moodle_delete_course_on_event_delete=True)
    async with running_worker(client, settings, fake):
        event = make_event(fake, participants=4, instructors=1)
        await (await starter.deploy_event(client, event, settings=settings)).result()
        await (await starter.archive_event(client, event, settings=settings)).result()
        assert set(await roster_entries(client, event["id"])) == {"p-0"}  # the instructor stays
        await (await starter.delete_event(client, event, settings=settings)).result()
        assert await roster_entries(client, event["id"]) == {}
        description = await client.get_workflow_handle(ids.life_id(event["id"])).describe()
        assert description.status is not None and description.status.name == "COMPLETED"


async def test_the_roster_ends_with_the_event_also_when_the_course_is_kept(client: Client, fake: FakeMoodle,
                                                                           settings: Settings) -> None:
    assert not settings.moodle_delete_course_on_event_delete  # the default: the course stays
    event = make_event(fake, participants=3)
    first = await (await starter.deploy_event(client, event, settings=settings)).result()
    deleted = await (await starter.delete_event(client, event, settings=settings)).result()
    assert deleted.kept and set(fake.site.enrolled(first.course_id or 0)) == user_ids(fake, event["participants"])
    description = await client.get_workflow_handle(ids.life_id(event["id"])).describe()
    assert description.status is not None and description.status.name == "COMPLETED"
    assert await roster_entries(client, event["id"]) == {}

    # Deleting an event never deployed is a quiet no-op: nothing to delete, and its life ends at once.
    never = make_event(fake, participants=2)
    quiet = await (await starter.delete_event(client, never, settings=settings)).result()
    assert not quiet.deleted and not quiet.kept and quiet.course_id is None
    description = await client.get_workflow_handle(ids.life_id(never["id"])).describe()
    assert description.status is not None and description.status.name == "COMPLETED"


@pytest.mark.parametrize("value", ["120", "-1", "many"])
def test_the_brake_setting_is_validated(value: str) -> None:
    with pytest.raises(ConfigError, match="MOODLE_MAX_REMOVAL_PERCENT"):
        make_settings(moodle_max_removal_percent=value)


async def test_changes_requested_during_a_deploy_win_in_the_order_made(client: Client, fake: FakeMoodle,
                                                                       settings: Settings) -> None:
    event = make_event(fake, participants=6)
    first = await (await starter.deploy_event(client, event, settings=settings)).result()
    back, leaver = event["participants"][5], event["participants"][4]
    fake.faults.latency_ms = 30
    # The deploy drops `back` (in the roster) while an add of `back` is requested: the add came later, it wins.
    deploy = await starter.deploy_event(client, with_people(event, event["participants"][:5]), settings=settings)
    add = await starter.add_participant(client, event, back, settings=settings)
    assert [r.participant_id for r in (await deploy.result()).removed] == ["p-5"]
    await add.result()
    # The deploy keeps `leaver` while a removal of them is requested: the removal came later, it wins.
    deploy = await starter.deploy_event(client, event, settings=settings)
    remove = await starter.remove_participant(client, event, leaver, settings=settings)
    await deploy.result()
    await remove.result()
    enrolled = set(fake.site.enrolled(first.course_id))
    assert enrolled == user_ids(fake, [*event["participants"][:4], back])
    assert set(await roster_entries(client, event["id"])) == {"p-0", "p-1", "p-2", "p-3", "p-5"}


async def test_deploy_command_stops_at_the_brake_and_goes_past_it_when_told(
        client: Client, fake: FakeMoodle, settings: Settings, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    event = make_event(fake, participants=4)
    first = await (await starter.deploy_event(client, event, settings=settings)).result()
    path = tmp_path / "event.json"
    path.write_text(json.dumps(with_people(event, [])))
    assert await cli.run(["deploy", "--event", str(path), "--wait"], settings=settings, client=client) == 1
    assert "MassRemovalBlocked" in capsys.readouterr().err and len(fake.site.enrolled(first.course_id)) == 4
    assert await cli.run(["deploy", "--event", str(path), "--wait", "--allow-mass-removal"],
                         settings=settings, client=client) == 0
    assert "4 no longer listed taken away (unenrol)" in capsys.readouterr().out
    assert fake.site.enrolled(first.course_id) == {}


async def test_the_life_continues_as_new_and_keeps_its_roster_and_queue(client: Client, settings: Settings) -> None:
    """Operations without end (here adds refused at once: the event is not deployed) keep the history bounded:
    every OPERATIONS_PER_RUN the life continues as new, carrying the roster and what is queued."""
    event_id = f"cx-{uuid.uuid4().hex[:8]}"
    roster = {f"p-{i}": RosterEntry(i, "student") for i in range(50)}
    total = 2 * OPERATIONS_PER_RUN + 5
    ops = [Operation(op_id=f"op{i}", kind=OperationKind.ADD,
                     workflow_id=ids.operation_id(OperationKind.ADD, event_id, f"op{i}", "x"),
                     participant=parse_participant(make_person({"id": event_id}, "x")), moodle_course_id=2)
           for i in range(total)]
    handle = await client.start_workflow(EventLife.run, LifeInput(event_id=event_id, roster=roster, queue=ops[:5]),
                                         id=ids.life_id(event_id), task_queue=settings.temporal_task_queue)
    for op in ops[5:]:
        await handle.signal(EventLife.operation, op)
    await handle.signal(EventLife.record, RosterUpdate(put={"p-new": RosterEntry(99, "student")}, drop=["p-0"]))
    latest = client.get_workflow_handle(ids.life_id(event_id))
    view = await eventually(lambda: latest.query(EventLife.progress),
                            lambda v: not v.queued_total and bool(v.recent) and v.recent[-1].op_id == f"op{total - 1}")
    assert view.state == "not_deployed" and all(r.state == "refused" for r in view.recent)
    assert len(view.recent) == RECENT_KEPT
    assert set(await latest.query(EventLife.entries)) == {f"p-{i}" for i in range(1, 50)} | {"p-new"}
    async def runs() -> int:  # visibility lists a run a moment after it starts
        return len([run async for run in client.list_workflows(f"WorkflowId = '{ids.life_id(event_id)}'")])

    assert await eventually(runs, lambda n: n >= 3, timeout=20)  # continued as new twice at least
    history = await latest.fetch_history()
    assert len(history.events) < 4000
    await latest.terminate("test done")


async def test_a_flood_of_operations_continues_the_life_as_new_before_temporal_refuses_one(
        client: Client, fake: FakeMoodle) -> None:
    """Temporal takes at most 10,000 signals in one run: a run that has received SIGNALS_PER_RUN operations
    continues as new at once, carrying them all, instead of taking OPERATIONS_PER_RUN of them first (10,000
    adds asked at once reached the limit while the first run had taken a few dozen)."""
    idle = make_settings()  # a task queue with no worker yet: every operation lands before the life runs
    event_id = f"fl-{uuid.uuid4().hex[:8]}"
    person = parse_participant(make_person({"id": event_id}, "x"))
    ops = [Operation(op_id=f"op{i}", kind=OperationKind.ADD, participant=person, moodle_course_id=2,
                     workflow_id=ids.operation_id(OperationKind.ADD, event_id, f"op{i}", "x"))
           for i in range(SIGNALS_PER_RUN + 10)]
    handle = await client.start_workflow(EventLife.run, LifeInput(event_id=event_id), id=ids.life_id(event_id),
                                         task_queue=idle.temporal_task_queue)
    for start in range(0, len(ops), 100):
        await asyncio.gather(*(handle.signal(EventLife.operation, op) for op in ops[start:start + 100]))
    async with running_worker(client, idle, fake):
        first = client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
        await eventually(first.describe, lambda d: d.status == WorkflowExecutionStatus.CONTINUED_AS_NEW)
        closed = (await first.fetch_history()).events[-1].workflow_execution_continued_as_new_event_attributes
        [carried] = await client.data_converter.decode(closed.input.payloads, [LifeInput])
    assert len(carried.queue) == len(ops)  # none taken: the next run starts with a fresh count
    await client.get_workflow_handle(handle.id).terminate("test done")


async def test_an_enrolment_whose_answer_was_lost_is_still_the_services(client: Client, fake: FakeMoodle,
                                                                       settings: Settings) -> None:
    """The retry finds its own earlier write: the roster counts the person, so a later deploy takes them away."""
    event = make_event(fake, participants=4)
    first = await (await starter.deploy_event(client, event, settings=settings)).result()
    added, deployed = make_person(event, "added"), make_person(event, "deployed")

    fake.faults.lose_next = {"enrol_manual_enrol_users": 1}
    await (await starter.add_participant(client, event, added, settings=settings)).result()
    fake.faults.lose_next = {"enrol_manual_enrol_users": 1}
    await (await starter.deploy_event(client, with_people(event, [*event["participants"], added, deployed]),
                                      settings=settings)).result()
    assert sum(1 for c in fake.calls if c.lost) == 2
    assert {"p-added", "p-deployed"} <= set(await roster_entries(client, event["id"]))

    result = await (await starter.deploy_event(client, event, settings=settings)).result()
    assert sorted(r.participant_id for r in result.removed) == ["p-added", "p-deployed"]
    assert set(fake.site.enrolled(first.course_id)) == user_ids(fake, event["participants"])
