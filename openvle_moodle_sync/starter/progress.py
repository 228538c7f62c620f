"""An event's progress for the backend and operators (`get_progress`, ``progress --json``).

The event's life (its state, the operation in flight, those queued and the last ones that ended) comes from
the memo of its `EventLife`, which the server holds. The per-participant progress of its latest deployment is
asked from the worker when one answers (the workflow's `progress` query, live), and otherwise read from what
the server recorded (the run's history and description), so that the answer comes within seconds also when no
worker runs, the moment an operator most needs it. A closed run always carries its failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistoryEventFilterType,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from openvle_moodle_sync.activities.errors import is_configuration_error_type
from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
from openvle_moodle_sync.activities.types import (
    CourseRef,
    EnrolInput,
    EnrolResult,
    EnsureUserInput,
    FoundUsers,
    PlanResult,
    UserRef,
)
from openvle_moodle_sync.contracts import LIFE_MEMO
from openvle_moodle_sync.failures import describe_failure
from openvle_moodle_sync.lifecycle import OperationKind, again
from openvle_moodle_sync.lifecycle import next_step as lifecycle_next_step
from openvle_moodle_sync.names import CLI
from openvle_moodle_sync.temporal_client import task_queue_pollers
from openvle_moodle_sync.workflows import DeployBatch, DeployEvent, ids
from openvle_moodle_sync.workflows.types import (
    BatchResult,
    DeployInput,
    DeployResult,
    LifeView,
    OperationView,
    ParticipantOutcome,
    SubtaskState,
)
from openvle_moodle_sync.workflows.types import Progress as LiveProgress

from .temporal_errors import START_WORKER, is_workflow_not_found

QUERY_TIMEOUT = timedelta(seconds=4)
"""How long a worker may take to answer the progress query before the server's record is shown instead
(a killed worker stays listed as a poller for a while; its queries would wait 30 s)."""

RPC_TIMEOUT = timedelta(seconds=5)
"""For each other call: with the query, `get_progress` answers within 10 s whatever the server does."""

# The activities whose records tell a participant's state when no worker can be asked (an activity's
# name is its method's name: @activity.defn without a name).
_ENSURE_USER = MoodleSyncActivities.ensure_user.__name__
_ENROL_USER = MoodleSyncActivities.enrol_user.__name__
_PREPARE_COURSE = MoodleSyncActivities.prepare_course.__name__
_PLAN = MoodleSyncActivities.plan_deployment.__name__
_FIND_USERS = MoodleSyncActivities.find_users.__name__

_CLOSED_ACTIVITY = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
}


class DeploymentNotFound(LookupError):
    """No deployment of that event was ever started (raised by `get_progress` and `rerun_deployment`).

    A missing namespace or an unreachable server is never this: those raise `temporalio.service.RPCError`
    (or `RuntimeError` from connecting)."""


@dataclass
class ParticipantProgress:
    """One participant's subtask of a deployment.

    The public twin of the workflows' `ParticipantOutcome`, which is stored in histories and so keeps its
    field names (``enrolled`` there read as "not enrolled" for people already enrolled); this one says
    ``written_by_this_run``."""

    id: str
    state: SubtaskState = SubtaskState.PENDING
    """``pending``, ``running``, ``done``, ``failed`` or ``skipped`` (Moodle integration off or no mapping)."""
    role: str = ""
    moodle_user_id: int | None = None
    user_created: bool = False
    """True when this run created the participant's Moodle account."""
    written_by_this_run: bool = False
    """True when this run wrote the participant's enrolment; False when it was already in Moodle (a ``done``
    participant is enrolled either way)."""
    error: str | None = None
    error_type: str | None = None

    @classmethod
    def of(cls, outcome: ParticipantOutcome) -> ParticipantProgress:
        return cls(id=outcome.id, state=outcome.state, role=outcome.role, moodle_user_id=outcome.moodle_user_id,
                   user_created=outcome.user_created, written_by_this_run=outcome.enrolled, error=outcome.error,
                   error_type=outcome.error_type)


@dataclass
class RunFailure:
    """Why a run ended without success: the error type (``DeploymentIncomplete``, ``InvalidTokenError``,
    ``Terminated``, ...) and its message."""

    type: str
    message: str


@dataclass
class PendingActivity:
    """A Moodle call the server is waiting on, as DescribeWorkflowExecution reports it."""

    activity: str
    attempt: int
    last_failure: str | None = None


