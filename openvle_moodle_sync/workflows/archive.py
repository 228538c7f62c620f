"""ArchiveEvent: at the event's end, students leave the course, instructors stay, the course is hidden."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.roster import RosterUpdate
    from openvle_moodle_sync.activities.types import (
        ArchivePlanInput,
        SyncConfig,
        UnenrolInput,
        WithdrawUsersInput,
    )
    from openvle_moodle_sync.activities.withdraw import UNENROL_BATCH, WithdrawActivities
    from openvle_moodle_sync.contracts import PROGRESS_QUERY
    from openvle_moodle_sync.models import Role
    from openvle_moodle_sync.settings import ENROLMENT_KEPT_ACTIONS, FUNCTIONS_BY_ACTION, UnenrolAction

from .common import load_config, quick, role_ids, skip_reason, slow, wait_for_deployment
from .roster import ROSTER_PATCH, record_roster
from .types import ArchiveResult, EventRef, Progress

UNENROL_ACTION_PATCH = "unenrol-action"
"""Students leave by MOODLE_UNENROL_ACTION (withdraw_users, after checking the token can do it). Runs
started before it unenrol them as they always did."""


@workflow.defn(name="ArchiveEvent")
class ArchiveEvent:
    def __init__(self) -> None:
        self._result = ArchiveResult(event_id="")
        self._stage = "starting"
        self._students = 0

    @workflow.run
    async def run(self, event: EventRef) -> ArchiveResult:
        result = self._result = ArchiveResult(event_id=event.event_id)
        config = await load_config()
        result.skipped_reason = skip_reason(config, event.moodle_course_id)
        if result.skipped_reason:
            return result
        self._set_stage("waiting for the event's deployment to finish")
        await wait_for_deployment(event.event_id, config)
        course = await workflow.execute_activity_method(
            MoodleSyncActivities.find_event_course, event.event_id, **quick(config)
        )
        if course is None:
            result.skipped_reason = (f"no Moodle course carries event {event.event_id}'s mark (never deployed, "
                                     "or deleted in Moodle); nothing to archive")
            return result
        result.course_id = course.id
        by_action = workflow.patched(UNENROL_ACTION_PATCH)
        if by_action:
            result.unenrol_action = config.unenrol_action
            if FUNCTIONS_BY_ACTION.get(config.unenrol_action):
                # Before any write: an action the token cannot finish must not be half applied.
                await workflow.execute_activity_method(
                    WithdrawActivities.check_unenrol_action, config.unenrol_action, **quick(config)
                )
        self._set_stage("reading the course's enrolments")
        plan = await workflow.execute_activity_method(
            MoodleSyncActivities.plan_archive,
            ArchivePlanInput(course_id=course.id, student_role_id=config.student_role_id,
                             instructor_role_id=config.instructor_role_id),
            **slow(config),
        )
        result.instructors_kept = plan.instructors_kept
        self._students = len(plan.student_user_ids)
        if by_action:
            await self._withdraw_students(plan.student_user_ids, course.id, config)
        else:
            await self._unenrol_students(plan.student_user_ids, course.id, config)
        kept = by_action and config.unenrol_action == UnenrolAction.KEEP  # still enrolled: the roster keeps them
        # The students are gone (the roster forgets them), or suspended or without roles (it marks them withdrawn).
        if workflow.patched(ROSTER_PATCH) and not kept:
            await record_roster(event.event_id, RosterUpdate(
                drop_role=Role.STUDENT, withdrawn=by_action and config.unenrol_action in ENROLMENT_KEPT_ACTIONS),
                config)
        self._set_stage("hiding the course")
        await workflow.execute_activity_method(MoodleSyncActivities.hide_course, course.id, **quick(config))
        result.hidden = True
        self._set_stage("done")
        return result

    async def _withdraw_students(self, user_ids: list[int], course_id: int, config: SyncConfig) -> None:
        action, result = config.unenrol_action, self._result
        if action == UnenrolAction.KEEP:
            return
        self._set_stage(f"taking {self._students} students away ({action})")
        for start in range(0, len(user_ids), UNENROL_BATCH):
            changed = await workflow.execute_activity_method(
                WithdrawActivities.withdraw_users,
                WithdrawUsersInput(course_id=course_id, user_ids=user_ids[start:start + UNENROL_BATCH],
                                   role_id=config.student_role_id, action=action,
                                   managed_role_ids=list(role_ids(config).values())),
                **slow(config),
            )
            result.students_withdrawn += changed
            if action == UnenrolAction.UNENROL:
                result.students_unenrolled += changed

    async def _unenrol_students(self, user_ids: list[int], course_id: int, config: SyncConfig) -> None:
        result = self._result
        self._set_stage(f"unenrolling {self._students} students")
        for start in range(0, len(user_ids), UNENROL_BATCH):
            batch = user_ids[start:start + UNENROL_BATCH]
            await workflow.execute_activity_method(
                WithdrawActivities.unenrol_users, UnenrolInput(course_id=course_id, user_ids=batch),
                **slow(config),
            )
            result.students_unenrolled += len(batch)

    def _set_stage(self, stage: str) -> None:
        self._stage = stage
        workflow.set_current_details(f"Event {self._result.event_id} archive: {stage}")

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        r = self._result
        return Progress(workflow_id=workflow.info().workflow_id, kind="archive", event_id=r.event_id,
                        stage=self._stage, course_id=r.course_id, total=self._students,
                        done=max(r.students_unenrolled, r.students_withdrawn))
