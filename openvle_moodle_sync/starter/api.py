"""The OpenVLE backend's API: start the workflows, read progress, re-run, search Moodle courses.

The backend already holds a `temporalio.client.Client` (connected with this service's data converter,
see `temporal_client.connect`) and calls these coroutines with it::

    handle = await starter.deploy_event(client, event)
    result = await handle.result()

Every operation on an event goes to the event's `EventLife` workflow, which runs them one at a time in the
order they were asked (`docs/workflows.md`, "One life per event"). A call returns once Temporal holds the
operation, without waiting for a worker. It validates its input first (`models.InputError` names the field
and participant) and refuses, with an `EventStateError`, an operation that makes no sense in the event's
state (an add to an archived event, say): in both cases nothing is started and nothing written.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError

from openvle_moodle_sync.activities.plan_types import EventPlan, PlanRequest
from openvle_moodle_sync.contracts import OPERATION_SIGNAL, ErrorType
from openvle_moodle_sync.fairness import event_priority
from openvle_moodle_sync.lifecycle import LifeState, OperationKind, OperationState, Refusal, refusal
from openvle_moodle_sync.models import Event, Participant, parse_event, parse_participant
from openvle_moodle_sync.moodle import client_from_settings
from openvle_moodle_sync.names import CLI
from openvle_moodle_sync.settings import Settings, get_settings
from openvle_moodle_sync.workflows import EventLife, PlanEvent, ids
from openvle_moodle_sync.workflows.types import (
    ArchiveResult,
    ChangeResult,
    DeleteResult,
    DeployResult,
    LifeInput,
    LifeView,
    Operation,
    OperationView,
)

from .progress import DeploymentNotFound, DeploymentProgress, read_life, read_progress
from .temporal_errors import is_busy, is_signal_limit, is_workflow_not_found

EventLike = Event | Mapping[str, Any]
ParticipantLike = Participant | Mapping[str, Any]
R = TypeVar("R")

SETTLE_TIMEOUT = timedelta(seconds=10)

POLL_FIRST_S, POLL_MAX_S = 0.02, 2.0
"""How a handle waits for an operation that has not started yet: at once at first (a lone operation starts
within tens of ms), then less and less often (a term's hundred handles must not keep a busy server busier)."""


# --- refusals ---------------------------------------------------------------------------------------------


class EventStateError(Exception):
    """An operation that makes no sense in the event's state, refused before anything was written: at the
    call (from what the server holds about the event), or when the event's life took it up (then raised by
    the handle's ``result()``). ``str(error)`` says why; ``next_step`` what to do."""

    def __init__(self, message: str, *, event_id: str, operation: OperationKind, state: LifeState,
                 since: str | None, next_step: str, error_type: str) -> None:
        super().__init__(message)
        self.message, self.event_id, self.operation, self.state = message, event_id, operation, state
        self.since, self.next_step, self.error_type = since, next_step, error_type


class EventNotDeployed(EventStateError, DeploymentNotFound):
    """Add, remove, archive or rerun of an event that was never deployed (or whose deployment never made its
    course)."""


class EventArchived(EventStateError):
    """Add, remove or rerun of an archived event, or a deploy without ``reopen=True``."""


class EventDeleted(EventStateError):
    """Add, remove, archive or rerun of a deleted event, or a deploy without ``reopen=True``."""


MAX_QUEUED_CHANGES = 1_000
"""Adds and removes are refused at the call (`EventBusy`) while this many operations wait for the event.
A run of the event's life holds at most 10,000 signals (Temporal's limit) and cannot continue as new while
signals keep arriving, so a backend that sends 10,000 adds at once must be slowed at the door: the life
takes about four a second, and a refused call writes nothing. Deploys, archives and deletes are never
refused for this (one of each is enough, and a queued deploy is replaced by a later one). The count is the
life's memo, a few seconds behind a burst: Temporal's limit, answered as `EventBusy` too, is the last door."""


class EventBusy(Exception):
    """An add or remove refused because ``queued`` operations already wait for the event (or Temporal took no
    more signals for its life): nothing was sent; send it again in a while (``next_step``)."""

    error_type = ErrorType.EVENT_BUSY

    def __init__(self, *, event_id: str, operation: OperationKind, queued: int | None) -> None:
        waiting = f"{queued} operations already wait" if queued is not None else "the event's life takes no more now"
        super().__init__(f"{operation} refused for event {event_id}: {waiting}; nothing was sent")
        self.event_id, self.operation, self.queued = event_id, operation, queued
        self.next_step = (f"send it again in a minute; follow the queue with: {CLI} progress --event-id {event_id}")


_REFUSAL_CLASSES: dict[str, type[EventStateError]] = {
    ErrorType.EVENT_NOT_DEPLOYED: EventNotDeployed, ErrorType.EVENT_ARCHIVED: EventArchived,
    ErrorType.EVENT_DELETED: EventDeleted}


def _refusal_error(refused: Refusal, *, event_id: str, operation: OperationKind, state: LifeState,
                   since: str | None) -> EventStateError:
    return _REFUSAL_CLASSES[refused.error_type](
        refused.message, event_id=event_id, operation=operation, state=state, since=since,
        next_step=refused.next_step, error_type=refused.error_type)


async def _check(client: Client, event_id: str, kind: OperationKind, *, reopen: bool = False) -> None:
    """Raise `EventStateError` when ``kind`` makes no sense for the event as the server holds it, once the
    operations already queued have run. Where the record is not current (an operation still on its way to the
    worker), the event's life checks when it takes the operation up."""
    try:
        record = await read_life(client, event_id)
    except RPCError as error:
        if is_busy(error):
            return  # a busy server: no check here; the life checks when it takes the operation up
        raise
    if (record is not None and record.view is not None and kind in (OperationKind.ADD, OperationKind.REMOVE)
            and record.view.queued_total >= MAX_QUEUED_CHANGES):  # even when not current: the queue only grew
        raise EventBusy(event_id=event_id, operation=kind, queued=record.view.queued_total)
    if record is None:
        state, since, deployed_before = LifeState.NOT_DEPLOYED, None, False
    elif not record.current or record.view is None:
        return
    else:
        view = record.view
        state, deployed_before = view.projected, view.deployed_before
        since = view.since if view.projected == view.state else None
    refused = refusal(kind, state, event_id=event_id, since=since, reopen=reopen, deployed_before=deployed_before)
    if refused is not None:
        raise _refusal_error(refused, event_id=event_id, operation=kind, state=state, since=since)


# --- operations ---------------------------------------------------------------------------------------------


class OperationHandle(WorkflowHandle[Any, R], Generic[R]):
    """The handle of one operation on an event: ``.id`` is the id of the child workflow that carries it out
    (it may not have started yet: the event's life runs operations in order), and ``await result()`` waits
    for it. An operation joined to an identical one, or a queued deploy replaced by a later one, gives that
    one's result; one refused when the life took it up raises `EventStateError`."""

    def __init__(self, client: Client, workflow_id: str, *, result_type: type[R], event_id: str,
                 op_id: str) -> None:
        super().__init__(client, workflow_id, result_type=result_type)
        self.event_id, self.op_id = event_id, op_id

    async def result(self, *, follow_runs: bool = True, rpc_metadata: Mapping[str, str | bytes] = {},
                     rpc_timeout: timedelta | None = None) -> R:
        target, pause = self.id, POLL_FIRST_S
        while True:
            try:
                result = await self._client.get_workflow_handle(target, result_type=self._result_type).result(
                    follow_runs=follow_runs, rpc_metadata=rpc_metadata, rpc_timeout=rpc_timeout)
            except RPCError as error:
                if not (is_workflow_not_found(error) or is_busy(error)):
                    raise
            except WorkflowFailureError:
                await self._settled(target)
                raise
            else:
                await self._settled(target)
                return result
            # Not started yet (the life starts it when it is its turn), or the server was slow to answer.
            life = await _life_or_none(self._client, self.event_id)
            view = life.find(target) if life else None
            if life is not None and view is not None and view.state == OperationState.REFUSED:
                raise _refused_view(view, life)
            if view is not None and view.joined:  # joined, or replaced: follow to the run that answers
                target = view.joined
                continue
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX_S)

    async def _settled(self, target: str) -> None:
        """Wait (a moment, at most SETTLE_TIMEOUT) until the event's life has taken the operation's end into
        its state, so that what the caller does next sees it (the roster, the event's state)."""
        deadline, pause = asyncio.get_running_loop().time() + SETTLE_TIMEOUT.total_seconds(), POLL_FIRST_S
        while asyncio.get_running_loop().time() < deadline:
            life = await _life_or_none(self._client, self.event_id)
            if life is not None and (life.current is None or life.current.workflow_id != target):
                return
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX_S)