NOT_STARTED = "not started"
"""`DeploymentProgress.state` while the event's life has not started the deployment (it waits its turn)."""
RUNNING = "running"
"""`DeploymentProgress.state` of a deployment under way; any other state is one it ended in."""


@dataclass
class DeploymentProgress:
    """What `get_progress` returns and ``progress --json`` prints: a deployment and one subtask per
    participant."""

    workflow_id: str
    event_id: str
    kind: str = "deploy"
    state: str = RUNNING
    """`NOT_STARTED`, `RUNNING`, ``completed``, ``failed``, ``terminated``, ``canceled``, ``timed out``,
    ``continued as new``."""
    stage: str = "starting"
    course_id: int | None = None
    total: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0
    stopped: int = 0
    """Participants a run that ended badly never finished: not done, and nothing goes on (``stopped``)."""
    participants: list[ParticipantProgress] = field(default_factory=list)
    message: str | None = None
    """Why a running deployment waits (Moodle calls being retried, no worker), or None."""
    failure: RunFailure | None = None
    """Set when the run failed, was terminated, cancelled or timed out."""
    next_step: str | None = None
    """What the operator does next, when something is to be done."""
    worker_polling: bool = True
    """False when no worker polls the task queue (or none answered within seconds): the figures are then
    what the server recorded, and nothing moves until a worker runs."""
    task_queue: str = ""
    source: str = "worker"
    """``worker`` (asked live) or ``history`` (read from the server's record of the run)."""
    pending_activities: list[PendingActivity] = field(default_factory=list)
    batches_running: list[str] = field(default_factory=list)
    event_state: str = "not_deployed"
    """The event's life: ``not_deployed``, ``deployed``, ``archived`` or ``deleted``."""
    event_state_since: str | None = None
    """When the event reached ``event_state`` (ISO 8601, UTC)."""
    operation: OperationView | None = None
    """The operation on the event in flight now (deploy, rerun, add, remove, archive, delete), if any."""
    queued: list[OperationView] = field(default_factory=list)
    """Operations asked and waiting for the one in flight, in the order they will run (the first 20)."""
    queued_total: int = 0
    recent: list[OperationView] = field(default_factory=list)
    """The last operations that ended, newest last, with their outcome or failure and next step."""

    @property
    def ended_badly(self) -> bool:
        """True for a run that failed, was terminated, cancelled or timed out."""
        return self.failure is not None


@dataclass(frozen=True)
class LifeRecord:
    """The memo of the event's `EventLife`, and whether it is current: an operation not yet taken up by a
    worker (a pending workflow task) may change it."""

    view: LifeView | None
    current: bool
    task_queue: str = ""


async def read_life(client: Client, event_id: str) -> LifeRecord | None:
    """What the server holds about the event's life (None: it has none). Needs no worker."""
    try:
        description = await client.get_workflow_handle(ids.life_id(event_id)).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as error:
        if is_workflow_not_found(error):
            return None
        raise
    view = await description.memo_value(LIFE_MEMO, None, type_hint=LifeView)
    running = description.status == WorkflowExecutionStatus.RUNNING
    pending = running and description.raw_description.HasField("pending_workflow_task")
    return LifeRecord(view=view, current=view is not None and not pending, task_queue=description.task_queue)


def _latest_deploy(life: LifeView | None) -> str | None:
    current = life.current if life else None
    if current is not None and current.kind in (OperationKind.DEPLOY, OperationKind.RERUN):
        return current.workflow_id
    return life.last_deploy if life else None


async def read_progress(client: Client, event_id: str) -> DeploymentProgress:
    """`get_progress`: see the module's docstring."""
    record = await read_life(client, event_id)
    if record is None:
        raise DeploymentNotFound(f"event {event_id} has no deployment yet; start one with: {CLI} deploy --event "
                                 "EVENT.json")
    life, deploy_id = record.view, _latest_deploy(record.view)
    handle = client.get_workflow_handle_for(DeployEvent.run, deploy_id or ids.life_id(event_id))
    description = None
    if deploy_id is not None:
        try:
            description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
        except RPCError as error:
            if not is_workflow_not_found(error):
                raise
    if description is None:  # no deployment has started yet: the life alone (what is queued, refused...)
        waiting = DeploymentProgress(workflow_id=deploy_id or "", event_id=event_id, state=NOT_STARTED,
                                      stage="waiting for its turn" if deploy_id else "no deployment",
                                      source="life", task_queue=record.task_queue)
        waiting.worker_polling = await worker_polling(client, record.task_queue)
        if not waiting.worker_polling:
            _explain_waiting(waiting)
        _add_life(waiting, life)
        return waiting
    status = description.status or WorkflowExecutionStatus.RUNNING
    queue = description.task_queue
    polling = await worker_polling(client, queue)
    progress: DeploymentProgress | None = None
    if polling:
        progress = await _asked(client, handle, event_id)
    if progress is None:
        progress = await _recorded(client, handle, event_id)
        progress.worker_polling = False
    progress.task_queue = queue
    progress.state = status.name.lower().replace("_", " ")
    progress.pending_activities = await _pending_activities(client, description)
    if status == WorkflowExecutionStatus.RUNNING:
        _explain_waiting(progress)
    else:
        progress.batches_running = []
        await _add_failure(client, handle, status, progress)
    _count(progress)
    _add_life(progress, life)
    return progress


