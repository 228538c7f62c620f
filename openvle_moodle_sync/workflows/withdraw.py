"""Taking the people a deploy no longer lists away from the course: the one place its removals go through.

They leave by the run's MOODLE_UNENROL_ACTION (unenrol, keep, suspend, remove_roles) through the
`withdraw_users` activity, in batches, after checking, before any removal, that the token has the
functions the action needs. Runs started before the `deploy-removal-by-action` change unenrol through
`unenrol_users`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.types import SyncConfig, UnenrolInput, WithdrawUsersInput
    from openvle_moodle_sync.activities.withdraw import WITHDRAW_BATCH, WithdrawActivities
    from openvle_moodle_sync.settings import FUNCTIONS_BY_ACTION, UnenrolAction

from . import summaries
from .common import quick, role_ids, slow

REMOVAL_BY_ACTION_PATCH = "deploy-removal-by-action"


async def withdraw_all(course_id: int, leaving: Iterable[tuple[str, int, int]], config: SyncConfig) -> None:
    """Take each (participant id, Moodle user id, role id) away from the course by the run's action.

    Idempotent: each activity reads the course before it writes. An action the token cannot finish fails here,
    before the first removal, so it is never half applied."""
    leaving = list(leaving)
    if not workflow.patched(REMOVAL_BY_ACTION_PATCH):
        await asyncio.gather(*(workflow.execute_activity_method(
            WithdrawActivities.unenrol_users, UnenrolInput(course_id=course_id, user_ids=[user_id]),
            **quick(config)) for _, user_id, _ in leaving))
        return
    action = config.unenrol_action
    if action == UnenrolAction.KEEP:
        return
    if FUNCTIONS_BY_ACTION.get(action):
        await workflow.execute_activity_method(WithdrawActivities.check_unenrol_action, action, **quick(config))
    # One activity per WITHDRAW_BATCH people of one role, one after the other: a few events per batch in
    # the run's history (thousands leaving stay far from its limits) and one read of the course per batch.
    by_role: dict[int, list[int]] = {}
    for _, user_id, role_id in leaving:
        by_role.setdefault(role_id, []).append(user_id)
    for role_id, user_ids in sorted(by_role.items()):
        for start in range(0, len(user_ids), WITHDRAW_BATCH):
            batch = user_ids[start:start + WITHDRAW_BATCH]
            await workflow.execute_activity_method(
                WithdrawActivities.withdraw_users,
                WithdrawUsersInput(course_id=course_id, user_ids=batch, role_id=role_id, action=action,
                                   managed_role_ids=list(role_ids(config).values()), listed=False),
                summary=summaries.withdraw(f"{len(batch)} people no longer listed", action), **slow(config))
