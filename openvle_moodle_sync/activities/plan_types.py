"""What `plan` shows: what a deploy of the event would do now (`python -m starter plan --json`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.models import Event
from openvle_moodle_sync.settings import UnenrolAction

from .roster import RosterEntry
from .types import Removal, SyncConfig


class CourseAction(StrEnum):
    CREATE = "create"
    REUSE = "reuse"


class MatchHow(StrEnum):
    EXACT = "exact"
    """Found by the email as given."""
    EMAIL_CASE = "email_case"
    """Found by an email that differs only in letter case."""
    USERNAME = "username"
    """Found by username (MOODLE_USER_MATCH_FIELD=username)."""


class DriftKind(StrEnum):
    NOT_ENROLLED = "not_enrolled"
    """Enrolled by this service earlier, no longer enrolled in Moodle (unenrolled by hand)."""
    ROLE_CHANGED = "role_changed"
    """Enrolled by this service with their role, now holding another managed role (changed by hand)."""


class MailKind(StrEnum):
    NEW_ACCOUNT = "new_account"
    WELCOME = "welcome"


@dataclass(frozen=True)
class PlanRequest:
    event: Event


@dataclass(frozen=True)
class PlanEventInput:
    event: Event
    course_id: int | None
    roster: dict[str, RosterEntry]
    config: SyncConfig
    removal_action: UnenrolAction


@dataclass
class CoursePlan:
    action: CourseAction
    id: int | None = None


@dataclass
class AccountMatch:
    participant_id: str
    moodle_user_id: int
    how: MatchHow


@dataclass
class PlannedEnrol:
    participant_id: str
    role: str
    moodle_user_id: int | None = None


@dataclass
class PlannedRoleChange:
    participant_id: str
    moodle_user_id: int
    role: str
    """The role the deploy gives them."""


@dataclass
class Drift:
    participant_id: str
    moodle_user_id: int
    kind: DriftKind


@dataclass
class PlanProblem:
    """Something that would stop the deploy, with the failure type and words the deploy would end with."""

    type: ErrorType
    message: str


@dataclass
class EventPlan:
    """What a deploy of the event would do now. Building it wrote nothing to Moodle and sent no mail."""

    event_id: str
    course: CoursePlan = field(default_factory=lambda: CoursePlan(CourseAction.CREATE))
    skipped_reason: str | None = None
    create_accounts: list[str] = field(default_factory=list)
    matched_accounts: list[AccountMatch] = field(default_factory=list)
    enrol: list[PlannedEnrol] = field(default_factory=list)
    change_role: list[PlannedRoleChange] = field(default_factory=list)
    remove: list[Removal] = field(default_factory=list)
    expected_mails: dict[str, int] = field(default_factory=dict)
    blocked_by_brake: bool = False
    """True when a deploy would take nobody away and fail `MassRemovalBlocked` (see `remove`)."""
    drift: list[Drift] = field(default_factory=list)
    """Hand edits in Moodle since this service enrolled people; a deploy or re-run repairs them."""
    unchanged: int = 0
    """Participants already enrolled, active, with exactly their role."""
    problems: list[PlanProblem] = field(default_factory=list)
    """What would stop a deploy at its first steps (the template is missing, another course holds the slug);
    empty when nothing would. A deploy now would fail with the first of them."""