def _add_life(progress: DeploymentProgress, life: LifeView | None) -> None:
    if life is None:
        return
    progress.event_state, progress.event_state_since = str(life.state), life.since
    progress.operation, progress.queued, progress.queued_total = life.current, life.queued, life.queued_total
    progress.recent = life.recent
    progress.course_id = progress.course_id or life.course_id


async def worker_polling(client: Client, queue: str) -> bool:
    """Whether a worker polls ``queue`` for workflow tasks now (`task_queue_pollers`)."""
    try:
        return bool(await task_queue_pollers(client, queue, rpc_timeout=RPC_TIMEOUT))
    except RPCError:
        return False


# --- Asked from a worker ---------------------------------------------------------------------------------


_NOT_ANSWERED = (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError)


async def _asked(client: Client, handle: WorkflowHandle[DeployEvent, Any], event_id: str
                 ) -> DeploymentProgress | None:
    """The workflow's own progress, or None when no worker answers within `QUERY_TIMEOUT` (all queries
    together: the SDK retries a query that timed out, so each is bounded from here, not by its RPC)."""
    deadline = time.monotonic() + QUERY_TIMEOUT.total_seconds()
    try:
        async with asyncio.timeout_at(_loop_time(deadline)):
            live: LiveProgress = await handle.query(DeployEvent.progress, rpc_timeout=QUERY_TIMEOUT)
    except (*_NOT_ANSWERED, TimeoutError):
        return None
    progress = DeploymentProgress(
        workflow_id=live.workflow_id, event_id=live.event_id or event_id, stage=live.stage, course_id=live.course_id,
        participants=[ParticipantProgress.of(o) for o in live.participants],
        batches_running=list(live.batches_running))
    # Large deployments run in child workflows: ask those that are running for their subtasks, in the time
    # left (a batch that does not answer keeps the state its parent knows).
    by_id = {p.id: p for p in progress.participants}
    for child_id in live.batches_running:
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                rows = await client.get_workflow_handle_for(DeployBatch.run, child_id).query(
                    DeployBatch.progress, rpc_timeout=QUERY_TIMEOUT)
        except (*_NOT_ANSWERED, TimeoutError):
            continue
        for row in rows:
            if row.id in by_id:
                by_id[row.id] = ParticipantProgress.of(row)
    progress.participants = list(by_id.values())
    return progress


def _loop_time(deadline: float) -> float:
    """A `time.monotonic` deadline on the event loop's clock."""
    return asyncio.get_running_loop().time() + max(0.0, deadline - time.monotonic())


# --- Read from the server's record ----------------------------------------------------------------------


async def _recorded(client: Client, handle: WorkflowHandle[Any, Any], event_id: str) -> DeploymentProgress:
    """Participants' states from the run's history: its input, its per-participant activities and its
    batches (finished ones from their results, running ones from their own histories)."""
    history = await handle.fetch_history(rpc_timeout=RPC_TIMEOUT)
    events = list(history.events)
    (request,) = await client.data_converter.decode(
        events[0].workflow_execution_started_event_attributes.input.payloads, [DeployInput])
    by_id = {p.id: ParticipantProgress(id=p.id, role=str(p.role)) for p in request.event.participants}
    progress = DeploymentProgress(workflow_id=handle.id, event_id=request.event.id or event_id,
                                  stage="as recorded by the server", source="history")
    progress.course_id = await _apply_activities(client, events, by_id)
    children = await _children(client, events, by_id)
    progress.batches_running = children
    for child_id in children:
        try:
            child = await client.get_workflow_handle(child_id).fetch_history(rpc_timeout=RPC_TIMEOUT)
        except RPCError:
            continue
        await _apply_activities(client, list(child.events), by_id)
    progress.participants = list(by_id.values())
    return progress