async def _life_or_none(client: Client, event_id: str) -> LifeView | None:
    """The life's memo; None when it has none yet or the server did not answer in time (ask again later)."""
    try:
        record = await read_life(client, event_id)
    except RPCError as error:
        if is_busy(error):
            return None
        raise
    return record.view if record else None


def _refused_view(view: OperationView, life: LifeView) -> EventStateError:
    cls = _REFUSAL_CLASSES.get(view.failure_type or "", EventStateError)
    return cls(view.failure or "refused", event_id=life.event_id, operation=view.kind, state=life.state,
               since=life.since, next_step=view.next_step or "", error_type=view.failure_type or "")


async def _send(client: Client, event_id: str, settings: Settings | None, op: Operation) -> None:
    """Hand the operation to the event's life, starting it if it has none (signal with start)."""
    await client.start_workflow(
        EventLife.run, LifeInput(event_id=event_id), id=ids.life_id(event_id),
        task_queue=(settings or get_settings()).temporal_task_queue,
        start_signal=OPERATION_SIGNAL, start_signal_args=[op],
        search_attributes=TypedSearchAttributes([SearchAttributePair(ids.EVENT_ID_ATTRIBUTE, event_id)]),
        static_summary=f"Life of event {event_id} in Moodle: its operations, in order",
        priority=event_priority(event_id, 1),
        # A deleted event's life has ended: a deploy with reopen starts a new one under the same id.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


async def _operate(client: Client, event_id: str, kind: OperationKind, result_type: type[R],
                   settings: Settings | None, *, priority: int | None, reopen: bool = False,
                   participant: Participant | None = None, **fields: Any) -> OperationHandle[R]:
    asked_at = datetime.now(UTC).isoformat()  # when the backend asked: a deployment's place in line
    if priority is not None:
        event_priority(event_id, 1, priority)  # a priority out of range is refused before anything is sent
    await _check(client, event_id, kind, reopen=reopen)
    op_id = uuid.uuid4().hex[:10]
    op = Operation(op_id=op_id, kind=kind, workflow_id=ids.operation_id(kind, event_id, op_id,
                                                                      participant.id if participant else None),
                   asked_at=asked_at, reopen=reopen, priority=priority, participant=participant,
                   **fields)
    try:
        await _send(client, event_id, settings, op)
    except RPCError as error:
        if is_signal_limit(error):
            raise EventBusy(event_id=event_id, operation=kind, queued=None) from None
        raise
    return OperationHandle(client, op.workflow_id, result_type=result_type, event_id=event_id, op_id=op_id)


async def deploy_event(client: Client, event: EventLike, *, settings: Settings | None = None,
                       allow_mass_removal: bool = False, reopen: bool = False,
                       priority: int | None = None) -> OperationHandle[DeployResult]:
    """Deploy the event: Moodle converges on the event as given (duplicate the template, create and enrol
    participants, fix roles, take away the people it enrolled earlier who are no longer listed). A deploy that
    would take away more than MOODLE_MAX_REMOVAL_PERCENT of them, and more than 2, takes nobody away and
    fails ``MassRemovalBlocked``; ``allow_mass_removal=True`` goes past it once.

    Asked while another deploy of the event runs, it runs after it (a deploy still queued is replaced by a
    later one); asked twice with the same list and options, the second joins the first. An archived or
    deleted event is refused (`EventArchived`, `EventDeleted`) unless ``reopen=True``, which starts its life
    again: an archived event's course is shown again, a deleted one's copied anew.

    ``priority`` (1 first … 5 last) orders its tasks against other events' on the task queue; by default
    by size (see `starter.fairness`).

    >>> handle = await deploy_event(client, {"id": "42", "name": "Linux Workshop", "slug": "linux-ws",
    ...                                      "moodle_course_id": 17, "participants": [...]})
    >>> (await handle.result()).course_id
    """
    ev = parse_event(event)
    return await _operate(client, ev.id, OperationKind.DEPLOY, DeployResult, settings, priority=priority,
                          reopen=reopen, event=ev, allow_mass_removal=allow_mass_removal)


async def plan_event(client: Client, event: EventLike, *, settings: Settings | None = None) -> EventPlan:
    """What a deploy of the event would do now, without writing anything to Moodle or sending a mail.

    Runs as the short workflow `PlanEvent` on the worker (the Moodle token stays there), beside the event's
    life. Raises `models.InputError` for a bad event (nothing started) and `WorkflowFailureError` when Moodle
    cannot be read. ``plan.problems`` lists what would stop the deploy (a missing template, a taken slug).

    >>> plan = await plan_event(client, event)
    >>> plan.course.action, [r.participant_id for r in plan.remove], plan.blocked_by_brake
    """
    ev = parse_event(event)
    return await client.execute_workflow(
        PlanEvent.run, PlanRequest(event=ev), id=ids.plan_id(ev.id, uuid.uuid4().hex[:12]),
        static_summary=f"Plan of event {ev.id} ({ev.name}): reads only",
        task_queue=(settings or get_settings()).temporal_task_queue,
        search_attributes=TypedSearchAttributes([SearchAttributePair(ids.EVENT_ID_ATTRIBUTE, ev.id)]),
        priority=event_priority(ev.id, 1),  # reads only: as quick as a small event's work
    )


async def _change(client: Client, kind: OperationKind, event: EventLike, participant: ParticipantLike,
                  settings: Settings | None, priority: int | None) -> OperationHandle[ChangeResult]:
    ev, p = parse_event(event), parse_participant(participant)
    return await _operate(client, ev.id, kind, ChangeResult, settings, priority=priority, participant=p,
                          moodle_course_id=ev.moodle_course_id)


async def add_participant(client: Client, event: EventLike, participant: ParticipantLike, *,
                          settings: Settings | None = None, priority: int | None = None
                          ) -> OperationHandle[ChangeResult]:
    """A participant joined the event: create them in Moodle if needed and enrol them. Asked during a deploy,
    it applies after it; refused (`EventStateError`) for an event not deployed, archived or deleted.

    >>> await add_participant(client, event, {"id": "p-3", "username": "carol", "email": "carol@example.com",
    ...                                       "first_name": "Carol", "last_name": "King", "role": "student"})
    """
    return await _change(client, OperationKind.ADD, event, participant, settings, priority)


async def remove_participant(client: Client, event: EventLike, participant: ParticipantLike, *,
                             settings: Settings | None = None, priority: int | None = None
                             ) -> OperationHandle[ChangeResult]:
    """A participant left the event: take them away by MOODLE_UNENROL_ACTION (with the default, ``unenrol``,
    Moodle drops their grades in that course). Refused like `add_participant`.

    >>> await remove_participant(client, event, {"id": "p-3", ...})
    """
    return await _change(client, OperationKind.REMOVE, event, participant, settings, priority)


def event_ref(event: EventLike) -> tuple[str, int | None]:
    """The id and the template mapping of an event: all archive and delete need (the rest may be stale)."""
    ev = parse_event({"name": "-", "slug": "-", **event, "participants": []}) if isinstance(event, Mapping) else event
    return ev.id, ev.moodle_course_id


async def archive_event(client: Client, event: EventLike, *, settings: Settings | None = None,
                        priority: int | None = None) -> OperationHandle[ArchiveResult]:
    """The event ended: take its students away by MOODLE_UNENROL_ACTION, keep its instructors, hide the course.
    Refused (`EventStateError`) for an event never deployed or deleted.

    >>> await (await archive_event(client, event)).result()
    """
    event_id, course = event_ref(event)
    return await _operate(client, event_id, OperationKind.ARCHIVE, ArchiveResult, settings, priority=priority,
                          moodle_course_id=course)


async def delete_event(client: Client, event: EventLike, *, settings: Settings | None = None,
                       priority: int | None = None) -> OperationHandle[DeleteResult]:
    """The event was deleted: delete its course if MOODLE_DELETE_COURSE_ON_EVENT_DELETE is true, and end its
    life (its roster goes; a kept course keeps its people). Never refused: an event never deployed has
    nothing to delete.

    >>> (await (await delete_event(client, event)).result()).deleted
    """
    event_id, course = event_ref(event)
    return await _operate(client, event_id, OperationKind.DELETE, DeleteResult, settings, priority=priority,
                          moodle_course_id=course)


async def rerun_deployment(client: Client, event_id: str, *, settings: Settings | None = None,
                           priority: int | None = None) -> OperationHandle[DeployResult]:
    """Deploy the event again as it was last deployed, with the participant changes asked since; it only does
    what is missing (accounts and enrolments already in Moodle are skipped without a write or a mail).
    Refused for an event never deployed (`EventNotDeployed`, a `DeploymentNotFound`), archived or deleted.

    >>> await (await rerun_deployment(client, "42")).result()
    """
    return await _operate(client, event_id, OperationKind.RERUN, DeployResult, settings, priority=priority)


async def get_progress(client: Client, event_id: str) -> DeploymentProgress:
    """The event's deployment and one subtask per participant (the fields of ``progress --json``).

    Answers within 10 s also when no worker runs: then ``worker_polling`` is False and the figures are what
    the server recorded. A run that failed, was terminated, cancelled or timed out carries ``failure``
    (type and message) and ``next_step``. Raises `DeploymentNotFound` when the event was never deployed;
    Temporal errors (a missing namespace, the server unreachable) raise `temporalio.service.RPCError`.

    >>> p = await get_progress(client, "42"); print(p.state, p.done, "/", p.total)
    """
    return await read_progress(client, event_id)


async def search_courses(text: str, *, settings: Settings | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Moodle courses whose name matches, for the course-mapping screen (the guide's GET /v1/moodle/courses).

    >>> await search_courses("Linux")
    [{'id': 2, 'shortname': 'tpl-linux-101', 'fullname': 'Linux 101 Template'}]
    """
    settings = settings or get_settings()
    async with client_from_settings(settings) as moodle:
        if text.strip():
            courses = (await moodle.search_courses(text.strip(), perpage=limit))["courses"]
        else:
            courses = [c for c in await moodle.get_courses() if c.get("format") != "site"][:limit]
    return [{"id": c["id"], "shortname": c["shortname"], "fullname": c["fullname"]} for c in courses]
