"""Record the histories that tests/test_replay.py replays: one or more runs of each workflow, the 1.0 baseline.

    .venv/bin/python -m tests.record_histories

One naming rule: ``<scenario>.json`` for a run of the code as released, ``<scenario>__<patch-id>.json`` for a
run recorded under a `workflow.patched` id (`workflows.patches.PATCHES`: the newest one the run went
through; for a child workflow, the newest its parent went through). A file that exists already holds that
code path: it is left as it is, never rewritten. Commit only the new files.

The scenarios: an event's whole life (deploy, rerun, add, remove, archive, delete) and the life that ordered
it; operations asked while others run (a deploy queued behind another and replaced by a later one, a deploy
joined, an add refused on an archived event); a participant who fails; a deployment in child workflows; an
archive of more students than one activity takes; convergence (plan, deploy taking people away, the brake);
removal and archive under MOODLE_UNENROL_ACTION remove_roles and suspend (with an add back and a deploy taking
that person away again); an add of someone enrolled by hand; a delete that keeps the course; a deploy with
Moodle disabled."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHistory

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.workflows import PlanEvent, ids
from openvle_moodle_sync.workflows.admission import admission_id, start_admission
from openvle_moodle_sync.workflows.patches import PATCHES
from tests.conftest import (
    EXTENDED_TOKEN,
    TOKEN,
    add_moodle_user,
    enrol_by_hand,
    make_event,
    make_person,
    make_settings,
    running_worker,
    start_dev_server,
    without_participant,
)

HERE = Path(__file__).parent / "histories"


def patches_of(history: WorkflowHistory) -> set[str]:
    """The patch ids whose markers the history holds (the code paths this run went through)."""
    found = set()
    for event in history.events:
        if event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_patch":
                found.add(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
    unknown = found - set(PATCHES)
    if unknown:
        raise SystemExit(f"patch id(s) {sorted(unknown)} are not in workflows/patches.py PATCHES: add them there, "
                         "with the release they ship in")
    return found


def history_file(scenario: str, patches: set[str]) -> Path:
    """``<scenario>.json``, or ``<scenario>__<newest patch>.json`` for a run recorded under patches."""
    newest = [patch for patch in PATCHES if patch in patches][-1:]
    return HERE / (f"{scenario}__{newest[0]}.json" if newest else f"{scenario}.json")


async def save(client: Client, workflow_id: str, scenario: str, *, parent: str | None = None) -> None:
    """Store the run's history (of a run still going, such as the admission line, as far as it went)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    patches = patches_of(history)
    if parent is not None:  # a child takes its code path from its parent's patches
        patches |= patches_of(await client.get_workflow_handle(parent).fetch_history())
    path = history_file(scenario, patches)
    if path.exists():
        print("kept", path.name, "(this code path is stored already)")
        return
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
    print("recorded", path.name, len(history.events), "events")


async def done(handle: Any) -> Any:
    """The operation's result, or None when it failed (a scenario that records a failure)."""
    with contextlib.suppress(WorkflowFailureError):
        return await handle.result()
    return None


