"""Taking one person the service enrolled away from a course: the one place a deploy's removals go through.

MOODLE_UNENROL_ACTION (unenrol, keep, suspend, remove_roles) and its activity `withdraw_user` come with
the unenrol-action change; until then the action is `unenrol`, through the existing `unenrol_users`.
Switching both functions below is all a deploy needs."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.types import SyncConfig, UnenrolInput

from .common import quick


def removal_action(config: SyncConfig) -> str:
    """The MOODLE_UNENROL_ACTION a removal uses (shown by the plan)."""
    return "unenrol"


async def withdraw(course_id: int, user_id: int, role_id: int, participant_id: str, config: SyncConfig) -> None:
    """Take the participant's Moodle user away from the course by the run's removal action (idempotent)."""
    await workflow.execute_activity_method(
        MoodleSyncActivities.unenrol_users, UnenrolInput(course_id=course_id, user_ids=[user_id]), **quick(config))
