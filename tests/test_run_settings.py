"""A run keeps the settings it recorded when it started (SyncConfig), whichever worker runs its activities:
the match field, the auth plugin and the managed roles come from the run, not from the worker's settings."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
from openvle_moodle_sync.activities.plan import PlanActivities
from openvle_moodle_sync.activities.plan_types import MailKind, PlanEventInput
from openvle_moodle_sync.activities.types import MatchKey, PlanInput, SyncConfig
from openvle_moodle_sync.models import parse_event
from tests.conftest import (
    add_moodle_user,
    eventually,
    make_event,
    make_person,
    make_settings,
    moodle_for,
    running_worker,
)


async def retrying_on_the_first_worker(handle: WorkflowHandle[Any, Any]) -> None:
    """The change's run has started on the first worker (so it recorded that worker's settings) and is
    retrying a Moodle call (Moodle is down)."""
    async def attempts() -> int:
        try:
            description = await handle.describe()
        except RPCError:
            return 0
        return max((a.attempt for a in description.raw_description.pending_activities), default=0)

    await eventually(attempts, lambda n: n >= 2)


async def test_a_run_keeps_its_settings_when_another_worker_takes_over(client: Client, fake: FakeMoodle) -> None:
    """Two changes (of two events, so both run at once) start on a worker matching by username and creating
    LDAP accounts, wait for Moodle, and finish on a worker set to email and manual: the run's values decide."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    first = make_settings(temporal_task_queue=queue, moodle_user_match_field="username", moodle_user_auth="ldap")
    later = make_settings(temporal_task_queue=queue, moodle_user_match_field="email", moodle_user_auth="manual")
    event = make_event(fake, participants=2)
    # Known by username only: Moodle has this account with another address.
    known = make_person(event, "known")
    account = await add_moodle_user(fake, username=known["username"], email="kim.elsewhere@example.org",
                                    firstname="Kim", lastname="Known")
    new = make_person(event, "new")

    other = make_event(fake, participants=2)
    async with running_worker(client, first, fake):
        for ev in (event, other):
            await (await starter.deploy_event(client, ev, settings=first)).result()
        fake.faults.outage = "503"
        handles = [await starter.add_participant(client, ev, p, settings=first) for ev, p in ((event, known),
                                                                                              (other, new))]
        for handle in handles:
            await retrying_on_the_first_worker(handle)
    fake.faults.outage = None
    async with running_worker(client, later, fake):
        known_result, new_result = [await asyncio.wait_for(h.result(), 60) for h in handles]

    assert known_result.applied[-1].moodle_user_id == account.id  # matched by username, as the run recorded
    created = fake.site.user_by_username(new["username"])
    assert created is not None and new_result.applied[-1].moodle_user_id == created.id
    assert created.auth == "ldap"  # the run's MOODLE_USER_AUTH, not the later worker's "manual"


async def test_a_removal_finds_the_account_by_the_runs_match_field(client: Client, fake: FakeMoodle) -> None:
    """A removal started on a worker matching by username finishes on one matching by email: the account
    known only by its username is still found, and the person taken away."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    first = make_settings(temporal_task_queue=queue, moodle_user_match_field="username")
    later = make_settings(temporal_task_queue=queue, moodle_user_match_field="email")
    event = make_event(fake, participants=2)
    known = make_person(event, "known")
    account = await add_moodle_user(fake, username=known["username"], email="kim.elsewhere@example.org",
                                    firstname="Kim", lastname="Known")
    async with running_worker(client, first, fake):
        course_id = (await (await starter.deploy_event(client, event, settings=first)).result()).course_id
        await (await starter.add_participant(client, event, known, settings=first)).result()
        fake.faults.outage = "503"
        handle = await starter.remove_participant(client, event, known, settings=first)
        await retrying_on_the_first_worker(handle)
    fake.faults.outage = None
    assert account.id in fake.site.enrolled(course_id)
    async with running_worker(client, later, fake):
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.applied[-1].moodle_user_id == account.id
    assert account.id not in fake.site.enrolled(course_id)


async def test_plan_counts_password_mails_by_the_runs_auth(fake: FakeMoodle) -> None:
    """The run recorded MOODLE_USER_AUTH=ldap: new accounts get no password mail, whatever the worker says."""
    event = parse_event(make_event(fake, participants=3))
    async with moodle_for(fake, make_settings()) as moodle:  # the worker: manual
        activities = PlanActivities(moodle, make_settings(moodle_user_auth="manual"))
        plan = await ActivityEnvironment().run(activities.plan_event, PlanEventInput(
            event=event, course_id=None, roster={}, config=SyncConfig(enabled=True, user_auth="ldap"),
            removal_action="unenrol"))
    assert len(plan.create_accounts) == 3 and plan.expected_mails[MailKind.NEW_ACCOUNT] == 0


async def test_plan_uses_the_runs_managed_roles(fake: FakeMoodle) -> None:
    """A user holding the run's other managed role (4 here) needs a role change, whatever the worker says."""
    event = make_event(fake, participants=1, instructors=0)
    user = await add_moodle_user(fake, username="plan-user", email="plan-user@example.com", firstname="P",
                                 lastname="U")
    worker_settings = make_settings()  # roles 3 and 5
    async with moodle_for(fake, worker_settings) as moodle:
        course_id = fake.site.template_course_id
        await moodle.enrol_users([{"roleid": 4, "userid": user.id, "courseid": course_id}])
        activities = MoodleSyncActivities(moodle, worker_settings)
        key = MatchKey("p-0", "plan-user", "plan-user@example.com", 5)
        plan = await ActivityEnvironment().run(activities.plan_deployment, PlanInput(
            course_id=course_id, match_field="email", keys=[key], managed_role_ids=[4, 5]))
    assert plan.role_changes == ["p-0"], event["id"]
