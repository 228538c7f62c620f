"""The event's roster: whom this service enrolled in the event's course, kept by the workflow `EventRoster`.

Deploy, add, remove, archive and delete tell the roster what they did; a deploy reads it to know whom it
may take away (only people it enrolled itself, never people enrolled in Moodle by other means). The roster
lives in a long-running workflow, so it survives worker crashes, re-runs and the namespace's retention
window (retention applies only to closed workflows). These activities are its door for other workflows:
a workflow cannot signal-with-start another one itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from openvle_moodle_sync.contracts import ErrorType

ROSTER_WORKFLOW = "EventRoster"
"""The roster workflow's type name."""
RECORD_SIGNAL = "record"
"""Signal that applies a `RosterUpdate`."""
ENTRIES_QUERY = "entries"
"""Query that returns the roster: participant id -> `RosterEntry`."""


@dataclass(frozen=True)
class RosterEntry:
    """One person this service enrolled for the event."""

    user_id: int
    role: str
    withdrawn: bool = False
    """Taken away by an action that leaves the enrolment in Moodle (suspend, remove_roles): no deploy takes
    them away again, and an add or a deploy that restores their enrolment makes it the service's again."""


def active(entries: dict[str, RosterEntry]) -> dict[str, RosterEntry]:
    """The people this service enrolled who have not been taken away since (the brake's 100%)."""
    return {pid: entry for pid, entry in entries.items() if not entry.withdrawn}


@dataclass(frozen=True)
class RosterUpdate:
    """What a run did: set semantics, so applying it twice (a retried activity) changes nothing."""

    put: dict[str, RosterEntry] = field(default_factory=dict)
    """participant id -> entry, for people this service enrolled (or whose role it changed)."""
    drop: list[str] = field(default_factory=list)
    """participant ids taken away from the course."""
    drop_role: str | None = None
    """Every entry with this role goes (archive unenrols the students)."""
    close: bool = False
    """The course is gone (event deleted): forget everyone and end the roster."""
    withdrawn: bool = False
    """The people ``drop`` and ``drop_role`` name stay enrolled in Moodle (suspended, or without a role): keep
    them, marked withdrawn, so that restoring them later makes them the service's again. (A worker of an
    earlier version ignores this and drops them, as it always did.)"""


@dataclass(frozen=True)
class RosterState:
    """The roster's input: what it holds when it starts or continues as new."""

    entries: dict[str, RosterEntry] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordInput:
    roster_workflow_id: str
    event_id: str
    update: RosterUpdate


#: Answers of Temporal that no retry changes: the run fails with the reason instead of retrying forever.
PERMANENT_RPC_ERRORS = frozenset({RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.PERMISSION_DENIED,
                                  RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.UNAUTHENTICATED,
                                  RPCStatusCode.UNIMPLEMENTED})


def roster_failure(error: RPCError, doing: str) -> Exception:
    """A refused roster call as a non-retryable failure in words; anything else stays retryable."""
    if error.status not in PERMANENT_RPC_ERRORS:
        return error
    return ApplicationError(
        f"Temporal refused to {doing} ({error.status.name}: {error.message}). Check the worker's Temporal "
        "permissions and that the namespace has the OpenVLEEventId search attribute (the worker registers it "
        "at start-up), then re-run.", type=ErrorType.ROSTER_REFUSED, non_retryable=True)


class RosterActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn
    async def record_roster(self, spec: RecordInput) -> None:
        """Send the update to the event's roster, starting the roster if it does not run yet (an update that
        ends the roster goes only to a running one: none is started to be ended)."""
        from openvle_moodle_sync.workflows.ids import EVENT_ID_ATTRIBUTE  # here: workflows import this module

        if spec.update.close:
            try:
                await self.client.get_workflow_handle(spec.roster_workflow_id).signal(RECORD_SIGNAL, spec.update)
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:  # none runs: never made, or ended already
                    raise roster_failure(error, f"end the roster of event {spec.event_id}") from None
            return
        try:
            await self.client.start_workflow(
                ROSTER_WORKFLOW, RosterState(), id=spec.roster_workflow_id, task_queue=activity.info().task_queue,
                start_signal=RECORD_SIGNAL, start_signal_args=[spec.update],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=TypedSearchAttributes([SearchAttributePair(EVENT_ID_ATTRIBUTE, spec.event_id)]),
                static_summary=f"Whom openvle-moodle-sync enrolled for event {spec.event_id}",
            )
        except RPCError as error:
            raise roster_failure(error, f"update the roster of event {spec.event_id}") from None

    @activity.defn
    async def read_roster(self, roster_workflow_id: str) -> dict[str, RosterEntry]:
        """The roster; empty when the event has none yet (never deployed, or deployed before rosters)."""
        try:
            return await self.client.get_workflow_handle(roster_workflow_id).query(
                ENTRIES_QUERY, result_type=dict[str, RosterEntry])
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return {}
            raise roster_failure(error, f"read the roster {roster_workflow_id}") from None
