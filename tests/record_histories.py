"""Record the histories that tests/test_replay.py replays: one or more runs of each workflow.

    .venv/bin/python -m tests.record_histories

Run it when a workflow change is guarded by `workflow.patched`: it adds the histories of the new code
path and keeps every stored one, so that the old and the new paths both stay tested. One naming rule:

- ``<scenario>.json``: a run that went through no patch (the base code path);
- ``<scenario>__<patch-id>.json``: a run recorded under a patch; ``<patch-id>`` is the newest patch (in
  `PATCHES` order) the run went through, and for a child workflow the newest its parent went through.

A file that exists already holds that code path: it is left as it is, never rewritten. Commit only the
new files.

The scenarios: an event's life (deploy, re-run, add, remove, archive, delete), a participant who fails, a
deployment in child workflows, convergence (plan, deploy taking people away, the brake, the roster), removal
and archive under MOODLE_UNENROL_ACTION remove_roles and suspend (with an add back, a deploy taking that
person away again, and the roster that marks them withdrawn), an add of someone enrolled by hand, a
delete that keeps the course, and a deploy with Moodle disabled."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.devserver import DEV_SERVER_ARGS, temporal_cli
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.temporal_client import data_converter, ensure_search_attributes
from openvle_moodle_sync.workflows import PlanEvent, ids
from tests.conftest import (
    EXTENDED_TOKEN,
    TOKEN,
    add_moodle_user,
    make_event,
    make_person,
    make_settings,
    moodle_for,
    running_worker,
    without_participant,
)

HERE = Path(__file__).parent / "histories"

PATCHES: tuple[str, ...] = (
    "delete-waits-for-deployment",
    "instructor-accounts-alongside-students",
    "bulk-user-lookup",
    "unenrol-action",
    "event-roster",
    "deploy-removal-by-action",
    "reads-alongside-course",
    "roster-skips-found-enrolled",
    "delete-ends-roster",
)
"""Every `workflow.patched` id, in the order they were introduced: add a new one at the end."""


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
        raise SystemExit(f"patch id(s) {sorted(unknown)} are not in PATCHES of tests/record_histories.py: add them "
                         "at the end, in the order they were introduced")
    return found


def history_file(scenario: str, patches: set[str]) -> Path:
    """``<scenario>.json``, or ``<scenario>__<newest patch>.json`` for a run recorded under patches."""
    newest = [patch for patch in PATCHES if patch in patches][-1:]
    return HERE / (f"{scenario}__{newest[0]}.json" if newest else f"{scenario}.json")


async def save(client: Client, workflow_id: str, scenario: str, *, parent: str | None = None) -> None:
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


async def record_lifecycle(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    """One event's life: deploy, re-run, add, remove, archive, delete."""
    event = make_event(fake, participants=5, instructors=1, event_id="rec-1")
    await (await starter.deploy_event(client, event, settings=settings)).result()
    await save(client, ids.deploy_id("rec-1"), "deploy_small")
    await (await starter.rerun_deployment(client, "rec-1", settings=settings)).result()
    await save(client, ids.deploy_id("rec-1"), "deploy_rerun")
    person = make_person(event, "new")
    await (await starter.add_participant(client, event, person, settings=settings)).result()
    await save(client, ids.participant_id("rec-1", "p-new"), "change_add")
    await (await starter.remove_participant(client, event, person, settings=settings)).result()
    await save(client, ids.participant_id("rec-1", "p-new"), "change_remove")
    await (await starter.archive_event(client, event, settings=settings)).result()
    await save(client, ids.archive_id("rec-1"), "archive")
    await (await starter.delete_event(client, event, settings=settings)).result()
    await save(client, ids.delete_id("rec-1"), "delete")


