"""DeployEvent: the event's Moodle course, copied from the template, holding exactly its participants."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.types import FindUsersInput, MatchKey, PlanInput, PrepareCourseInput, SyncConfig
    from openvle_moodle_sync.contracts import PROGRESS_QUERY, ErrorType
    from openvle_moodle_sync.models import Event, Participant, Role

from . import ids
from .batch import BATCH_SIZE, BATCHES_AT_ONCE, DeployBatch, sync_participants
from .common import as_run_failure, load_config, role_ids, skip_reason, slow
from .types import (
    BatchInput,
    BatchResult,
    DeployInput,
    DeployResult,
    ParticipantOutcome,
    Progress,
    SubtaskState,
)


@workflow.defn(name="DeployEvent")
class DeployEvent:
    """Event start: duplicate the template, then create and enrol every participant.

    Students are enrolled before instructors: Moodle mails a welcome to every student enrolled into a
    course that has a teacher, on every enrol call, so enrolling students first means a deployment and
    its retries send no welcome mail at all."""

    def __init__(self) -> None:
        self._event_id = ""
        self._stage = "starting"
        self._course_id: int | None = None
        self._status: dict[str, ParticipantOutcome] = {}
        self._batches_running: list[str] = []

    @workflow.run
    async def run(self, request: DeployInput) -> DeployResult:
        try:
            return await self._deploy(request.event)
        except (ActivityError, ChildWorkflowError) as error:
            raise as_run_failure(error, f"Deployment of event {request.event.id}") from error

    async def _deploy(self, event: Event) -> DeployResult:
        self._event_id = event.id
        self._status = {p.id: ParticipantOutcome(id=p.id, role=str(p.role)) for p in event.participants}
        config = await load_config()
        reason = skip_reason(config, event.moodle_course_id)
        if reason or event.moodle_course_id is None:
            return self._skipped(reason or "")

        self._set_stage("duplicating the template course")
        course = await workflow.execute_activity_method(
            MoodleSyncActivities.prepare_course,
            PrepareCourseInput(event_id=event.id, name=event.name, slug=event.slug,
                               template_course_id=event.moodle_course_id, visible=config.course_visible),
            **slow(config),
        )
        self._course_id = course.id

        role_changes: list[str] = []
        if not course.created and event.participants:
            self._set_stage("reading the course's enrolments")
            plan = await workflow.execute_activity_method(
                MoodleSyncActivities.plan_deployment,
                PlanInput(course_id=course.id, match_field=config.match_field, keys=[
                    MatchKey(p.id, p.username, p.email, role_ids(config)[p.role]) for p in event.participants
                ], managed_role_ids=list(role_ids(config).values())),
                **slow(config),
            )
            for participant_id, user_id in plan.done.items():
                outcome = self._status[participant_id]
                outcome.state, outcome.moodle_user_id = SubtaskState.DONE, user_id
            role_changes = plan.role_changes

        todo = [p for p in event.participants if self._status[p.id].state == SubtaskState.PENDING]
        known: dict[str, int] = {}
        looked_up = bool(todo) and workflow.patched("bulk-user-lookup")
        if looked_up:
            # One call per hundred participants finds the existing accounts; only the missing ones get
            # a create activity, and nobody a look-up of their own.
            self._set_stage("looking up the participants' Moodle accounts")
            found = await workflow.execute_activity_method(
                MoodleSyncActivities.find_users,
                FindUsersInput(keys=[MatchKey(p.id, p.username, p.email, 0) for p in todo],
                               match_field=config.match_field),
                **slow(config),
            )
            known = found.user_ids
        if len(todo) <= BATCH_SIZE and workflow.patched("instructor-accounts-alongside-students"):
            # One share: instructors' accounts are made while the students are enrolled; only their
            # enrolment waits for the students (sync_participants).
            self._set_stage("creating accounts and enrolling, students before instructors")
            await self._sync(event, todo, "participants", course.created, role_changes, config, many=False,
                             known=known, looked_up=looked_up)
        else:
            for role in (Role.STUDENT, Role.INSTRUCTOR):
                group = [p for p in todo if p.role == role]
                if group:
                    self._set_stage(f"enrolling {role}s")
                    await self._sync(event, group, f"{role}s", course.created, role_changes, config,
                                     many=len(todo) > BATCH_SIZE, known=known, looked_up=looked_up)

        result = DeployResult(
            event_id=event.id, course_id=course.id, course_shortname=course.shortname,
            course_created=course.created, total=len(self._status),
            done=self._count(SubtaskState.DONE), failed=self._count(SubtaskState.FAILED),
            participants=list(self._status.values()),
        )
        if result.failed:
            self._set_stage(f"finished with {result.failed} failed participant(s)")
            first = next(o for o in result.participants if o.state == SubtaskState.FAILED)
            raise ApplicationError(
                f"{result.failed} of {result.total} participants could not be synchronised to Moodle course "
                f"{course.id}; the others are done. First error: {first.error} Fix the cause, then re-run the "
                "deployment (python -m starter rerun --event-id ...): it only does what is missing.",
                result, type=ErrorType.DEPLOYMENT_INCOMPLETE, non_retryable=True,
            )
        self._set_stage("done")
        return result

    async def _sync(self, event: Event, group: Sequence[Participant], label: str, fresh: bool,
                    role_changes: list[str], config: SyncConfig, *, many: bool, known: dict[str, int],
                    looked_up: bool) -> None:
        course_id = self._course_id
        assert course_id is not None

        def batch_of(participants: Sequence[Participant]) -> BatchInput:
            return BatchInput(
                event_id=event.id, course_id=course_id, participants=list(participants),
                role_ids=role_ids(config), fresh_course=fresh, role_changes=[
                    p.id for p in participants if p.id in role_changes],
                known_users={p.id: known[p.id] for p in participants if p.id in known}, looked_up=looked_up,
                match_field=config.match_field, user_auth=config.user_auth,
                sync_timeout_s=config.sync_timeout_s, retry_max_interval_s=config.retry_max_interval_s,
            )

        if not many:
            await sync_participants(batch_of(group), self._status)
            return
        # A few shares at a time keep the worker's caches (and memory) bounded; more would not be faster,
        # as the activity slots are already full.
        running = asyncio.Semaphore(BATCHES_AT_ONCE)

        async def child(index: int, share: Sequence[Participant]) -> None:
            await running.acquire()
            child_id = ids.batch_id(event.id, label, index)
            self._batches_running.append(child_id)
            for p in share:
                self._status[p.id].state = SubtaskState.RUNNING
            try:
                result: BatchResult = await workflow.execute_child_workflow(
                    DeployBatch.run, batch_of(share), id=child_id,
                    static_summary=f"Event {event.id}: {len(share)} {label} (batch {index + 1})",
                    search_attributes=TypedSearchAttributes([SearchAttributePair(ids.EVENT_ID_ATTRIBUTE, event.id)]),
                )
            finally:
                self._batches_running.remove(child_id)
                running.release()
            for outcome in result.participants:
                self._status[outcome.id] = outcome
            self._set_stage(self._stage)

        shares = [group[i:i + BATCH_SIZE] for i in range(0, len(group), BATCH_SIZE)]
        await asyncio.gather(*(child(i, share) for i, share in enumerate(shares)))

    def _skipped(self, reason: str) -> DeployResult:
        for outcome in self._status.values():
            outcome.state = SubtaskState.SKIPPED
        self._set_stage(f"skipped: {reason}")
        return DeployResult(event_id=self._event_id, skipped_reason=reason, total=len(self._status),
                            participants=list(self._status.values()))

    def _count(self, state: SubtaskState) -> int:
        return sum(1 for o in self._status.values() if o.state == state)

    def _set_stage(self, stage: str) -> None:
        self._stage = stage
        workflow.set_current_details(
            f"Event {self._event_id}: {stage}"
            + (f" (Moodle course {self._course_id})" if self._course_id else "")
            + f"; {self._count(SubtaskState.DONE)}/{len(self._status)} participants done"
        )

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        counts = {state: self._count(state) for state in SubtaskState}
        return Progress(
            workflow_id=workflow.info().workflow_id, kind="deploy", event_id=self._event_id,
            stage=self._stage, course_id=self._course_id, total=len(self._status),
            done=counts[SubtaskState.DONE], failed=counts[SubtaskState.FAILED],
            running=counts[SubtaskState.RUNNING], pending=counts[SubtaskState.PENDING],
            participants=list(self._status.values()), batches_running=list(self._batches_running),
        )