async def _apply_activities(client: Client, events: list[HistoryEvent], by_id: dict[str, ParticipantProgress]
                            ) -> int | None:
    """Set each participant's state from its ensure_user/enrol_user records; return the course id made."""
    course_id: int | None = None
    scheduled: dict[int, tuple[str, str | None]] = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            name, participant = attrs.activity_type.name, None
            if name == _ENSURE_USER:
                (spec,) = await client.data_converter.decode(attrs.input.payloads, [EnsureUserInput])
                participant = spec.participant.id
            elif name == _ENROL_USER:
                (enrol,) = await client.data_converter.decode(attrs.input.payloads, [EnrolInput])
                participant = enrol.participant_id
            scheduled[event.event_id] = (name, participant)
            if participant in by_id:
                by_id[participant].state = SubtaskState.RUNNING
        elif event.event_type in _CLOSED_ACTIVITY:
            attrs = getattr(event, _CLOSED_ACTIVITY[event.event_type])
            name, participant = scheduled.get(attrs.scheduled_event_id, ("", None))
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                course_id = await _completed(client, name, participant, attrs.result.payloads, by_id) or course_id
            elif participant in by_id and event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
                failure = describe_failure(await client.data_converter.decode_failure(attrs.failure))
                row = by_id[participant]
                row.state, row.error_type = SubtaskState.FAILED, failure.type
                row.error = f"participant {row.id}: {failure.message}"
            elif participant in by_id:
                by_id[participant].state = SubtaskState.FAILED
                by_id[participant].error = f"participant {participant}: the Moodle call was cancelled"
    return course_id


async def _completed(client: Client, name: str, participant: str | None, payloads: Any,
                     by_id: dict[str, ParticipantProgress]) -> int | None:
    decode = client.data_converter.decode
    if name == _PREPARE_COURSE:
        (course,) = await decode(payloads, [CourseRef])
        return int(course.id)
    if name == _PLAN:
        (plan,) = await decode(payloads, [PlanResult])
        for pid, user_id in plan.done.items():
            if pid in by_id:
                by_id[pid].state, by_id[pid].moodle_user_id = SubtaskState.DONE, user_id
    elif name == _FIND_USERS:
        (found,) = await decode(payloads, [FoundUsers])
        for pid, user_id in found.user_ids.items():
            if pid in by_id:
                by_id[pid].moodle_user_id = user_id
    elif name == _ENSURE_USER and participant in by_id:
        (user,) = await decode(payloads, [UserRef])
        by_id[participant].moodle_user_id, by_id[participant].user_created = user.user_id, user.created
    elif name == _ENROL_USER and participant in by_id:
        (enrolled,) = await decode(payloads, [EnrolResult])
        by_id[participant].state, by_id[participant].written_by_this_run = SubtaskState.DONE, enrolled.enrolled
    return None


async def _children(client: Client, events: list[HistoryEvent], by_id: dict[str, ParticipantProgress]
                    ) -> list[str]:
    """Apply the results of finished batches; return the ids of the batches still running."""
    running: dict[str, None] = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
            attrs = event.child_workflow_execution_started_event_attributes
            running[attrs.workflow_execution.workflow_id] = None
        elif event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
            completed = event.child_workflow_execution_completed_event_attributes
            running.pop(completed.workflow_execution.workflow_id, None)
            (result,) = await client.data_converter.decode(completed.result.payloads, [BatchResult])
            for outcome in result.participants:
                by_id[outcome.id] = ParticipantProgress.of(outcome)
        elif event.event_type in _CHILD_ENDED:
            running.pop(getattr(event, _CHILD_ENDED[event.event_type]).workflow_execution.workflow_id, None)
    return list(running)


_CHILD_ENDED = {
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED: "child_workflow_execution_failed_event_attributes",
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED: "child_workflow_execution_terminated_event_attributes",
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT: "child_workflow_execution_timed_out_event_attributes",
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED: "child_workflow_execution_canceled_event_attributes",
}


async def _pending_activities(client: Client, description: WorkflowExecutionDescription) -> list[PendingActivity]:
    pending = []
    for raw in description.raw_description.pending_activities:
        last = None
        if raw.HasField("last_failure"):
            # Decoded: with payload encryption on, failure messages are stored encrypted too.
            last = str(describe_failure(await client.data_converter.decode_failure(raw.last_failure)))
        pending.append(PendingActivity(activity=raw.activity_type.name, attempt=raw.attempt, last_failure=last))
    return pending


