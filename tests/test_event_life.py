"""One life per event: operations asked while others run apply in the order asked, each on the state the last
one left; an operation that makes no sense in the event's state is refused in words before anything is written;
`progress` shows the event's life also with no worker running.

The simulator answers slowly (LATENCY_MS a call) so that the operations really overlap: each test asserts that
the later operation was asked while the earlier one still ran."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.lifecycle import LifeState, OperationState
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.starter import cli
from openvle_moodle_sync.starter.progress import read_life
from openvle_moodle_sync.workflows import ids
from tests.conftest import (
    eventually,
    make_event,
    make_person,
    make_settings,
    roster_entries,
    running_worker,
    without_participant,
)

LATENCY_MS = 40


def enrolled_usernames(fake: FakeMoodle, course_id: int | None) -> set[str]:
    return {fake.site.users[uid].username for uid in fake.site.enrolled(course_id or 0)}


def usernames(people: list[dict[str, Any]]) -> set[str]:
    return {p["username"] for p in people}


async def state_of(client: Client, handle: starter.OperationHandle[Any]) -> OperationState | None:
    """The operation's state in the event's life, as the server holds it (None: not taken in yet)."""
    record = await read_life(client, handle.event_id)
    view = record.view.find(handle.id) if record and record.view else None
    return view.state if view else None


async def running(client: Client, handle: starter.OperationHandle[Any]) -> OperationState | None:
    """Wait until the life runs the operation."""
    return await eventually(lambda: state_of(client, handle), lambda state: state == OperationState.RUNNING)


async def test_a_second_deploy_is_queued_and_moodle_ends_on_the_later_list(
        client: Client, fake: FakeMoodle, settings: Settings, worker: Any) -> None:
    event = make_event(fake, participants=20, instructors=2)
    fake.faults.latency_ms = LATENCY_MS
    first = await starter.deploy_event(client, event, settings=settings)
    later_people = [*event["participants"][:12], *(make_person(event, f"new{i}") for i in range(3))]
    later = {**event, "participants": later_people}
    await running(client, first)
    second = await starter.deploy_event(client, later, settings=settings, allow_mass_removal=True)
    again = await starter.deploy_event(client, later, settings=settings, allow_mass_removal=True)  # joins it
    assert await state_of(client, first) == OperationState.RUNNING  # they overlapped
    assert (await first.result()).done == 20
    result = await second.result()
    assert (await again.result()) == result
    assert enrolled_usernames(fake, result.course_id) == usernames(later_people)
    assert set(await roster_entries(client, event["id"])) == {p["id"] for p in later_people}
    life = (await read_life(client, event["id"])).view  # type: ignore[union-attr]
    assert [v.state for v in life.recent[-3:]] == [OperationState.JOINED, OperationState.COMPLETED,
                                                   OperationState.COMPLETED] or \
        [v.state for v in life.recent[-3:]] == [OperationState.COMPLETED, OperationState.JOINED,
                                                OperationState.COMPLETED]


async def test_a_queued_deploy_is_replaced_by_a_later_one(client: Client, fake: FakeMoodle,
                                                           settings: Settings, worker: Any) -> None:
    event = make_event(fake, participants=12)
    fake.faults.latency_ms = LATENCY_MS
    first = await starter.deploy_event(client, event, settings=settings)
    await running(client, first)
    middle = await starter.deploy_event(client, without_participant(event, "p-11"), settings=settings)
    last_list = without_participant(event, "p-10")
    last = await starter.deploy_event(client, last_list, settings=settings)
    assert await state_of(client, first) == OperationState.RUNNING  # they overlapped
    await first.result()
    # The middle deploy never ran: its handle answers with the later deploy's result.
    assert await middle.result() == await last.result()
    life = (await read_life(client, event["id"])).view  # type: ignore[union-attr]
    replaced = life.find(middle.id)
    assert replaced is not None and replaced.state == OperationState.SUPERSEDED and replaced.joined == last.id
    course = (await last.result()).course_id
    assert enrolled_usernames(fake, course) == usernames(last_list["participants"])


async def test_deploy_then_archive_at_once_leaves_no_student_and_a_hidden_course(
        client: Client, fake: FakeMoodle, settings: Settings, worker: Any) -> None:
    event = make_event(fake, participants=10, instructors=2)
    fake.faults.latency_ms = LATENCY_MS
    deploy = await starter.deploy_event(client, event, settings=settings)
    archive = await starter.archive_event(client, event, settings=settings)
    assert await state_of(client, deploy) in (None, OperationState.RUNNING)  # not ended when the archive came
    course_id = (await deploy.result()).course_id
    archived = await archive.result()
    assert archived.hidden and archived.course_id == course_id
    assert enrolled_usernames(fake, course_id) == usernames(event["participants"][:2])  # instructors only
    assert not fake.site.courses[course_id or 0].visible


async def test_an_add_during_an_archive_is_refused_and_writes_nothing(client: Client, fake: FakeMoodle,
                                                                      settings: Settings, worker: Any) -> None:
    event = make_event(fake, participants=8)
    await (await starter.deploy_event(client, event, settings=settings)).result()
    fake.faults.latency_ms = LATENCY_MS
    archive = await starter.archive_event(client, event, settings=settings)
    await running(client, archive)
    late = make_person(event, "late")
    try:  # refused at the call when the server already shows the archive under way, else by the life
        add = await starter.add_participant(client, event, late, settings=settings)
        assert await state_of(client, archive) == OperationState.RUNNING  # they overlapped
        with pytest.raises(starter.EventArchived):
            await add.result()
    except starter.EventArchived as refused:
        assert refused.state == LifeState.ARCHIVED
    await archive.result()
    assert fake.site.user_by_username(late["username"]) is None  # no account, no mail
    assert all(m.user_id is None or fake.site.users[m.user_id].username != late["username"]
               for m in fake.site.messages)


async def test_each_refusal_at_the_call_writes_nothing_and_says_what_to_do(client: Client, fake: FakeMoodle,
                                                                           settings: Settings, worker: Any) -> None:
    never = make_event(fake, participants=3)
    person = never["participants"][0]
    for ask in (lambda: starter.add_participant(client, never, person, settings=settings),
                lambda: starter.remove_participant(client, never, person, settings=settings),
                lambda: starter.archive_event(client, never, settings=settings),
                lambda: starter.rerun_deployment(client, never["id"], settings=settings)):
        with pytest.raises(starter.EventNotDeployed) as refused:
            await ask()
        assert refused.value.state == LifeState.NOT_DEPLOYED and "deploy" in refused.value.next_step.lower()
    assert await read_life(client, never["id"]) is None and fake.calls == []  # no life started, nothing written

    event = make_event(fake, participants=4)
    await (await starter.deploy_event(client, event, settings=settings)).result()
    await (await starter.archive_event(client, event, settings=settings)).result()
    calls, life_events = len(fake.calls), await _history_length(client, event["id"])
    for ask in (lambda: starter.add_participant(client, event, make_person(event, "x"), settings=settings),
                lambda: starter.remove_participant(client, event, person, settings=settings),
                lambda: starter.rerun_deployment(client, event["id"], settings=settings),
                lambda: starter.deploy_event(client, event, settings=settings)):
        with pytest.raises(starter.EventArchived, match="was archived on") as archived:
            await ask()
        assert archived.value.since and "reopen" in archived.value.next_step
    assert len(fake.calls) == calls and await _history_length(client, event["id"]) == life_events

    await (await starter.delete_event(client, event, settings=settings)).result()
    for ask in (lambda: starter.add_participant(client, event, make_person(event, "x"), settings=settings),
                lambda: starter.archive_event(client, event, settings=settings),
                lambda: starter.rerun_deployment(client, event["id"], settings=settings),
                lambda: starter.deploy_event(client, event, settings=settings)):
        with pytest.raises(starter.EventDeleted, match="was deleted on"):
            await ask()


async def _history_length(client: Client, event_id: str) -> int:
    return (await client.get_workflow_handle(ids.life_id(event_id)).describe()).history_length


async def test_reopen_starts_the_life_again(client: Client, fake: FakeMoodle) -> None:
    settings = make_settings(moodle_delete_course_on_event_delete=True)
    async with running_worker(client, settings, fake):
        event = make_event(fake, participants=5, instructors=1)
        course_id = (await (await starter.deploy_event(client, event, settings=settings)).result()).course_id
        await (await starter.archive_event(client, event, settings=settings)).result()
        # An archived event reopened: its course is shown again and its students come back.
        reopened = await (await starter.deploy_event(client, event, settings=settings, reopen=True)).result()
        assert reopened.course_id == course_id and fake.site.courses[course_id or 0].visible
        assert enrolled_usernames(fake, course_id) == usernames(event["participants"])
        # A deleted event reopened: its course is copied anew from the template.
        await (await starter.delete_event(client, event, settings=settings)).result()
        assert course_id not in fake.site.courses
        anew = await (await starter.deploy_event(client, event, settings=settings, reopen=True)).result()
        assert anew.course_created and anew.course_id != course_id
        assert enrolled_usernames(fake, anew.course_id) == usernames(event["participants"])
        life = (await read_life(client, event["id"])).view  # type: ignore[union-attr]
        assert life.state == LifeState.DEPLOYED and life.course_id == anew.course_id


async def test_progress_shows_the_life_with_no_worker(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=4)
    async with running_worker(client, settings, fake):
        await (await starter.deploy_event(client, event, settings=settings)).result()
        await (await starter.archive_event(client, event, settings=settings)).result()
    # No worker now: an add is refused at the call (the server's record is current), a delete waits in the queue.
    with pytest.raises(starter.EventArchived):
        await starter.add_participant(client, event, make_person(event, "x"), settings=settings)
    await starter.delete_event(client, event, settings=settings)
    started = time.monotonic()
    progress = await starter.get_progress(client, event["id"])
    assert time.monotonic() - started < 10
    assert progress.event_state == "archived" and progress.event_state_since
    assert [op.kind for op in progress.recent[-2:]] == ["deploy", "archive"]
    assert all(op.state == "completed" for op in progress.recent[-2:])
    assert progress.worker_polling is False and progress.state == "completed" and progress.done == 4
    async with running_worker(client, settings, fake):  # the delete waiting for a worker now runs
        life = await read_life(client, event["id"])
        assert life is not None and life.view is not None
        progress = await starter.get_progress(client, event["id"])
    assert progress.event_state in ("archived", "deleted")


async def test_a_failed_run_shows_its_unreached_participants_as_stopped(client: Client, fake: FakeMoodle,
                                                                        settings: Settings, worker: Any) -> None:
    event = make_event(fake, participants=30)
    fake.faults.latency_ms = LATENCY_MS
    deploy = await starter.deploy_event(client, event, settings=settings)
    await eventually(lambda: _enrolments(fake), lambda n: n > 0)  # the course is made and enrolments go in
    fake.faults.token_valid = False  # revoked mid-deployment: the run stops (a configuration error)
    with pytest.raises(Exception):  # noqa: B017 (the run's failure: InvalidTokenError)
        await deploy.result()
    progress = await starter.get_progress(client, event["id"])
    assert progress.failure is not None and progress.failure.type == "InvalidTokenError"
    assert progress.running == 0 and progress.stopped > 0
    assert all(p.state in ("done", "stopped", "failed") for p in progress.participants)
    assert "rerun" in (progress.next_step or "")


async def _enrolments(fake: FakeMoodle) -> int:
    return len(fake.site.enrolled(max(fake.site.courses)))


async def test_advice_leads_somewhere(client: Client, fake: FakeMoodle, settings: Settings, worker: Any) -> None:
    """A fault of the event leads to fixing the event and deploying it again; a fault of the setup to a rerun."""
    missing = make_event(fake, participants=2, moodle_course_id=9999)
    with pytest.raises(Exception):  # noqa: B017 (TemplateNotFoundError)
        await (await starter.deploy_event(client, missing, settings=settings)).result()
    progress = await starter.get_progress(client, missing["id"])
    assert progress.failure is not None and progress.failure.type == "TemplateNotFoundError"
    assert "deploy it again" in (progress.next_step or "") and "rerun" not in (progress.next_step or "")
    life = (await read_life(client, missing["id"])).view  # type: ignore[union-attr]
    assert life.recent[-1].next_step == progress.next_step

    event = make_event(fake, participants=2)
    fake.faults.token_valid = False
    with pytest.raises(Exception):  # noqa: B017 (InvalidTokenError)
        await (await starter.deploy_event(client, event, settings=settings)).result()
    progress = await starter.get_progress(client, event["id"])
    assert progress.next_step and "rerun --event-id" in progress.next_step and "MOODLE_TOKEN" in progress.next_step


async def test_plan_exits_1_naming_what_would_stop_the_deploy(client: Client, fake: FakeMoodle, settings: Settings,
                                                              worker: Any, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    missing = make_event(fake, participants=2, moodle_course_id=9999)
    path = tmp_path / "event.json"
    path.write_text(json.dumps(missing))
    code = await cli.run(["plan", "--event", str(path)], client=client, settings=settings)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "TemplateNotFoundError" in err and "9999" in err and "deploy it again" in err
    assert fake.calls_by_function().get("core_course_duplicate_course", 0) == 0

    good = make_event(fake, participants=2)
    path.write_text(json.dumps(good))
    assert await cli.run(["plan", "--event", str(path)], client=client, settings=settings) == 0
