"""The OpenVLE backend's API: start the workflows, read progress, re-run, search Moodle courses.

The backend already holds a `temporalio.client.Client` (connected with this service's data converter,
see `temporal_client.connect`) and calls these coroutines with it::

    handle = await starter.deploy_event(client, event)
    result = await handle.result()

Every function validates its input first (`models.InputError` names the field and participant) and
starts nothing on bad input, so nothing is left half-done in Moodle.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypedDict

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError

from openvle_moodle_sync.activities.plan_types import EventPlan, PlanRequest
from openvle_moodle_sync.contracts import REQUEST_SIGNAL
from openvle_moodle_sync.models import Event, Participant, parse_event, parse_participant
from openvle_moodle_sync.moodle import client_from_settings
from openvle_moodle_sync.settings import Settings, get_settings
from openvle_moodle_sync.starter.fairness import event_priority
from openvle_moodle_sync.workflows import ArchiveEvent, ChangeParticipant, DeleteEvent, DeployEvent, PlanEvent, ids
from openvle_moodle_sync.workflows.types import (
    Action,
    ArchiveResult,
    ChangeRequest,
    ChangeResult,
    DeleteResult,
    DeployInput,
    DeployResult,
    EventRef,
)

from .progress import DeploymentNotFound, DeploymentProgress, read_progress
from .temporal_errors import is_workflow_not_found

EventLike = Event | Mapping[str, Any]
ParticipantLike = Participant | Mapping[str, Any]

class _EventRun(TypedDict):
    task_queue: str
    search_attributes: TypedSearchAttributes
    priority: Priority


class _OneRunAtATime(TypedDict):
    id_conflict_policy: WorkflowIDConflictPolicy
    id_reuse_policy: WorkflowIDReusePolicy


#: A second start of the same work joins the run that is going; a finished or failed one may run again.
ONE_RUN_AT_A_TIME: _OneRunAtATime = {"id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
                                     "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE}


def _event_run(event_id: str, settings: Settings | None, *, participants: int = 1,
               priority: int | None = None) -> _EventRun:
    """What every run of an event starts with: the task queue, the event's search attribute (the UI's
    filter) and its priority and fairness key (see `starter.fairness`)."""
    return {
        "task_queue": (settings or get_settings()).temporal_task_queue,
        "search_attributes": TypedSearchAttributes([SearchAttributePair(ids.EVENT_ID_ATTRIBUTE, event_id)]),
        "priority": event_priority(event_id, participants, priority),
    }


async def deploy_event(client: Client, event: EventLike, *, settings: Settings | None = None,
                       allow_mass_removal: bool = False,
                       priority: int | None = None) -> WorkflowHandle[DeployEvent, DeployResult]:
    """Start the deployment of an event: Moodle converges on the event as given (duplicate the template,
    create and enrol participants, fix roles, take away the people it enrolled earlier who are no longer
    listed). A deploy that would take away more than MOODLE_MAX_REMOVAL_PERCENT of them, and more than 2,
    takes nobody away and fails ``MassRemovalBlocked``; ``allow_mass_removal=True`` goes past it once.

    ``priority`` (1 first … 5 last) orders its tasks against other events' on the task queue; by default
    events of up to 500 participants get 2 and larger ones 3 (see `starter.fairness`).

    >>> handle = await deploy_event(client, {"id": "42", "name": "Linux Workshop", "slug": "linux-ws",
    ...                                      "moodle_course_id": 17, "participants": [...]})
    >>> (await handle.result()).course_id
    """
    ev = parse_event(event)
    return await client.start_workflow(
        DeployEvent.run, DeployInput(event=ev, allow_mass_removal=allow_mass_removal), id=ids.deploy_id(ev.id),
        static_summary=f"Deploy event {ev.id} ({ev.name}) to Moodle",
        static_details=f"Event **{ev.id}** `{ev.slug}`: {len(ev.participants)} participants, "
                       f"template course {ev.moodle_course_id}",
        **_event_run(ev.id, settings, participants=len(ev.participants), priority=priority), **ONE_RUN_AT_A_TIME,
    )


async def plan_event(client: Client, event: EventLike, *, settings: Settings | None = None) -> EventPlan:
    """What a deploy of the event would do now, without writing anything to Moodle or sending a mail.

    Runs as the short workflow `PlanEvent` on the worker (the Moodle token stays there). Raises
    `models.InputError` for a bad event (nothing started) and `WorkflowFailureError` when Moodle cannot
    be read.

    >>> plan = await plan_event(client, event)
    >>> plan.course.action, [r.participant_id for r in plan.remove], plan.blocked_by_brake
    """
    ev = parse_event(event)
    return await client.execute_workflow(
        PlanEvent.run, PlanRequest(event=ev), id=ids.plan_id(ev.id, uuid.uuid4().hex[:12]),
        static_summary=f"Plan of event {ev.id} ({ev.name}): reads only",
        **_event_run(ev.id, settings),  # reads only: as quick as a small event's work
    )


async def _change(client: Client, action: Action, event: EventLike, participant: ParticipantLike,
                  settings: Settings | None, priority: int | None
                  ) -> WorkflowHandle[ChangeParticipant, ChangeResult]:
    ev, p = parse_event(event), parse_participant(participant)
    change = ChangeRequest(action=action, event_id=ev.id, moodle_course_id=ev.moodle_course_id, participant=p)
    # Signal-with-start: changes of one participant queue in one workflow and never race.
    return await client.start_workflow(
        ChangeParticipant.run, change, id=ids.participant_id(ev.id, p.id),
        start_signal=REQUEST_SIGNAL, start_signal_args=[change],
        static_summary=f"{action.capitalize()} participant {p.id} of event {ev.id}",
        **_event_run(ev.id, settings, priority=priority), **ONE_RUN_AT_A_TIME,
    )


async def add_participant(client: Client, event: EventLike, participant: ParticipantLike, *,
                          settings: Settings | None = None, priority: int | None = None
                          ) -> WorkflowHandle[ChangeParticipant, ChangeResult]:
    """A participant joined an active event: create them in Moodle if needed and enrol them.

    >>> await add_participant(client, event, {"id": "p-3", "username": "carol", "email": "carol@example.com",
    ...                                       "first_name": "Carol", "last_name": "King", "role": "student"})
    """
    return await _change(client, Action.ADD, event, participant, settings, priority)


async def remove_participant(client: Client, event: EventLike, participant: ParticipantLike, *,
                             settings: Settings | None = None, priority: int | None = None
                             ) -> WorkflowHandle[ChangeParticipant, ChangeResult]:
    """A participant left an active event: take them away by MOODLE_UNENROL_ACTION (with the default,
    ``unenrol``, Moodle drops their grades in that course).

    >>> await remove_participant(client, event, {"id": "p-3", ...})
    """
    return await _change(client, Action.REMOVE, event, participant, settings, priority)


def _ref(event: EventLike) -> EventRef:
    # Archive and delete need only the id and the mapping; the rest of the event may be stale.
    ev = parse_event({"name": "-", "slug": "-", **event, "participants": []}) if isinstance(event, Mapping) else event
    return EventRef(event_id=ev.id, moodle_course_id=ev.moodle_course_id)


async def archive_event(client: Client, event: EventLike, *, settings: Settings | None = None,
                        priority: int | None = None) -> WorkflowHandle[ArchiveEvent, ArchiveResult]:
    """The event ended: take its students away by MOODLE_UNENROL_ACTION, keep its instructors, hide the course.

    >>> await (await archive_event(client, event)).result()
    """
    ref = _ref(event)
    return await client.start_workflow(
        ArchiveEvent.run, ref, id=ids.archive_id(ref.event_id),
        static_summary=f"Archive event {ref.event_id} in Moodle",
        **_event_run(ref.event_id, settings, priority=priority), **ONE_RUN_AT_A_TIME,
    )


async def delete_event(client: Client, event: EventLike, *, settings: Settings | None = None,
                       priority: int | None = None) -> WorkflowHandle[DeleteEvent, DeleteResult]:
    """The event was deleted: delete its course if MOODLE_DELETE_COURSE_ON_EVENT_DELETE is true.

    >>> (await (await delete_event(client, event)).result()).deleted
    """
    ref = _ref(event)
    return await client.start_workflow(
        DeleteEvent.run, ref, id=ids.delete_id(ref.event_id), static_summary=f"Delete event {ref.event_id} in Moodle",
        **_event_run(ref.event_id, settings, priority=priority), **ONE_RUN_AT_A_TIME,
    )


async def rerun_deployment(client: Client, event_id: str, *, settings: Settings | None = None,
                           priority: int | None = None) -> WorkflowHandle[DeployEvent, DeployResult]:
    """Start the event's last deployment again under its id, with the same event; it only does what is
    missing (accounts and enrolments already in Moodle are skipped without a write or a mail).

    >>> await (await rerun_deployment(client, "42")).result()
    """
    handle = client.get_workflow_handle(ids.deploy_id(event_id))
    try:
        history = await handle.fetch_history()
    except RPCError as error:
        if is_workflow_not_found(error):
            raise DeploymentNotFound(f"event {event_id} has no deployment to re-run; deploy it first") from None
        raise
    first = history.events[0]
    (request,) = await client.data_converter.decode(
        first.workflow_execution_started_event_attributes.input.payloads, [DeployInput])
    changes = await _changes_since(client, event_id, first.event_time.ToDatetime(tzinfo=UTC))
    return await deploy_event(client, _with_changes(request.event, changes), settings=settings,
                              priority=priority)


async def _changes_since(client: Client, event_id: str, since: datetime) -> list[ChangeRequest]:
    """The latest requested change of each participant changed after ``since`` (the deployment's start),
    so that a re-run does not bring back someone removed meanwhile, nor forget someone added."""
    latest: dict[str, tuple[datetime, str | None]] = {}
    query = f"{ids.EVENT_ID_ATTRIBUTE.name} = '{event_id}' AND WorkflowType = 'ChangeParticipant'"
    async for run in client.list_workflows(query):
        if run.start_time > since and (run.id not in latest or run.start_time > latest[run.id][0]):
            latest[run.id] = (run.start_time, run.run_id)
    changes = []
    for workflow_id, (_, run_id) in sorted(latest.items(), key=lambda item: item[1][0]):
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        requested = [e.workflow_execution_signaled_event_attributes.input for e in history.events
                     if e.HasField("workflow_execution_signaled_event_attributes")
                     and e.workflow_execution_signaled_event_attributes.signal_name == REQUEST_SIGNAL]
        if requested:
            (change,) = await client.data_converter.decode(requested[-1].payloads, [ChangeRequest])
            changes.append(change)
    return changes


def _with_changes(event: Event, changes: list[ChangeRequest]) -> Event:
    participants = {p.id: p for p in event.participants}
    for change in changes:
        if change.action == Action.ADD:
            participants[change.participant.id] = change.participant
        else:
            participants.pop(change.participant.id, None)
    return event.model_copy(update={"participants": list(participants.values())})


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