async def record_failed_participant(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    bad = make_event(fake, participants=3, event_id="rec-2")
    # Someone else holds participant p-1's username: that participant fails alone.
    await add_moodle_user(fake, username=bad["participants"][1]["username"], email="other@example.com",
                          firstname="Other", lastname="Person")
    await starter.deploy_event(client, bad, settings=settings)
    with contextlib.suppress(WorkflowFailureError):
        await client.get_workflow_handle(ids.deploy_id("rec-2")).result()
    await save(client, ids.deploy_id("rec-2"), "deploy_failed_participant")


async def record_batched(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    big = make_event(fake, participants=620, instructors=10, event_id="rec-3")
    await (await starter.deploy_event(client, big, settings=settings)).result()
    await save(client, ids.deploy_id("rec-3"), "deploy_batched")
    await save(client, ids.batch_id("rec-3", "students", 1), "deploy_batch_child", parent=ids.deploy_id("rec-3"))


async def record_convergence(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    """Deploy 10, plan and deploy 8 (two taken away), deploy 3 (the brake holds); the roster's whole life."""
    event = make_event(fake, participants=10, instructors=1, event_id="conv-1")
    await (await starter.deploy_event(client, event, settings=settings)).result()
    eight = {**event, "participants": event["participants"][:8]}
    plan = await starter.plan_event(client, eight, settings=settings)
    assert len(plan.remove) == 2
    async for run in client.list_workflows(f"WorkflowType = '{PlanEvent.__temporal_workflow_definition.name}'"):  # type: ignore[attr-defined]
        await save(client, run.id, "plan")
    await (await starter.deploy_event(client, eight, settings=settings)).result()
    await save(client, ids.deploy_id("conv-1"), "deploy_converge")
    three = {**event, "participants": event["participants"][:3]}
    with contextlib.suppress(WorkflowFailureError):
        await (await starter.deploy_event(client, three, settings=settings)).result()
    await save(client, ids.deploy_id("conv-1"), "deploy_brake")
    await (await starter.delete_event(client, three, settings=settings)).result()  # ends the roster
    await save(client, ids.roster_id("conv-1"), "event_roster")


async def record_add_of_someone_enrolled(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    """A teacher enrolled by hand, added as a student: their role changes, the roster is read, not written."""
    event = make_event(fake, participants=2, instructors=1, event_id="rec-5")
    deployed = await (await starter.deploy_event(client, event, settings=settings)).result()
    person = make_person(event, "teacher")
    account = await add_moodle_user(fake, username=person["username"], email=person["email"],
                                    firstname="By", lastname="Hand")
    async with moodle_for(fake, settings) as moodle:
        await moodle.enrol_users([{"roleid": 3, "userid": account.id, "courseid": deployed.course_id or 0}])
    await (await starter.add_participant(client, event, person, settings=settings)).result()
    await save(client, ids.participant_id("rec-5", person["id"]), "change_add_found_enrolled")


async def record_unenrol_actions(client: Client) -> None:
    """Removal and archive under the MOODLE_UNENROL_ACTION values that write something other than unenrol."""
    fake = FakeMoodle(token=TOKEN, extended_token=EXTENDED_TOKEN)
    for action in ("remove_roles", "suspend"):
        settings = make_settings(moodle_token=EXTENDED_TOKEN, moodle_unenrol_action=action)
        async with running_worker(client, settings, fake):
            event = make_event(fake, participants=4, instructors=1, event_id=f"rec-{action.replace('_', '-')}")
            await (await starter.deploy_event(client, event, settings=settings)).result()
            person = event["participants"][1]
            await (await starter.remove_participant(client, event, person, settings=settings)).result()
            await save(client, ids.participant_id(event["id"], person["id"]), f"change_remove_{action}")
            # Added back, then no longer listed: the roster marks them withdrawn, then holds them again.
            await (await starter.add_participant(client, event, person, settings=settings)).result()
            await save(client, ids.participant_id(event["id"], person["id"]), f"change_add_back_{action}")
            rest = without_participant(event, person["id"])
            await (await starter.deploy_event(client, rest, settings=settings)).result()
            await save(client, ids.deploy_id(event["id"]), f"deploy_converge_{action}")
            await (await starter.archive_event(client, event, settings=settings)).result()
            await save(client, ids.archive_id(event["id"]), f"archive_{action}")
            await save(client, ids.roster_id(event["id"]), f"event_roster_{action}")


async def main() -> None:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_cli(),
                                                dev_server_extra_args=list(DEV_SERVER_ARGS),
                                                data_converter=data_converter(make_settings()))
    client = env.client
    await ensure_search_attributes(client)
    fake = FakeMoodle(token=TOKEN)
    settings = make_settings(moodle_delete_course_on_event_delete=True)
    async with running_worker(client, settings, fake):
        await record_lifecycle(client, fake, settings)
        await record_failed_participant(client, fake, settings)
        await record_batched(client, fake, settings)
        await record_convergence(client, fake, settings)
        await record_add_of_someone_enrolled(client, fake, settings)
    await record_unenrol_actions(client)
    keeping = make_settings()  # MOODLE_DELETE_COURSE_ON_EVENT_DELETE false: the course stays, the roster ends
    async with running_worker(client, keeping, fake):
        event = make_event(fake, 2, event_id="rec-6")
        await (await starter.deploy_event(client, event, settings=keeping)).result()
        await (await starter.delete_event(client, event, settings=keeping)).result()
        await save(client, ids.delete_id("rec-6"), "delete_kept")
    disabled = make_settings(moodle_enabled=False, moodle_url="", moodle_token="")
    async with running_worker(client, disabled, fake):
        await (await starter.deploy_event(client, make_event(fake, 2, event_id="rec-4"), settings=disabled)).result()
        await save(client, ids.deploy_id("rec-4"), "deploy_disabled")
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
