"""Taking people away from a course by MOODLE_UNENROL_ACTION, and checking the token can do it.

The actions are those of Moodle's enrol_database plugin ("External unenrol action"), `UnenrolAction`:

- ``unenrol``: enrol_manual_unenrol_users. Moodle deletes the person's grades in the course.
- ``keep``: nothing is written.
- ``suspend``: enrol_manual_enrol_users with suspend=1 and the role they hold. The only way the REST API
  allows (core_enrol_submit_user_enrolment_form needs a browser session's sesskey), and Moodle sends its
  course welcome mail on that call once the course has a teacher (MDL-70582).
- ``remove_roles``: core_role_unassign_roles: the enrolment stays, the roles go, no mail.

Each write is preceded by a read, so a retry after a lost answer writes (and mails) nothing twice; whom
to write for is `decide`'s answer.
"""

from __future__ import annotations

import logging

from temporalio import activity

from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.moodle.check import available_functions, missing_for_action, missing_for_action_message
from openvle_moodle_sync.moodle.client import FORM_FIELDS_PER_CALL, Enrolment, MoodleClient, RoleAssignment
from openvle_moodle_sync.moodle.errors import InvalidParameterError
from openvle_moodle_sync.settings import UnenrolAction

from .decide import InCourse, Need, Person, Rules, decide
from .errors import moodle_errors, sync_error
from .reads import enrolled_users, roles_of
from .types import UnenrolInput, WithdrawInput, WithdrawResult, WithdrawUsersInput

log = logging.getLogger("activities")

WITHDRAW_BATCH = FORM_FIELDS_PER_CALL // 5
"""People per suspend (roleid, userid, courseid, suspend, timestart) or role-removal call."""

UNENROL_BATCH = FORM_FIELDS_PER_CALL // 3
"""Enrolments per enrol_manual_unenrol_users call (userid, courseid, roleid)."""

_DONE_NOTES = {UnenrolAction.UNENROL: "unenrolled", UnenrolAction.SUSPEND: "enrolment suspended (role and data kept)",
               UnenrolAction.REMOVE_ROLES: "roles removed (enrolment and data kept)"}
_NOTHING_NOTES = {UnenrolAction.SUSPEND: "not enrolled, or already suspended: nothing to do",
                  UnenrolAction.REMOVE_ROLES: "not enrolled, or holds no role: nothing to do"}


class WithdrawActivities:
    """The activities that take people away from a course, bound to one Moodle client."""

    def __init__(self, moodle: MoodleClient) -> None:
        self.moodle = moodle

    @activity.defn
    @moodle_errors
    async def check_unenrol_action(self, action: UnenrolAction) -> None:
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
        if spec.action == UnenrolAction.KEEP:
            return WithdrawResult(changed=False, note="kept in Moodle (MOODLE_UNENROL_ACTION is keep)")
        if done:
            return WithdrawResult(changed=True, note=_DONE_NOTES[spec.action])
        return WithdrawResult(changed=False, note=_NOTHING_NOTES.get(spec.action, "nothing to do"))

    @activity.defn
    @moodle_errors
    async def withdraw_users(self, spec: WithdrawUsersInput) -> int:
        """Take many people away from the course by ``spec.action``; returns how many changed."""
        return await self._withdraw(spec.course_id, spec.user_ids, spec.role_id, spec.action, listed=spec.listed,
                                    managed_role_ids=spec.managed_role_ids)

    @activity.defn
    @moodle_errors
    async def unenrol_users(self, spec: UnenrolInput) -> int:
        """Unenrol users (idempotent). Batched; a batch Moodle rejects whole is retried user by user so
        that one account deleted meanwhile does not block the others. Returns how many were unenrolled."""
        done = 0
        for start in range(0, len(spec.user_ids), UNENROL_BATCH):
            batch = spec.user_ids[start:start + UNENROL_BATCH]
            try:
                await self.moodle.unenrol_users([{"userid": u, "courseid": spec.course_id} for u in batch])
                done += len(batch)
            except InvalidParameterError:
                for user_id in batch:
                    try:
                        await self.moodle.unenrol_users([{"userid": user_id, "courseid": spec.course_id}])
                        done += 1
                    except InvalidParameterError:
                        log.warning("user %s no longer exists in Moodle; nothing to unenrol", user_id)
            activity.heartbeat(start)
        return done

    async def _withdraw(self, course_id: int, user_ids: list[int], role_id: int, action: UnenrolAction, *,
                        listed: bool, managed_role_ids: list[int]) -> int:
        """``listed``: the users were just read from the course's enrolments (archive's plan), so
        unenrolling needs no second read; otherwise someone not enrolled is left alone, unwritten."""
        if action == UnenrolAction.KEEP or not user_ids:
            return 0
        if action == UnenrolAction.UNENROL and listed:
            return await self.unenrol_users(UnenrolInput(course_id=course_id, user_ids=user_ids))
        wanted = set(user_ids)
        # Only the roles this service gives are taken away or named: a role given by hand (a manager, a
        # non-editing teacher) stays, and Moodle would refuse to unassign one the token cannot assign.
        managed = frozenset(managed_role_ids)
        roles = {u["id"]: roles_of(u) for u in await enrolled_users(self.moodle, course_id) if u["id"] in wanted}
        suspended = await self.moodle.get_suspended_user_ids(course_id) if action == UnenrolAction.SUSPEND else set()
        rules = Rules(managed, action=action)
        todo = {user_id: decision for user_id, held in roles.items()
                if (decision := decide(Person(True, InCourse(held, user_id in suspended), None, ours=True),
                                       rules)).need is Need.TAKE_AWAY}
        if action == UnenrolAction.UNENROL:
            return await self.unenrol_users(UnenrolInput(course_id=course_id, user_ids=list(todo))) if todo else 0
        if action == UnenrolAction.SUSPEND:
            # The role they hold is named again (enrol_manual_enrol_users needs one), so it stays.
            enrolments = [Enrolment(roleid=role_id if role_id in held or not held else min(held), userid=user_id,
                                    courseid=course_id, suspend=1)
                          for user_id in todo for held in [roles[user_id] & managed]]
            for start in range(0, len(enrolments), WITHDRAW_BATCH):
                await self.moodle.enrol_users(enrolments[start:start + WITHDRAW_BATCH])
                activity.heartbeat(start)
            return len(enrolments)
        assignments = [RoleAssignment(roleid=r, userid=user_id, instanceid=course_id)
                       for user_id, decision in todo.items() for r in sorted(decision.take_roles)]
        for start in range(0, len(assignments), WITHDRAW_BATCH):
            await self.moodle.unassign_roles(assignments[start:start + WITHDRAW_BATCH])
            activity.heartbeat(start)
        return len(todo)