async def record_lifecycle(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    """One event's life: deploy, rerun, add, remove, archive, delete, and the EventLife that ran them."""
    event = make_event(fake, participants=5, instructors=1, event_id="rec-1")
    deploy = await starter.deploy_event(client, event, settings=settings)
    await deploy.result()
    await save(client, deploy.id, "deploy_small")
    rerun = await starter.rerun_deployment(client, "rec-1", settings=settings)
    await rerun.result()
    await save(client, rerun.id, "deploy_rerun")
    person = make_person(event, "new")
    add = await starter.add_participant(client, event, person, settings=settings)
    await add.result()
    await save(client, add.id, "change_add")
    remove = await starter.remove_participant(client, event, person, settings=settings)
    await remove.result()
    await save(client, remove.id, "change_remove")
    archive = await starter.archive_event(client, event, settings=settings)
    await archive.result()
    await save(client, archive.id, "archive")
    delete = await starter.delete_event(client, event, settings=settings)
    await delete.result()
    await save(client, delete.id, "delete")
    await save(client, ids.life_id("rec-1"), "event_life")


async def record_overlaps(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    """Operations asked while others run: a deploy queued behind the first and replaced by a later one, the
    later one asked twice (joined), then an archive, and an add refused by the life on the archived event."""
    event = make_event(fake, participants=6, instructors=1, event_id="rec-7")
    fake.faults.latency_ms = 30
    first = await starter.deploy_event(client, event, settings=settings)
    await starter.deploy_event(client, without_participant(event, "p-5"), settings=settings)
    later = await starter.deploy_event(client, without_participant(event, "p-4"), settings=settings)
    await starter.deploy_event(client, without_participant(event, "p-4"), settings=settings)
    archive = await starter.archive_event(client, event, settings=settings)
    add = await starter.add_participant(client, event, make_person(event, "late"), settings=settings)
    fake.faults.latency_ms = 0
    await first.result()
    await later.result()
    await archive.result()
    with contextlib.suppress(starter.EventStateError):
        await add.result()
    await save(client, ids.life_id("rec-7"), "event_life_overlaps")


async def record_failed_participant(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    bad = make_event(fake, participants=3, event_id="rec-2")
    # Someone else holds participant p-1's username: that participant fails alone.
    await add_moodle_user(fake, username=bad["participants"][1]["username"], email="other@example.com",
                          firstname="Other", lastname="Person")
    deploy = await starter.deploy_event(client, bad, settings=settings)
    await done(deploy)
    await save(client, deploy.id, "deploy_failed_participant")


async def record_batched(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    """A deployment in child workflows, then an archive of more students than one activity takes away."""
    big = make_event(fake, participants=1210, instructors=10, event_id="rec-3")
    deploy = await starter.deploy_event(client, big, settings=settings)
    await deploy.result()
    await save(client, deploy.id, "deploy_batched")
    await save(client, ids.batch_id(deploy.id, "students", 1), "deploy_batch_child", parent=deploy.id)
    # The instructors' share: accounts at once, enrolments once told the students are settled.
    await save(client, ids.batch_id(deploy.id, "instructors", 0), "deploy_batch_instructors", parent=deploy.id)
    archive = await starter.archive_event(client, big, settings=settings)
    await archive.result()
    await save(client, archive.id, "archive_batched")


async def record_convergence(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    """Deploy 10, plan and deploy 8 (two taken away), deploy 3 (the brake holds)."""
    event = make_event(fake, participants=10, instructors=1, event_id="conv-1")
    await (await starter.deploy_event(client, event, settings=settings)).result()
    eight = {**event, "participants": event["participants"][:8]}
    plan = await starter.plan_event(client, eight, settings=settings)
    assert len(plan.remove) == 2
    async for run in client.list_workflows(f"WorkflowType = '{PlanEvent.__temporal_workflow_definition.name}'"):  # type: ignore[attr-defined]
        await save(client, run.id, "plan")
    converge = await starter.deploy_event(client, eight, settings=settings)
    await converge.result()
    await save(client, converge.id, "deploy_converge")
    three = {**event, "participants": event["participants"][:3]}
    brake = await starter.deploy_event(client, three, settings=settings)
    await done(brake)
    await save(client, brake.id, "deploy_brake")


async def record_add_of_someone_enrolled(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    """A teacher enrolled by hand, added as a student: their role changes, the roster is left alone."""
    event = make_event(fake, participants=2, instructors=1, event_id="rec-5")
    deployed = await (await starter.deploy_event(client, event, settings=settings)).result()
    person = make_person(event, "teacher")
    account = await add_moodle_user(fake, username=person["username"], email=person["email"],
                                    firstname="By", lastname="Hand")
    await enrol_by_hand(fake, deployed.course_id or 0, [account.id], role_id=3)
    add = await starter.add_participant(client, event, person, settings=settings)
    await add.result()
    await save(client, add.id, "change_add_found_enrolled")


async def record_unenrol_actions(client: Client) -> None:
    """Removal and archive under the MOODLE_UNENROL_ACTION values that write something other than unenrol."""
    fake = FakeMoodle(token=TOKEN, extended_token=EXTENDED_TOKEN)
    for action in ("remove_roles", "suspend"):
        settings = make_settings(moodle_token=EXTENDED_TOKEN, moodle_unenrol_action=action)
        async with running_worker(client, settings, fake):
            event = make_event(fake, participants=4, instructors=1, event_id=f"rec-{action.replace('_', '-')}")
            await (await starter.deploy_event(client, event, settings=settings)).result()
            person = event["participants"][1]
            remove = await starter.remove_participant(client, event, person, settings=settings)
            await remove.result()
            await save(client, remove.id, f"change_remove_{action}")
            # Added back, then no longer listed: the roster marks them withdrawn, then holds them again.
            add = await starter.add_participant(client, event, person, settings=settings)
            await add.result()
            await save(client, add.id, f"change_add_back_{action}")
            converge = await starter.deploy_event(client, without_participant(event, person["id"]),
                                                  settings=settings)
            await converge.result()
            await save(client, converge.id, f"deploy_converge_{action}")
            archive = await starter.archive_event(client, event, settings=settings)
            await archive.result()
            await save(client, archive.id, f"archive_{action}")


async def main() -> None:
    env = await start_dev_server()
    client = env.client
    fake = FakeMoodle(token=TOKEN)
    settings = make_settings(moodle_delete_course_on_event_delete=True)
    async with running_worker(client, settings, fake):
        await start_admission(client, settings.temporal_task_queue)  # deployments through the line, as in production
        await record_lifecycle(client, fake, settings)
        await record_overlaps(client, fake, settings)
        await record_failed_participant(client, fake, settings)
        await record_batched(client, fake, settings)
        await record_convergence(client, fake, settings)
        await record_add_of_someone_enrolled(client, fake, settings)
    await record_unenrol_actions(client)
    keeping = make_settings()  # MOODLE_DELETE_COURSE_ON_EVENT_DELETE false: the course stays, the roster ends
    async with running_worker(client, keeping, fake):
        event = make_event(fake, 2, event_id="rec-6")
        await (await starter.deploy_event(client, event, settings=keeping)).result()
        delete = await starter.delete_event(client, event, settings=keeping)
        await delete.result()
        await save(client, delete.id, "delete_kept")
    await save(client, admission_id(settings.temporal_task_queue), "deploy_admission")
    disabled = make_settings(moodle_enabled=False, moodle_url="", moodle_token="")
    async with running_worker(client, disabled, fake):
        deploy = await starter.deploy_event(client, make_event(fake, 2, event_id="rec-4"), settings=disabled)
        await deploy.result()
        await save(client, deploy.id, "deploy_disabled")
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
