"""DeployEvent: the event's Moodle course, copied from the template, holding exactly its participants."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.brake import brake_holds, brake_message
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.roster import RosterEntry, RosterUpdate, active
    from openvle_moodle_sync.activities.types import (
        CourseRef,
        FindUsersInput,
        MatchKey,
        PlanInput,
        PrepareCourseInput,
        SyncConfig,
    )
    from openvle_moodle_sync.contracts import PROGRESS_QUERY, ErrorType
    from openvle_moodle_sync.lifecycle import CLI
    from openvle_moodle_sync.models import Event, Participant, Role
    from openvle_moodle_sync.settings import ENROLMENT_KEPT_ACTIONS

from . import ids
from .batch import BATCH_SIZE, BATCHES_AT_ONCE, DeployBatch, sync_participants
from .common import load_config, quick, skip_reason, slow, with_root_cause
from .roster import record_roster
from .types import (
    BatchInput,
    BatchResult,
    DeployInput,
    DeployResult,
    ParticipantOutcome,
    Progress,
    Removal,
    SubtaskState,
)
from .withdraw import withdraw_leavers


@dataclass(frozen=True)
class Accounts:
    """The bulk look-up's answer: who has a Moodle account already."""

    known: dict[str, int] = field(default_factory=dict)
    """participant id -> Moodle user id."""
    looked_up: bool = False
    """True when the look-up ran: a participant missing from ``known`` has no account yet."""


@dataclass(frozen=True)
class SyncPlan:
    """What every share of this run's participants has in common."""

    event_id: str
    course: CourseRef
    role_changes: frozenset[str]
    accounts: Accounts
    config: SyncConfig

    def batch(self, participants: Sequence[Participant]) -> BatchInput:
        config = self.config
        return BatchInput(
            event_id=self.event_id, course_id=self.course.id, participants=list(participants),
            role_ids=config.role_ids, fresh_course=self.course.created,
            role_changes=[p.id for p in participants if p.id in self.role_changes],
            known_users={p.id: self.accounts.known[p.id] for p in participants if p.id in self.accounts.known},
            looked_up=self.accounts.looked_up, match_field=config.match_field, user_auth=config.user_auth,
            sync_timeout_s=config.sync_timeout_s, retry_max_interval_s=config.retry_max_interval_s,
        )


@dataclass(frozen=True)
class Convergence:
    """The removal step's outcome."""

    removed: list[Removal] = field(default_factory=list)
    blocked: int = 0
    """People no longer listed whom the brake kept."""
    enrolled_by_service: int = 0
    """The roster's size before this run: the brake's 100%."""


