"""Inputs, results and progress of the workflows (the backend's and the operators' view of a run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from temporalio import workflow

from openvle_moodle_sync.models import Event, Participant

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.types import Removal  # the plan's `remove` holds the same
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


@dataclass
class DeployInput:
    event: Event
    allow_mass_removal: bool = False
    """Go past the mass-removal brake (MOODLE_MAX_REMOVAL_PERCENT) for this run only."""


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
    role_ids: dict[str, int]
    fresh_course: bool
    sync_timeout_s: float
    retry_max_interval_s: float
    role_changes: list[str] = field(default_factory=list)
    """Participants holding another managed role in the course (from the deployment's plan)."""
    known_users: dict[str, int] = field(default_factory=dict)
    """participant id -> Moodle user id found by the deployment's bulk look-up (no look-up needed)."""
    looked_up: bool = False
    """True when the bulk look-up ran: a participant missing from ``known_users`` has no account yet."""
    match_field: MatchField | None = None
    """The run's MOODLE_USER_MATCH_FIELD (None: a batch started before it was passed on)."""
    user_auth: str | None = None
    """The run's MOODLE_USER_AUTH (None: a batch started before it was passed on)."""


@dataclass
class BatchResult:
    participants: list[ParticipantOutcome]


@dataclass
class Progress:
    """What ``progress --json`` prints: the task and one subtask per participant."""

    workflow_id: str
    kind: str
    event_id: str
    state: str = "running"
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
