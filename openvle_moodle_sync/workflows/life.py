"""EventLife: the one place an event's life is ordered. Every operation on the event (deploy, rerun, add,
remove, archive, delete) reaches it as a signal (sent with start), waits in its queue, and runs as a child
workflow (`DeployEvent`, `ChangeParticipant`, `ArchiveEvent`, `DeleteEvent`) one at a time, in the order it
was asked, on the state the one before left.

It keeps the event's state (not deployed, deployed, archived, deleted), its course, the event as last
deployed (what a rerun deploys), its roster (whom the service enrolled: the children report it by signal), and
in its memo a `LifeView` that the API and `progress` read with no worker running."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.errors import is_configuration_error_type
    from openvle_moodle_sync.activities.roster import RosterEntry, RosterUpdate, apply_update
    from openvle_moodle_sync.contracts import (
        ENTRIES_QUERY,
        LIFE_MEMO,
        OPERATION_SIGNAL,
        PROGRESS_QUERY,
        RECORD_SIGNAL,
    )
    from openvle_moodle_sync.failures import describe_failure
    from openvle_moodle_sync.fairness import event_priority
    from openvle_moodle_sync.lifecycle import (
        LifeState,
        OperationKind,
        OperationState,
        next_step,
        refusal,
        state_after,
    )

from . import ids
from .admission import admitted
from .archive import ArchiveEvent
from .change import ChangeParticipant
from .delete import DeleteEvent
from .deploy import DeployEvent
from .types import (
    Action,
    ArchiveResult,
    ChangeRequest,
    ChangeResult,
    DeleteResult,
    DeployInput,
    DeployResult,
    EventRef,
    LifeInput,
    LifeView,
    Operation,
    OperationView,
)

OPERATIONS_PER_RUN = 200
"""Operations one run takes before it continues as new: about 15 history events each, so a run stays near
3,000 events (far below Temporal's 51,200) whatever the number of adds an event sees."""

SIGNALS_PER_RUN = 2_000
"""Operations (and children's reports) one run receives before it continues as new, after the operation it
runs: Temporal takes at most 10,000 signals in one run (`limit.maxSignalsPerExecution`; the backend's
10,000 adds asked at once reached it while the first run had taken a few dozen), and refuses the next."""

RECENT_KEPT = 10
"""Ended operations the memo lists (with their outcome), newest last."""

QUEUED_SHOWN = 20
"""Queued operations the memo lists by name (all are counted)."""


def _what(op: Operation) -> str:
    if op.kind == OperationKind.DEPLOY and op.event is not None:
        return f"deploy {len(op.event.participants)} participants" + (" (reopen)" if op.reopen else "")
    if op.participant is not None:
        return f"{op.kind} {op.participant.id} ({op.participant.role})"
    return str(op.kind)


@workflow.defn(name="EventLife")
class EventLife:
    @workflow.init
    def __init__(self, life: LifeInput) -> None:
        # Here, not in run: an operation sent with the start (or buffered across continue-as-new) is received
        # before run begins, and must queue behind the ones carried over.
        self._life = life
        self._queue: list[Operation] = list(life.queue)
        self._roster: dict[str, RosterEntry] = dict(life.roster)
        self._recent: list[OperationView] = list(life.recent)
        self._current: tuple[Operation, OperationView] | None = None
        self._taken = 0
        self._received = 0
        self._changed = True

    @workflow.run
    async def run(self, life: LifeInput) -> LifeView:
        publisher = asyncio.create_task(self._publisher())
        while True:
            await workflow.wait_condition(lambda: bool(self._queue) or self._ended() or self._long())
            if self._long() or not self._queue:
                break
            await self._take(self._queue.pop(0))
            self._taken += 1
            self._changed = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        publisher.cancel()
        self._publish()
        if not self._ended():
            workflow.continue_as_new(self._carried())  # what is queued goes on in the next run
        return self._view()  # deleted, nothing queued: the life ends (a deploy with reopen starts a new one)

    def _ended(self) -> bool:
        return self._life.state == LifeState.DELETED and not self._queue

    def _long(self) -> bool:
        """Time to continue as new: the history stays short whatever the number of operations."""
        return (self._taken >= OPERATIONS_PER_RUN or self._received >= SIGNALS_PER_RUN
                or workflow.info().is_continue_as_new_suggested())

    def _carried(self) -> LifeInput:
        """The input of the next run: the life's facts as they are now, with the roster, queue and recent."""
        return replace(self._life, roster=self._roster, queue=self._queue, recent=self._recent)

    # --- receiving operations ---------------------------------------------------------------------------

    @workflow.signal(name=OPERATION_SIGNAL)
    def operation(self, op: Operation) -> None:
        # A deploy asked twice (same list and options) while the first waits or runs: one run answers both.
        # Other operations just run again: each is idempotent, and one that was failing may now succeed.
        self._received += 1
        running = [self._current[0]] if self._current else []
        twin = next((o for o in [*running, *self._queue] if o.same_as(op)), None) \
            if op.kind == OperationKind.DEPLOY else None
        if twin is not None:
            self._end(self._view_of(op, OperationState.JOINED, joined=twin.workflow_id,
                                    outcome=f"the same as {twin.workflow_id}, which answers it"))
        else:
            if op.kind == OperationKind.DEPLOY and self._queue and self._queue[-1].kind == OperationKind.DEPLOY:
                # A deploy not started yet is replaced by the later one: Moodle ends on the later list.
                earlier = self._queue.pop()
                op.reopen = op.reopen or earlier.reopen
                self._end(self._view_of(earlier, OperationState.SUPERSEDED, joined=op.workflow_id,
                                        outcome=f"replaced by the later deploy {op.workflow_id} before it started"))
            self._queue.append(op)
        self._changed = True

    @workflow.signal(name=RECORD_SIGNAL)
    def record(self, update: RosterUpdate) -> None:
        self._received += 1
        apply_update(self._roster, update)

    # --- running them -------------------------------------------------------------------------------------

    async def _take(self, op: Operation) -> None:
        life = self._life
        refused = refusal(op.kind, life.state, event_id=life.event_id, since=life.since, reopen=op.reopen,
                          deployed_before=life.event is not None)
        if refused is not None:  # the state changed since the API let it through
            self._end(self._view_of(op, OperationState.REFUSED, failure_type=refused.error_type,
                                    failure=refused.message, next_step=refused.next_step))
            return
        view = self._view_of(op, OperationState.RUNNING)
        self._current = (op, view)
        self._changed = True
        try:
            view.outcome = await self._run_child(op)
            view.state = OperationState.COMPLETED
            self._reach(state_after(op.kind, life.state))
        except ChildWorkflowError as error:
            failure = describe_failure(error)
            message, kind = failure.message, failure.type
            view.state, view.failure, view.failure_type = OperationState.FAILED, message, kind
            view.next_step = next_step(kind, op.kind, life.event_id,
                                       configuration_error=is_configuration_error_type(kind))
            self._after_failed_deploy(op, error)
        # Not in a `finally`: a run evicted from the worker's cache is closed mid-await, outside its event loop.
        self._current = None
        self._end(view)

    async def _run_child(self, op: Operation) -> str:
        life, event_id = self._life, self._life.event_id
        if op.kind in (OperationKind.DEPLOY, OperationKind.RERUN):
            event = op.event if op.kind == OperationKind.DEPLOY else life.event
            assert event is not None  # refusal() lets a rerun through only when a deployment was asked
            life.event, life.last_deploy = event, op.workflow_id
            asked_at = op.asked_at_seconds(otherwise=workflow.now().timestamp())
            async with admitted(event_id, len(event.participants), asked_at):  # a few at a time, in turn
                deployed: DeployResult = await self._child(
                    DeployEvent.run, DeployInput(event=event, allow_mass_removal=op.allow_mass_removal,
                                                 roster=dict(self._roster),
                                                 show_course=op.reopen and life.state == LifeState.ARCHIVED),
                    op, f"Deploy event {event_id} ({event.name}) to Moodle", len(event.participants))
            life.course_id = deployed.course_id if deployed.course_id is not None else life.course_id
            return deployed.skipped_reason or f"{deployed.done} of {deployed.total} participants done"
        if op.kind in (OperationKind.ADD, OperationKind.REMOVE):
            assert op.participant is not None
            p = op.participant
            if life.event is not None:  # a rerun deploys the list with this change
                kept = [x for x in life.event.participants if x.id != p.id]
                life.event = life.event.model_copy(
                    update={"participants": [*kept, p] if op.kind == OperationKind.ADD else kept})
            change = ChangeRequest(action=Action(op.kind), event_id=event_id, moodle_course_id=op.moodle_course_id,
                                   participant=p, in_roster=p.id in self._roster)
            changed: ChangeResult = await self._child(
                ChangeParticipant.run, change, op, f"{str(op.kind).capitalize()} participant {p.id} of event "
                f"{event_id}", 1)
            return changed.skipped_reason or "; ".join(a.note for a in changed.applied)
        ref = EventRef(event_id=event_id, moodle_course_id=op.moodle_course_id)
        if op.kind == OperationKind.ARCHIVE:
            archived: ArchiveResult = await self._child(ArchiveEvent.run, ref, op, f"Archive event {event_id} in "
                                                        "Moodle", 1)
            return archived.skipped_reason or (f"{archived.students_withdrawn} students taken away "
                                               f"({archived.unenrol_action}), course hidden")
        deleted: DeleteResult = await self._child(DeleteEvent.run, ref, op, f"Delete event {event_id} in Moodle", 1)
        self._roster.clear()  # the event is gone: its memory of whom it enrolled ends too
        life.course_id, life.event = None, None
        return deleted.skipped_reason or deleted.note

    async def _child(self, run: Callable[..., Any], arg: Any, op: Operation, summary: str, people: int) -> Any:
        return await workflow.execute_child_workflow(
            run, arg, id=op.workflow_id, static_summary=summary,
            search_attributes=TypedSearchAttributes([SearchAttributePair(ids.EVENT_ID_ATTRIBUTE,
                                                                         self._life.event_id)]),
            priority=event_priority(self._life.event_id, people, op.priority),
        )

    def _after_failed_deploy(self, op: Operation, error: ChildWorkflowError) -> None:
        """A deploy that failed after making the course (failed participants, the brake) leaves the event
        deployed: its result, with the course, rides in the failure's details."""
        cause = error.cause
        if op.kind not in (OperationKind.DEPLOY, OperationKind.RERUN) or not isinstance(cause, ApplicationError):
            return
        details = cause.details[0] if cause.details else None
        course_id = details.get("course_id") if isinstance(details, dict) else None
        if isinstance(course_id, int):
            self._life.course_id = course_id
            self._reach(LifeState.DEPLOYED)

    def _reach(self, state: LifeState) -> None:
        if state != self._life.state:
            self._life.state, self._life.since = state, workflow.now().isoformat()

    # --- what the server holds ----------------------------------------------------------------------------

    def _view_of(self, op: Operation, state: OperationState, **fields: Any) -> OperationView:
        return OperationView(op_id=op.op_id, kind=op.kind, workflow_id=op.workflow_id, state=state,
                             what=_what(op), asked_at=op.asked_at, **fields)

    def _end(self, view: OperationView) -> None:
        view.ended_at = workflow.now().isoformat()
        self._recent = [*self._recent, view][-RECENT_KEPT:]

    def _view(self) -> LifeView:
        life, projected = self._life, self._life.state
        pending = [self._current[0]] if self._current else []
        for op in [*pending, *self._queue]:
            if refusal(op.kind, projected, event_id=life.event_id, reopen=op.reopen) is None:
                projected = state_after(op.kind, projected)
        return LifeView(
            event_id=life.event_id, state=life.state, since=life.since, course_id=life.course_id,
            deployed_before=life.event is not None or any(o.kind == OperationKind.DEPLOY for o in self._queue),
            projected=projected, current=self._current[1] if self._current else None,
            queued=[self._view_of(o, OperationState.QUEUED) for o in self._queue[:QUEUED_SHOWN]],
            queued_total=len(self._queue), recent=list(self._recent), last_deploy=life.last_deploy)

    async def _publisher(self) -> None:
        """Publish the view once per workflow task that changed it (operations arriving together, say twenty
        adds during a deploy, make one memo update, not twenty)."""
        while True:
            await workflow.wait_condition(lambda: self._changed)
            self._changed = False
            self._publish()

    def _publish(self) -> None:
        view = self._view()
        workflow.upsert_memo({LIFE_MEMO: view})
        workflow.set_current_details(
            f"Event {view.event_id}: {view.state}"
            + (f", Moodle course {view.course_id}" if view.course_id else "")
            + (f"; now: {view.current.what}" if view.current else "")
            + (f"; {view.queued_total} queued" if view.queued_total else ""))

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> LifeView:
        return self._view()

    @workflow.query(name=ENTRIES_QUERY)
    def entries(self) -> dict[str, RosterEntry]:
        return self._roster
