"""Inputs, results and progress of the workflows (the backend's and the operators' view of a run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from temporalio import workflow

from openvle_moodle_sync.models import Event, Participant, Role

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.roster import RosterEntry
    from openvle_moodle_sync.activities.types import Removal  # the plan's `remove` holds the same
    from openvle_moodle_sync.lifecycle import LifeState, OperationKind, OperationState
    from openvle_moodle_sync.settings import MatchField, UnenrolAction


class Action(StrEnum):
    ADD = "add"
    REMOVE = "remove"


class SubtaskState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    STOPPED = "stopped"
    """Shown by `progress` only: the run ended badly before this participant was done ("not done (run
    stopped)")."""


@dataclass
class DeployInput:
    event: Event
    allow_mass_removal: bool = False
    """Go past the mass-removal brake (MOODLE_MAX_REMOVAL_PERCENT) for this run only."""
    roster: dict[str, RosterEntry] = field(default_factory=dict)
    """Whom this service enrolled for the event so far (from `EventLife`): the only people a deploy takes away."""
    show_course: bool = False
    """The event was archived and is reopened: make its course visible again."""


@dataclass
class ParticipantOutcome:
    """One participant's subtask of a deployment."""

    id: str
    state: SubtaskState = SubtaskState.PENDING
    role: str = ""
    moodle_user_id: int | None = None
    user_created: bool = False
    enrolled: bool = False
    """True when this run wrote the enrolment; False when it was already there."""
    error: str | None = None
    error_type: str | None = None


@dataclass
class DeployResult:
    event_id: str
    course_id: int | None = None
    course_shortname: str | None = None
    course_created: bool = False
    skipped_reason: str | None = None
    total: int = 0
    done: int = 0
    failed: int = 0
    participants: list[ParticipantOutcome] = field(default_factory=list)
    removed: list[Removal] = field(default_factory=list)
    """People this service enrolled earlier for the event, no longer listed, taken away by this run."""
    removal_blocked: int = 0
    """People no longer listed whom the mass-removal brake kept (the run then fails `MassRemovalBlocked`)."""


@dataclass
class BatchInput:
    """A share of a deployment's participants, run as a child workflow on large events."""

    event_id: str
    course_id: int
    participants: list[Participant]
    role_ids: dict[Role, int]
    fresh_course: bool
    sync_timeout_s: float
    retry_max_interval_s: float
    role_changes: list[str] = field(default_factory=list)
    """Participants holding another managed role in the course (from the deployment's plan)."""
    known_users: dict[str, int] = field(default_factory=dict)
    """participant id -> Moodle user id found by the deployment's bulk look-up (no look-up needed)."""
    looked_up: bool = False
    """True when the bulk look-up ran: a participant missing from ``known_users`` has no account yet."""
    match_field: MatchField = MatchField.EMAIL
    """The run's MOODLE_USER_MATCH_FIELD."""
    user_auth: str = "manual"
    """The run's MOODLE_USER_AUTH."""
    students_elsewhere: bool = False
    """Students of the deployment are still being enrolled in other shares: this share makes its instructors'
    accounts at once and enrols them once it receives STUDENTS_SETTLED_SIGNAL."""


@dataclass
class BatchResult:
    participants: list[ParticipantOutcome]


@dataclass
class Progress:
    """What ``progress --json`` prints: the task and one subtask per participant."""

    workflow_id: str
    kind: str
    event_id: str
    stage: str = "starting"
    course_id: int | None = None
    total: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0
    participants: list[ParticipantOutcome] = field(default_factory=list)
    batches_running: list[str] = field(default_factory=list)
    message: str | None = None


@dataclass
class ChangeRequest:
    """Add or remove one participant of an active event."""

    action: Action
    event_id: str
    moodle_course_id: int | None
    participant: Participant
    in_roster: bool = False
    """The participant is in the event's roster (set by `EventLife` when it starts the change)."""


@dataclass
class ChangeOutcome:
    action: Action
    participant_id: str
    course_id: int | None = None
    moodle_user_id: int | None = None
    changed: bool = False
    note: str = ""
    found_enrolled: bool = False
    """An add found the participant in the course already (another role, none, or suspended)."""


@dataclass
class ChangeResult:
    event_id: str
    participant_id: str
    skipped_reason: str | None = None
    applied: list[ChangeOutcome] = field(default_factory=list)


@dataclass
class EventRef:
    """The part of an event that archive and delete need."""

    event_id: str
    moodle_course_id: int | None


