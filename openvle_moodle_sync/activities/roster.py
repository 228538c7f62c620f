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
from temporalio.service import RPCError, RPCStatusCode

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


@dataclass(frozen=True)
class RosterState:
    """The roster's input: what it holds when it starts or continues as new."""

    entries: dict[str, RosterEntry] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordInput:
    roster_workflow_id: str
    event_id: str
    update: RosterUpdate


class RosterActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn
    async def record_roster(self, spec: RecordInput) -> None:
        """Send the update to the event's roster, starting the roster if it does not run yet."""
        from openvle_moodle_sync.workflows.ids import EVENT_ID_ATTRIBUTE  # here: workflows import this module

        await self.client.start_workflow(
            ROSTER_WORKFLOW, RosterState(), id=spec.roster_workflow_id, task_queue=activity.info().task_queue,
            start_signal=RECORD_SIGNAL, start_signal_args=[spec.update],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes([SearchAttributePair(EVENT_ID_ATTRIBUTE, spec.event_id)]),
            static_summary=f"Whom openvle-moodle-sync enrolled for event {spec.event_id}",
        )

    @activity.defn
    async def read_roster(self, roster_workflow_id: str) -> dict[str, RosterEntry]:
        """The roster; empty when the event has none yet (never deployed, or deployed before rosters)."""
        try:
            return await self.client.get_workflow_handle(roster_workflow_id).query(
                ENTRIES_QUERY, result_type=dict[str, RosterEntry])
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return {}
            raise

    def all(self) -> list:
        return [self.record_roster, self.read_roster]
