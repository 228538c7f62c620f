"""Taking people away from the course by the run's MOODLE_UNENROL_ACTION (unenrol, keep, suspend,
remove_roles): the one place a deploy's and an archive's removals go through, in `withdraw_users` activities
of at most PEOPLE_PER_ACTIVITY people each, after checking, before any removal, that the token has the
functions the action needs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.types import SyncConfig, WithdrawUsersInput
    from openvle_moodle_sync.activities.withdraw import WithdrawActivities
    from openvle_moodle_sync.settings import FUNCTIONS_BY_ACTION, UnenrolAction

from . import summaries
from .common import quick, slow

PEOPLE_PER_ACTIVITY = 500
"""People one `withdraw_users` activity takes away (one course read and a few calls each): a few history
events per 500 people, so thousands leaving stay far from a run's limits."""


async def check_action(config: SyncConfig) -> None:
    """Fail before any write when the token lacks a function the run's action needs: never half applied."""
    if FUNCTIONS_BY_ACTION.get(config.unenrol_action):
        await workflow.execute_activity_method(
            WithdrawActivities.check_unenrol_action, config.unenrol_action, **quick(config))


async def withdraw_users(course_id: int, user_ids: Sequence[int], role_id: int, config: SyncConfig, *,
                         listed: bool, summary: str | None = None,
                         progress: Callable[[int], None] | None = None) -> int:
    """Take ``user_ids`` (holding ``role_id``) away from the course by the run's action, one activity per
    PEOPLE_PER_ACTIVITY people, one after the other; the number of people changed. ``listed``: they are still
    in the event's list (archive), not leaving it (deploy); ``progress`` is told the count after each
    activity. Idempotent: each activity reads before it writes."""
    changed = 0
    for start in range(0, len(user_ids), PEOPLE_PER_ACTIVITY):
        batch = list(user_ids[start:start + PEOPLE_PER_ACTIVITY])
        changed += await workflow.execute_activity_method(
            WithdrawActivities.withdraw_users,
            WithdrawUsersInput(course_id=course_id, user_ids=batch, role_id=role_id, action=config.unenrol_action,
                               managed_role_ids=list(config.role_ids.values()), listed=listed),
            summary=summary and summaries.withdraw(summary.format(n=len(batch)), config.unenrol_action),
            **slow(config))
        if progress:
            progress(changed)
    return changed


async def withdraw_leavers(course_id: int, leaving: Sequence[tuple[int, int]], config: SyncConfig) -> None:
    """Take each (Moodle user id, role id) no longer listed away from the course by the run's action."""
    if config.unenrol_action == UnenrolAction.KEEP:
        return
    await check_action(config)
    by_role: dict[int, list[int]] = {}
    for user_id, role_id in leaving:
        by_role.setdefault(role_id, []).append(user_id)
    for role_id, user_ids in sorted(by_role.items()):
        await withdraw_users(course_id, user_ids, role_id, config, listed=False,
                             summary="{n} people no longer listed")
