"""Taking the people a deploy no longer lists away from the course: the one place its removals go through.

They leave by the run's MOODLE_UNENROL_ACTION (unenrol, keep, suspend, remove_roles) through the
`withdraw_user` activity, after checking, before any removal, that the token has the functions the action
needs. Runs started before the `deploy-removal-by-action` change unenrol through `unenrol_users`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.types import SyncConfig, UnenrolInput, WithdrawInput
    from openvle_moodle_sync.settings import FUNCTIONS_BY_ACTION

from .common import checked, quick, role_ids

REMOVAL_BY_ACTION_PATCH = "deploy-removal-by-action"

REMOVALS_AT_ONCE = 200
"""Removal activities a run keeps pending at once: a deploy that takes thousands away (past the brake)
stays far below Temporal's 2,000 pending activities per run, and Moodle sees no more than a deploy's load."""


def removal_action(config: SyncConfig) -> str:
    """The MOODLE_UNENROL_ACTION a removal uses (shown by the plan)."""
    return config.unenrol_action


async def withdraw_all(course_id: int, leaving: Iterable[tuple[str, int, int]], config: SyncConfig) -> None:
    """Take each (participant id, Moodle user id, role id) away from the course by the run's action.

    Idempotent: each activity reads Moodle before it writes. An action the token cannot finish fails here,
    before the first removal, so it is never half applied."""
    leaving = list(leaving)
    if not workflow.patched(REMOVAL_BY_ACTION_PATCH):
        await asyncio.gather(*(workflow.execute_activity_method(
            MoodleSyncActivities.unenrol_users, UnenrolInput(course_id=course_id, user_ids=[user_id]),
            **quick(config)) for _, user_id, _ in leaving))
        return
    action = removal_action(config)
    if action == "keep":
        return
    if FUNCTIONS_BY_ACTION.get(action):
        await workflow.execute_activity_method(MoodleSyncActivities.check_unenrol_action, action, **quick(config))
    gate = asyncio.Semaphore(REMOVALS_AT_ONCE)

    async def withdraw(pid: str, user_id: int, role_id: int) -> None:
        async with gate:
            await workflow.execute_activity_method(
                MoodleSyncActivities.withdraw_user,
                WithdrawInput(course_id=course_id, user_id=user_id, role_id=role_id, action=action,
                              participant_id=pid, managed_role_ids=list(role_ids(config).values())),
                **checked(config))

    await asyncio.gather(*(withdraw(*person) for person in leaving))
