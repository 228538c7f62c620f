"""ArchiveEvent: at the event's end, students leave the course (by MOODLE_UNENROL_ACTION), instructors stay,
the course is hidden."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.roster import RosterUpdate
    from openvle_moodle_sync.activities.types import ArchivePlanInput
    from openvle_moodle_sync.contracts import PROGRESS_QUERY
    from openvle_moodle_sync.models import Role
    from openvle_moodle_sync.settings import ENROLMENT_KEPT_ACTIONS, UnenrolAction

from .common import event_course, quick, slow, with_root_cause
from .roster import record_roster
from .types import ArchiveResult, EventRef, Progress
from .withdraw import check_action, withdraw_users


@workflow.defn(name="ArchiveEvent")
class ArchiveEvent:
    def __init__(self) -> None:
        self._result = ArchiveResult(event_id="")
        self._stage = "starting"
        self._students = 0

    @workflow.run
    async def run(self, event: EventRef) -> ArchiveResult:
        return await with_root_cause(self._archive(event), f"Archive of event {event.event_id}")

    async def _archive(self, event: EventRef) -> ArchiveResult:
        result = self._result = ArchiveResult(event_id=event.event_id)
        start = await event_course(event.event_id, event.moodle_course_id)
        config, course, result.skipped_reason = start.config, start.course, start.skipped_reason
        if result.skipped_reason:
            return result
        if course is None:
            result.skipped_reason = (f"no Moodle course carries event {event.event_id}'s mark (deleted in "
                                     "Moodle?); nothing to archive")
            return result
        result.course_id, result.unenrol_action = course.id, config.unenrol_action
        await check_action(config)  # before any write: an action the token cannot finish is never half applied
        self._set_stage("reading the course's enrolments")
        plan = await workflow.execute_activity_method(
            MoodleSyncActivities.plan_archive,
            ArchivePlanInput(course_id=course.id, student_role_id=config.student_role_id,
                             instructor_role_id=config.instructor_role_id),
            **slow(config),
        )
        result.instructors_kept = plan.instructors_kept
        self._students = len(plan.student_user_ids)
        if config.unenrol_action != UnenrolAction.KEEP:
            self._set_stage(f"taking {self._students} students away ({config.unenrol_action})")
            await withdraw_users(course.id, plan.student_user_ids, config.student_role_id, config, listed=True,
                                 progress=self._withdrawn)
            # The students are gone (the roster forgets them), or suspended or without roles (it marks them
            # withdrawn). Under keep they are still enrolled, and the roster keeps them.
            await record_roster(event.event_id, RosterUpdate(
                drop_role=Role.STUDENT, withdrawn=config.unenrol_action in ENROLMENT_KEPT_ACTIONS))
        self._set_stage("hiding the course")
        await workflow.execute_activity_method(MoodleSyncActivities.hide_course, course.id, **quick(config))
        result.hidden = True
        self._set_stage("done")
        return result

    def _withdrawn(self, count: int) -> None:
        self._result.students_withdrawn = count
        if self._result.unenrol_action == UnenrolAction.UNENROL:
            self._result.students_unenrolled = count

    def _set_stage(self, stage: str) -> None:
        self._stage = stage
        workflow.set_current_details(f"Event {self._result.event_id} archive: {stage}")

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        r = self._result
        return Progress(workflow_id=workflow.info().workflow_id, kind="archive", event_id=r.event_id,
                        stage=self._stage, course_id=r.course_id, total=self._students,
                        done=max(r.students_unenrolled, r.students_withdrawn))
