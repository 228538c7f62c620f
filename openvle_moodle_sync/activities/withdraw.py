"""Taking people away from a course by MOODLE_UNENROL_ACTION, and checking the token can do it.

The actions are those of Moodle's enrol_database plugin ("External unenrol action"):

- ``unenrol``: enrol_manual_unenrol_users. Moodle deletes the person's grades in the course.
- ``keep``: nothing is written.
- ``suspend``: enrol_manual_enrol_users with suspend=1 and the role they hold. The only way the REST API
  allows (core_enrol_submit_user_enrolment_form needs a browser session's sesskey), and Moodle sends its
  course welcome mail on that call once the course has a teacher (MDL-70582).
- ``remove_roles``: core_role_unassign_roles: the enrolment stays, the roles go, no mail.

Each write is preceded by a read, so a retry after a lost answer writes (and mails) nothing twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import activity

from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.moodle.check import available_functions, missing_for_action, missing_for_action_message
from openvle_moodle_sync.moodle.client import EnrolledUser, Enrolment, MoodleClient, RoleAssignment

from .errors import moodle_errors, sync_error
from .types import UnenrolInput, WithdrawInput, WithdrawResult, WithdrawUsersInput

"""Error type of a run whose MOODLE_UNENROL_ACTION needs functions the token lacks (raised before any write)."""

WITHDRAW_BATCH = 500
"""People per write call: 5 form fields each, far below PHP's max_input_vars."""

_DONE_NOTES = {"unenrol": "unenrolled", "suspend": "enrolment suspended (role and data kept)",
               "remove_roles": "roles removed (enrolment and data kept)"}


class WithdrawActivities:
    """The activities of MoodleSyncActivities that take people away (mixed in; needs its client and reads)."""

    moodle: MoodleClient
    _enrolled: Callable[[int], Awaitable[list[EnrolledUser]]]
    unenrol_users: Callable[..., Awaitable[int]]

    @activity.defn
    @moodle_errors
    async def check_unenrol_action(self, action: str) -> None:
        """Fail, before any write, when the token lacks a function the action needs."""
        missing = missing_for_action(action, available_functions(await self.moodle.get_site_info()))
        if missing:
            raise sync_error(missing_for_action_message(action, missing), ErrorType.MISSING_FUNCTIONS,
                             action=action, missing=missing)

    @activity.defn
    @moodle_errors
    async def withdraw_user(self, spec: WithdrawInput) -> WithdrawResult:
        """Take one person away from the course by ``spec.action``."""
        done = await self._withdraw(spec.course_id, [spec.user_id], spec.role_id, spec.action, listed=False,
                                    managed_role_ids=spec.managed_role_ids)
        if spec.action == "keep":
            return WithdrawResult(changed=False, note="kept in Moodle (MOODLE_UNENROL_ACTION is keep)")
        if done:
            return WithdrawResult(changed=True, note=_DONE_NOTES[spec.action])
        return WithdrawResult(changed=False, note={
            "suspend": "not enrolled, or already suspended: nothing to do",
            "remove_roles": "not enrolled, or holds no role: nothing to do",
        }.get(spec.action, "nothing to do"))

    @activity.defn
    @moodle_errors
    async def withdraw_users(self, spec: WithdrawUsersInput) -> int:
        """Take many people away from the course by ``spec.action``; returns how many changed."""
        return await self._withdraw(spec.course_id, spec.user_ids, spec.role_id, spec.action, listed=spec.listed,
                                    managed_role_ids=spec.managed_role_ids)

    async def _withdraw(self, course_id: int, user_ids: list[int], role_id: int, action: str, *,
                        listed: bool, managed_role_ids: list[int] | None = None) -> int:
        """``listed``: the users were just read from the course's enrolments (archive's plan), so
        unenrolling needs no second read; otherwise someone not enrolled is left alone, unwritten."""
        if action == "keep" or not user_ids:
            return 0
        if action == "unenrol" and listed:
            return await self._unenrol(course_id, user_ids)
        wanted = set(user_ids)
        # Only the roles this service gives are taken away or named: a role given by hand (a manager, a
        # non-editing teacher) stays, and Moodle would refuse to unassign one the token cannot assign.
        managed = set(managed_role_ids or [role_id])
        roles = {u["id"]: {r["roleid"] for r in u.get("roles", [])} & managed
                 for u in await self._enrolled(course_id) if u["id"] in wanted}
        if action == "unenrol":
            return await self._unenrol(course_id, list(roles)) if roles else 0
        if action == "suspend":
            suspended = await self.moodle.get_suspended_user_ids(course_id)
            # The role they hold is named again (enrol_manual_enrol_users needs one), so it stays.
            todo = [Enrolment(roleid=role_id if role_id in held or not held else min(held), userid=user_id,
                              courseid=course_id, suspend=1)
                    for user_id, held in roles.items() if user_id not in suspended]
            for start in range(0, len(todo), WITHDRAW_BATCH):
                await self.moodle.enrol_users(todo[start:start + WITHDRAW_BATCH])
                activity.heartbeat(start)
            return len(todo)
        if action == "remove_roles":
            todo_roles = [RoleAssignment(roleid=r, userid=user_id, instanceid=course_id)
                          for user_id, held in roles.items() for r in sorted(held)]
            for start in range(0, len(todo_roles), WITHDRAW_BATCH):
                await self.moodle.unassign_roles(todo_roles[start:start + WITHDRAW_BATCH])
                activity.heartbeat(start)
            return sum(1 for held in roles.values() if held)
        raise sync_error(f"Unknown MOODLE_UNENROL_ACTION {action!r}: use unenrol, keep, suspend or remove_roles.",
                         ErrorType.INVALID_SETTING, action=action)

    async def _unenrol(self, course_id: int, user_ids: list[int]) -> int:
        return await self.unenrol_users(UnenrolInput(course_id=course_id, user_ids=user_ids))