@dataclass
class ArchiveResult:
    event_id: str
    course_id: int | None = None
    skipped_reason: str | None = None
    students_unenrolled: int = 0
    instructors_kept: int = 0
    hidden: bool = False
    unenrol_action: UnenrolAction = UnenrolAction.UNENROL
    """MOODLE_UNENROL_ACTION of this run: what happened to the students."""
    students_withdrawn: int = 0
    """Students this run took away by the action (unenrolled, suspended or stripped of their roles)."""


@dataclass
class DeleteResult:
    event_id: str
    course_id: int | None = None
    skipped_reason: str | None = None
    deleted: bool = False
    kept: bool = False
    note: str = ""


# --- the event's life (EventLife) -----------------------------------------------------------------------


@dataclass
class Operation:
    """One operation asked of an event, sent to its `EventLife` (signal with start)."""

    op_id: str
    """Chosen by the caller, unique: the child workflow's id ends with it."""
    kind: OperationKind
    workflow_id: str
    """The id of the child workflow that carries it out (known to the caller's handle at once)."""
    asked_at: str = ""
    """When the caller asked (ISO 8601, the caller's clock): shown, and a deployment's place in the
    admission line (`asked_at_seconds`)."""
    event: Event | None = None
    """deploy: the event as it is now."""
    allow_mass_removal: bool = False
    reopen: bool = False
    """deploy: start the life of an archived or deleted event again."""
    participant: Participant | None = None
    """add, remove: who."""
    moodle_course_id: int | None = None
    """add, remove, archive, delete: the event's template mapping (null: nothing to do in Moodle)."""
    priority: int | None = None
    """The caller's task priority (1 first … 5 last); None: by size (`starter.fairness`)."""

    def asked_at_seconds(self, otherwise: float) -> float:
        """When the caller asked, in epoch seconds; ``otherwise`` when it gave no time or no valid one."""
        try:
            asked = datetime.fromisoformat(self.asked_at)
        except ValueError:
            return otherwise
        return asked.replace(tzinfo=asked.tzinfo or UTC).timestamp()  # naive: UTC, never the worker's zone

    def same_as(self, other: Operation) -> bool:
        """Asks for the same thing (same kind, list and options): the later one joins the earlier."""
        return (self.kind, self.event, self.allow_mass_removal, self.reopen, self.participant,
                self.moodle_course_id) == (other.kind, other.event, other.allow_mass_removal, other.reopen,
                                           other.participant, other.moodle_course_id)


@dataclass
class OperationView:
    """An operation as `progress` shows it."""

    op_id: str
    kind: OperationKind
    workflow_id: str
    state: OperationState
    what: str = ""
    """In words: "deploy 60 participants", "add p-3 (student)"."""
    asked_at: str = ""
    ended_at: str | None = None
    outcome: str | None = None
    failure_type: str | None = None
    failure: str | None = None
    next_step: str | None = None
    joined: str | None = None
    """JOINED or SUPERSEDED: the workflow id whose result is this operation's."""


@dataclass
class LifeView:
    """What the server holds about the event (the memo of its `EventLife`): read with no worker running."""

    event_id: str
    state: LifeState = LifeState.NOT_DEPLOYED
    since: str | None = None
    """When the event reached ``state`` (ISO 8601, UTC)."""
    course_id: int | None = None
    deployed_before: bool = False
    """A deployment was asked before: a rerun has an event to deploy."""
    projected: LifeState = LifeState.NOT_DEPLOYED
    """The state once the operations queued and in flight have succeeded (what the API checks against)."""
    current: OperationView | None = None
    queued: list[OperationView] = field(default_factory=list)
    queued_total: int = 0
    recent: list[OperationView] = field(default_factory=list)
    """The last operations that ended, newest last (with refusals, joins and supersessions)."""
    last_deploy: str | None = None
    """Workflow id of the event's latest deployment (its per-participant progress)."""

    def find(self, workflow_id: str) -> OperationView | None:
        """The operation carried out (or joined, replaced, refused) under ``workflow_id``, if listed."""
        for view in [*self.recent, *([self.current] if self.current else []), *self.queued]:
            if view.workflow_id == workflow_id:
                return view
        return None


@dataclass
class LifeInput:
    """`EventLife`'s input: what it holds when it starts or continues as new."""

    event_id: str
    state: LifeState = LifeState.NOT_DEPLOYED
    since: str | None = None
    course_id: int | None = None
    event: Event | None = None
    """The event as last deployed, with the participant changes since: what a rerun deploys."""
    roster: dict[str, RosterEntry] = field(default_factory=dict)
    queue: list[Operation] = field(default_factory=list)
    recent: list[OperationView] = field(default_factory=list)
    last_deploy: str | None = None