# --- Words --------------------------------------------------------------------------------------------


def _explain_waiting(progress: DeploymentProgress) -> None:
    if not progress.worker_polling:
        progress.stage = "waiting for a worker"
        progress.message = (f"No worker polls task queue {progress.task_queue!r}: nothing moves until one does. "
                            "The figures are what the server recorded.")
        progress.next_step = (f"Start a worker on task queue {progress.task_queue!r}: {START_WORKER} (with "
                              f"TEMPORAL_TASK_QUEUE={progress.task_queue} and its MOODLE_* settings); the run "
                              "continues where it stopped.")
        return
    retried = [a for a in progress.pending_activities if a.attempt > 1 and a.last_failure]
    if retried:
        first = retried[0]
        progress.message = (f"waiting on {len(retried)} retried Moodle call(s); last error: {first.activity} "
                            f"attempt {first.attempt}: {first.last_failure}")


async def _add_failure(client: Client, handle: WorkflowHandle[Any, Any], status: WorkflowExecutionStatus,
                       progress: DeploymentProgress) -> None:
    """The run's end as the server recorded it: its failure, and the participants of an incomplete one."""
    if status == WorkflowExecutionStatus.COMPLETED:
        return
    close = await _close_event(handle)
    rerun = again(OperationKind.DEPLOY, progress.event_id)
    if close is not None and close.HasField("workflow_execution_failed_event_attributes"):
        failure = await client.data_converter.decode_failure(
            close.workflow_execution_failed_event_attributes.failure)
        info = describe_failure(failure)
        progress.failure = RunFailure(info.type, info.message)
        if isinstance(failure, ApplicationError) and failure.details:
            await _apply_result(failure, progress)
        progress.next_step = next_step(info.type, progress.event_id, participant_types=[
            p.error_type for p in progress.participants if p.state == SubtaskState.FAILED])
    elif close is not None and close.HasField("workflow_execution_terminated_event_attributes"):
        reason = close.workflow_execution_terminated_event_attributes.reason or "no reason given"
        progress.failure = RunFailure("Terminated", f"the run was terminated: {reason}")
        progress.next_step = f"Re-run it when wanted; it only does what is missing: {rerun}"
    else:
        what = progress.state
        progress.failure = RunFailure(what.title().replace(" ", ""), f"the run ended {what}")
        progress.next_step = f"Re-run it; it only does what is missing: {rerun}"
    progress.stage = f"ended: {progress.state}"
    for participant in progress.participants:  # never reached, or cut off: not done, and not going on either
        if participant.state in (SubtaskState.PENDING, SubtaskState.RUNNING):
            participant.state = SubtaskState.STOPPED


async def _apply_result(failure: ApplicationError, progress: DeploymentProgress) -> None:
    """A DeploymentIncomplete failure carries the run's result: every participant's final state."""
    try:
        result = _DEPLOY_RESULT.validate_python(failure.details[0])
    except ValidationError:
        return
    progress.participants = [ParticipantProgress.of(o) for o in result.participants]
    progress.course_id = result.course_id if result.course_id is not None else progress.course_id


_DEPLOY_RESULT = TypeAdapter(DeployResult)


def next_step(kind: str, event_id: str, *, participant_types: Iterable[str | None] | None = None) -> str:
    """What to do after a deployment of ``event_id`` failed with error type ``kind`` (`lifecycle.next_step`)."""
    return lifecycle_next_step(kind, OperationKind.DEPLOY, event_id, participant_types=participant_types,
                               configuration_error=is_configuration_error_type(kind))


async def _close_event(handle: WorkflowHandle[Any, Any]) -> HistoryEvent | None:
    try:
        async for event in handle.fetch_history_events(
                event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT,
                rpc_timeout=RPC_TIMEOUT):
            return event
    except RPCError:
        pass
    return None


def _count(progress: DeploymentProgress) -> None:
    counts = {s: sum(1 for p in progress.participants if p.state == s) for s in SubtaskState}
    progress.total = len(progress.participants)
    progress.done, progress.failed = counts[SubtaskState.DONE], counts[SubtaskState.FAILED]
    progress.running, progress.pending = counts[SubtaskState.RUNNING], counts[SubtaskState.PENDING]
    progress.stopped = counts[SubtaskState.STOPPED]


__all__ = ["NOT_STARTED", "RUNNING", "DeploymentNotFound", "DeploymentProgress", "LifeRecord",
           "ParticipantProgress", "PendingActivity", "RunFailure", "next_step", "read_life", "read_progress",
           "worker_polling"]
