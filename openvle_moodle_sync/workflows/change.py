"""ChangeParticipant: a participant added to or removed from an active event."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.types import (
        EnrolInput,
        EnsureUserInput,
        FindUserInput,
        SyncConfig,
        UnenrolInput,
    )
    from openvle_moodle_sync.models import Role

from . import summaries
from .common import checked, load_config, quick, skip_reason, wait_for_deployment
from .types import Action, ChangeOutcome, ChangeRequest, ChangeResult, Progress


@workflow.defn(name="ChangeParticipant")
class ChangeParticipant:
    """All changes of one participant of one event, in the order they were requested.

    The starter sends each change as a signal to the workflow of that participant (signal-with-start),
    so changes for one person queue up instead of racing, and only the latest requested state is
    applied once the previous one is done. Changes wait until the event's deployment has finished."""

    def __init__(self) -> None:
        self._requests: list[ChangeRequest] = []
        self._applied: list[ChangeOutcome] = []
        self._stage = "starting"
        self._event_id = ""

    @workflow.signal
    def request(self, change: ChangeRequest) -> None:
        self._requests.append(change)

    @workflow.run
    async def run(self, first: ChangeRequest) -> ChangeResult:
        self._event_id = first.event_id
        result = ChangeResult(event_id=first.event_id, participant_id=first.participant.id,
                              applied=self._applied)
        if not self._requests:  # started without the signal (e.g. from the Temporal UI)
            self._requests.append(first)
        config = await load_config()
        result.skipped_reason = skip_reason(config, first.moodle_course_id)
        if result.skipped_reason:
            return result

        self._stage = "waiting for the event's deployment to finish"
        await wait_for_deployment(first.event_id, config)
        course = await workflow.execute_activity_method(
            MoodleSyncActivities.find_event_course, first.event_id, **quick(config)
        )
        if course is None:
            raise ApplicationError(
                f"Event {first.event_id} has no Moodle course yet (no course carries its mark), so participant "
                f"{first.participant.id} cannot be {'enrolled' if first.action == Action.ADD else 'unenrolled'}. "
                "Deploy the event first (python -m starter deploy).",
                type="EventNotDeployedError", non_retryable=True,
            )
        # Apply only the latest wish: earlier ones still queued are superseded by it.
        while self._requests:
            change = self._requests[-1]
            self._requests.clear()
            self._stage = f"{change.action} {change.participant.id}"
            workflow.set_current_details(f"Event {change.event_id}: {self._stage} (Moodle course {course.id})")
            self._applied.append(await self._apply(change, course.id, config))
            await workflow.wait_condition(workflow.all_handlers_finished)
        self._stage = "done"
        return result

    async def _apply(self, change: ChangeRequest, course_id: int, config: SyncConfig) -> ChangeOutcome:
        p = change.participant
        outcome = ChangeOutcome(action=change.action, participant_id=p.id, course_id=course_id)
        if change.action == Action.ADD:
            user = await workflow.execute_activity_method(
                MoodleSyncActivities.ensure_user, EnsureUserInput(participant=p),
                summary=summaries.find_or_create_account(p), **quick(config),
            )
            roles = {Role.STUDENT: config.student_role_id, Role.INSTRUCTOR: config.instructor_role_id}
            enrolled = await workflow.execute_activity_method(
                MoodleSyncActivities.enrol_user,
                EnrolInput(course_id=course_id, user_id=user.user_id, role_id=roles[p.role],
                           other_role_ids=[r for r in roles.values() if r != roles[p.role]],
                           participant_id=p.id, course_may_have_teacher=True),
                summary=summaries.enrol(p), **checked(config),
            )
            outcome.moodle_user_id, outcome.changed = user.user_id, enrolled.enrolled
            outcome.note = ("created in Moodle and " if user.created else "") + (
                f"enrolled as {p.role}" if enrolled.enrolled else f"already enrolled as {p.role}")
        else:
            user_id = await workflow.execute_activity_method(
                MoodleSyncActivities.find_user, FindUserInput(participant=p),
                summary=summaries.find_account(p), **quick(config),
            )
            outcome.moodle_user_id = user_id
            if user_id is None:
                outcome.note = "no matching Moodle account: nothing to unenrol"
            else:
                await workflow.execute_activity_method(
                    MoodleSyncActivities.unenrol_users, UnenrolInput(course_id=course_id, user_ids=[user_id]),
                    summary=summaries.unenrol(p), **quick(config),
                )
                outcome.changed, outcome.note = True, "unenrolled"
        return outcome

    @workflow.query
    def progress(self) -> Progress:
        return Progress(workflow_id=workflow.info().workflow_id, kind="participant", event_id=self._event_id,
                        stage=self._stage, total=1, done=len(self._applied))