@workflow.defn(name="DeployEvent")
class DeployEvent:
    """Event start: duplicate the template, then create and enrol every participant, then take away the
    people this service enrolled for the event earlier who are no longer listed.

    Students are enrolled before instructors: Moodle mails a welcome to every student enrolled into a
    course that has a teacher, on every enrol call, so enrolling students first means a deployment and
    its retries send no welcome mail at all."""

    def __init__(self) -> None:
        self._event_id = ""
        self._stage = "starting"
        self._course_id: int | None = None
        self._status: dict[str, ParticipantOutcome] = {}
        self._batches_running: list[str] = []
        self._students_settled = False
        self._held: list[workflow.ChildWorkflowHandle[DeployBatch, BatchResult]] = []
        """Shares of instructors started before the students were settled: told when they are."""
        self._unenrolled_before: set[str] = set()

    @workflow.run
    async def run(self, request: DeployInput) -> DeployResult:
        return await with_root_cause(self._deploy(request), f"Deployment of event {request.event.id}")

    async def _deploy(self, request: DeployInput) -> DeployResult:
        event = self._begin(request.event)
        config = await load_config()
        reason = skip_reason(config, event.moodle_course_id)
        if reason or event.moodle_course_id is None:
            return self._skipped(reason or "")
        # Each step that waits for the one before costs a trip through the engine and the task queue, long
        # beside a large event: on an event's first deployment (an empty roster) every account is looked up
        # while the template is copied.
        roster = request.roster
        preparing = asyncio.ensure_future(self._prepare_course(event, event.moodle_course_id, config))
        first_lookup = (asyncio.ensure_future(self._find_accounts(event.participants, config))
                        if not roster and event.participants else None)
        course = await preparing
        if request.show_course:
            self._set_stage("showing the course again (the event is reopened)")
            await workflow.execute_activity_method(MoodleSyncActivities.show_course, course.id, **quick(config))
        role_changes = await self._read_course(event, course, config)
        todo = [p for p in event.participants if self._status[p.id].state == SubtaskState.PENDING]
        # Not enrolled at all when the run read the course: whoever of them ends up enrolled, this run
        # enrolled, also when a retry of their enrol found its own earlier write. (Those enrolled with
        # another role, none or suspended, are in role_changes: possibly enrolled by hand.)
        self._unenrolled_before = {p.id for p in todo} - set(role_changes)
        if first_lookup is not None:  # everyone was looked up: keep those the course still lacks
            found = (await first_lookup).known
            accounts = Accounts(known={p.id: found[p.id] for p in todo if p.id in found}, looked_up=True)
        else:  # a re-run looks up only those the course lacks, once it has read the course
            accounts = await self._look_up_accounts(todo, config)
        try:
            await self._sync(SyncPlan(event.id, course, frozenset(role_changes), accounts, config), todo)
        except (ActivityError, ChildWorkflowError):
            await self._remember(event.id, course, roster, [])  # a run stopped early still tells whom it enrolled
            raise
        convergence = await self._converge(request, course, config)
        return self._result(event, course, convergence, config)

    # --- the steps ----------------------------------------------------------------------------------

    def _begin(self, event: Event) -> Event:
        self._event_id = event.id
        self._status = {p.id: ParticipantOutcome(id=p.id, role=str(p.role)) for p in event.participants}
        return event

    async def _prepare_course(self, event: Event, template_id: int, config: SyncConfig) -> CourseRef:
        self._set_stage("duplicating the template course")
        course = await workflow.execute_activity_method(
            MoodleSyncActivities.prepare_course,
            PrepareCourseInput(event_id=event.id, name=event.name, slug=event.slug,
                               template_course_id=template_id, visible=config.course_visible),
            **slow(config),
        )
        self._course_id = course.id
        return course

    async def _read_course(self, event: Event, course: CourseRef, config: SyncConfig) -> list[str]:
        """On a course that existed, mark those who hold exactly their role done; return those who hold
        another managed role (their enrolment is re-made)."""
        if course.created or not event.participants:
            return []
        self._set_stage("reading the course's enrolments")
        plan = await workflow.execute_activity_method(
            MoodleSyncActivities.plan_deployment,
            PlanInput(course_id=course.id, match_field=config.match_field, keys=[
                MatchKey(p.id, p.username, p.email, config.role_ids[p.role]) for p in event.participants
            ], managed_role_ids=list(config.role_ids.values())),
            **slow(config),
        )
        for participant_id, user_id in plan.done.items():
            outcome = self._status[participant_id]
            outcome.state, outcome.moodle_user_id = SubtaskState.DONE, user_id
        return plan.role_changes

    async def _look_up_accounts(self, todo: Sequence[Participant], config: SyncConfig) -> Accounts:
        """One call per hundred participants finds the existing accounts; only the missing ones get a
        create activity, and nobody a look-up of their own."""
        if not todo:
            return Accounts()
        self._set_stage("looking up the participants' Moodle accounts")
        return await self._find_accounts(todo, config)

    async def _find_accounts(self, people: Sequence[Participant], config: SyncConfig) -> Accounts:
        found = await workflow.execute_activity_method(
            MoodleSyncActivities.find_users,
            FindUsersInput(keys=[MatchKey(p.id, p.username, p.email, 0) for p in people],
                           match_field=config.match_field),
            **slow(config),
        )
        return Accounts(known=found.user_ids, looked_up=True)

    async def _sync(self, plan: SyncPlan, todo: Sequence[Participant]) -> None:
        if len(todo) <= BATCH_SIZE:
            # One share: instructors' accounts are made while the students are enrolled; only their
            # enrolment waits for the students (sync_participants).
            self._set_stage("creating accounts and enrolling, students before instructors")
            await sync_participants(plan.batch(todo), self._status)
            return
        # Shares of students and of instructors start together, so the instructors' accounts are made while
        # the students are enrolled; the instructors' enrolment waits until every student share has ended.
        students = [p for p in todo if p.role == Role.STUDENT]
        instructors = [p for p in todo if p.role == Role.INSTRUCTOR]
        self._students_settled = not students
        self._set_stage("enrolling students" if students else "enrolling instructors")
        instructor_shares = asyncio.ensure_future(self._sync_in_children(plan, instructors, "instructors"))
        try:
            await self._sync_in_children(plan, students, "students")
        except BaseException:
            instructor_shares.cancel()
            raise
        if students:
            await self._settle_students()
            if instructors:
                self._set_stage("enrolling instructors")
        await instructor_shares

    async def _settle_students(self) -> None:
        self._students_settled = True
        held, self._held = self._held, []
        await asyncio.gather(*(handle.signal(DeployBatch.students_settled) for handle in held))

    async def _sync_in_children(self, plan: SyncPlan, group: Sequence[Participant], label: str) -> None:
        # A few shares at a time keep the worker's caches (and memory) bounded; more would not be faster,
        # as the activity slots are already full.
        running = asyncio.Semaphore(BATCHES_AT_ONCE)

        async def child(index: int, share: Sequence[Participant]) -> None:
            await running.acquire()
            child_id = ids.batch_id(workflow.info().workflow_id, label, index)
            self._batches_running.append(child_id)
            for p in share:
                self._status[p.id].state = SubtaskState.RUNNING
            try:
                held = share[0].role == Role.INSTRUCTOR and not self._students_settled
                handle = await workflow.start_child_workflow(
                    DeployBatch.run, replace(plan.batch(share), students_elsewhere=held), id=child_id,
                    static_summary=f"Event {plan.event_id}: {len(share)} {label} (batch {index + 1})",
                    search_attributes=TypedSearchAttributes(
                        [SearchAttributePair(ids.EVENT_ID_ATTRIBUTE, plan.event_id)]),
                )
                if held:
                    if self._students_settled:  # settled while this share was starting
                        await handle.signal(DeployBatch.students_settled)
                    else:
                        self._held.append(handle)
                result: BatchResult = await handle
            finally:
                self._batches_running.remove(child_id)
                running.release()
            for outcome in result.participants:
                self._status[outcome.id] = outcome
            self._set_stage(self._stage)

        shares = [group[i:i + BATCH_SIZE] for i in range(0, len(group), BATCH_SIZE)]
        await asyncio.gather(*(child(i, share) for i, share in enumerate(shares)))

    async def _converge(self, request: DeployInput, course: CourseRef, config: SyncConfig) -> Convergence:
        """Take away the people the roster holds who are no longer listed (unless the brake holds), then
        tell the roster whom this run enrolled and whom it took away.

        The roster is the one `EventLife` passed in: it runs the event's operations one at a time, so nothing
        else changes it while this run goes."""
        event, roster = request.event, request.roster
        listed = {p.id for p in event.participants}
        enrolled = active(roster)  # those withdrawn earlier (suspended, roles removed) are taken away already
        leaving = {pid: entry for pid, entry in sorted(enrolled.items()) if pid not in listed}
        held = not request.allow_mass_removal and brake_holds(len(leaving), len(enrolled), config.max_removal_percent)
        removed: list[Removal] = []
        if leaving and not held:
            self._set_stage(f"taking away {len(leaving)} people no longer listed")
            try:
                await withdraw_leavers(course.id, [(entry.user_id, config.role_ids[Role(entry.role)])
                                                   for entry in leaving.values()], config)
            except ActivityError:  # the removals failed (say, a missing function): the adds still count
                await self._remember(event.id, course, roster, [])
                raise
            removed = [Removal(pid, entry.user_id, entry.role, config.unenrol_action)
                       for pid, entry in leaving.items()]
        await self._remember(event.id, course, roster, removed)
        return Convergence(removed=removed, blocked=len(leaving) if held else 0, enrolled_by_service=len(enrolled))

    async def _remember(self, event_id: str, course: CourseRef, roster: dict[str, RosterEntry],
                        removed: list[Removal]) -> None:
        """Tell the roster whom this run enrolled and whom it took away (nothing when nothing changed).

        Only people this service enrolled: on a course it made, everyone; elsewhere those who were not
        enrolled at all when this run read the course, or who were in the roster already (a re-run writes
        nothing). Someone enrolled by hand stays out, also when this run swapped their role in place. Someone
        the service withdrew earlier (suspended, roles removed) and this run restored is its own again."""
        enrolled = {o.id: RosterEntry(o.moodle_user_id, o.role) for o in self._status.values()
                    if o.state == SubtaskState.DONE and o.moodle_user_id is not None
                    and (course.created or o.id in self._unenrolled_before or o.id in roster)}
        put = {pid: entry for pid, entry in enrolled.items() if roster.get(pid) != entry}
        if put or removed:
            await record_roster(event_id, RosterUpdate(
                put=put, drop=[r.participant_id for r in removed],
                withdrawn=any(r.action in ENROLMENT_KEPT_ACTIONS for r in removed)))

    def _result(self, event: Event, course: CourseRef, convergence: Convergence, config: SyncConfig
                ) -> DeployResult:
        result = DeployResult(
            event_id=event.id, course_id=course.id, course_shortname=course.shortname,
            course_created=course.created, total=len(self._status),
            done=self._count(SubtaskState.DONE), failed=self._count(SubtaskState.FAILED),
            participants=list(self._status.values()), removed=convergence.removed,
            removal_blocked=convergence.blocked,
        )
        brake = brake_message(event.id, course.id, convergence.blocked, convergence.enrolled_by_service,
                              config.max_removal_percent) if convergence.blocked else ""
        if result.failed:
            self._set_stage(f"finished with {result.failed} failed participant(s)")
            first = next(o for o in result.participants if o.state == SubtaskState.FAILED)
            raise ApplicationError(
                f"{result.failed} of {result.total} participants could not be synchronised to Moodle course "
                f"{course.id}; the others are done. First error: {first.error} Fix the cause, then re-run the "
                f"deployment ({CLI} rerun --event-id {event.id}): it only does what is missing."
                + (f" Also: {brake}" if brake else ""),
                result, type=ErrorType.DEPLOYMENT_INCOMPLETE, non_retryable=True,
            )
        if brake:
            self._set_stage(f"stopped by the mass-removal brake: {convergence.blocked} people kept")
            raise ApplicationError(brake, result, type=ErrorType.MASS_REMOVAL_BLOCKED, non_retryable=True)
        self._set_stage("done")
        return result

    # --- state shown to operators ---------------------------------------------------------------------

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
