"""Create-and-enrol of a share of an event's participants: one activity pair per participant.

Runs inside DeployEvent for small events, and as the child workflow `DeployBatch` for large ones, so
that no single history grows past a few thousand events whatever the size of the event."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.types import EnrolInput, EnsureUserInput
    from openvle_moodle_sync.contracts import PROGRESS_QUERY, STUDENTS_SETTLED_SIGNAL
    from openvle_moodle_sync.failures import describe_failure
    from openvle_moodle_sync.models import Participant, Role

from . import summaries
from .common import is_configuration_error, per_user
from .types import BatchInput, BatchResult, ParticipantOutcome, SubtaskState

BATCH_SIZE = 500
"""Participants per child workflow: about 3,500 history events each, 500 activities pending at most."""

BATCHES_AT_ONCE = 4
"""Child workflows of one deployment running at the same time."""


async def sync_participants(batch: BatchInput, status: dict[str, ParticipantOutcome],
                            students_elsewhere_settled: Callable[[], bool] = lambda: True) -> None:
    """Ensure each participant's account and enrolment; a participant that fails fails alone.

    Every account is looked up or created at once; an instructor is enrolled only once every student of
    the batch is settled, and those of other shares (``students_elsewhere_settled``; see DeployEvent on
    welcome mails). A configuration error (bad token, missing function) is raised: no participant could
    succeed."""
    options = per_user(batch.sync_timeout_s, batch.retry_max_interval_s)
    students_unsettled = sum(1 for p in batch.participants if p.role == Role.STUDENT)

    async def one(p: Participant) -> None:
        nonlocal students_unsettled
        outcome = status[p.id]
        outcome.state = SubtaskState.RUNNING
        role_id = batch.role_ids[p.role]
        try:
            user_id = batch.known_users.get(p.id)
            if user_id is None:
                user = await workflow.execute_activity_method(
                    MoodleSyncActivities.ensure_user,
                    EnsureUserInput(participant=p, known_missing=batch.looked_up, match_field=batch.match_field,
                                    user_auth=batch.user_auth),
                    # After the bulk look-up only the missing accounts get here: a creation.
                    summary=(summaries.create_account(p) if batch.looked_up
                             else summaries.find_or_create_account(p)), **options,
                )
                user_id, outcome.user_created = user.user_id, user.created
            outcome.moodle_user_id = user_id
            if p.role == Role.INSTRUCTOR:
                await workflow.wait_condition(lambda: students_unsettled == 0 and students_elsewhere_settled())
            enrolled = await workflow.execute_activity_method(
                MoodleSyncActivities.enrol_user,
                EnrolInput(
                    course_id=batch.course_id,
                    user_id=user_id,
                    role_id=role_id,
                    # On a course this run made, nobody can hold another role yet and no teacher can
                    # trigger welcome mails before the instructor phase: no checks needed. On an existing
                    # course only those the plan found with another role need their enrolment re-made.
                    other_role_ids=[r for r in batch.role_ids.values() if r != role_id]
                    if p.id in batch.role_changes else [],
                    participant_id=p.id,
                    # Students of a course this run made are enrolled before any teacher, so no welcome
                    # mail can go out and a retry needs no check; from the second instructor on, Moodle
                    # mails each one, so their retries check first.
                    course_may_have_teacher=not (batch.fresh_course and p.role == Role.STUDENT),
                ),
                summary=summaries.enrol(p), **options,
            )
            outcome.enrolled = enrolled.enrolled
            outcome.state = SubtaskState.DONE
        except ActivityError as error:
            if is_configuration_error(error):
                raise
            failure = describe_failure(error)
            message, kind = failure.message, failure.type
            outcome.state, outcome.error, outcome.error_type = SubtaskState.FAILED, f"{p.label}: {message}", kind
        finally:
            if p.role == Role.STUDENT:
                students_unsettled -= 1

    await asyncio.gather(*(one(p) for p in batch.participants))


@workflow.defn(name="DeployBatch")
class DeployBatch:
    """Child of DeployEvent for large events: one share of the participants."""

    def __init__(self) -> None:
        self._status: dict[str, ParticipantOutcome] = {}
        self._students_settled = False

    @workflow.run
    async def run(self, batch: BatchInput) -> BatchResult:
        self._status = {
            p.id: ParticipantOutcome(id=p.id, role=str(p.role)) for p in batch.participants
        }
        await sync_participants(batch, self._status,
                                lambda: self._students_settled or not batch.students_elsewhere)
        return BatchResult(participants=list(self._status.values()))

    @workflow.signal(name=STUDENTS_SETTLED_SIGNAL)
    def students_settled(self) -> None:
        self._students_settled = True

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> list[ParticipantOutcome]:
        return list(self._status.values())
