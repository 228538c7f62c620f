"""Inputs and results of the activities (small, so workflow histories stay small)."""

from __future__ import annotations

from dataclasses import dataclass, field

from openvle_moodle_sync.models import Participant, Role
from openvle_moodle_sync.settings import MatchField, UnenrolAction


@dataclass(frozen=True)
class SyncConfig:
    """The worker's settings that shape a run, read once per run and kept in its history, so that a
    settings change on the worker never changes the course of a run that is already going.

    The workflows pass what an activity needs of it in the activity's input: activities never read the
    worker's live settings (only its connection: URL, token, MOODLE_TIMEOUT)."""

    enabled: bool
    course_visible: bool = True
    delete_course_on_event_delete: bool = False
    sync_timeout_s: float = 10.0
    course_timeout_s: float = 600.0
    retry_max_interval_s: float = 60.0
    instructor_role_id: int = 3
    student_role_id: int = 5
    match_field: MatchField = MatchField.EMAIL
    unenrol_action: UnenrolAction = UnenrolAction.UNENROL
    """MOODLE_UNENROL_ACTION."""
    max_removal_percent: float = 25.0
    """MOODLE_MAX_REMOVAL_PERCENT: the mass-removal brake of a deploy."""
    user_auth: str = "manual"
    """MOODLE_USER_AUTH."""

    @property
    def role_ids(self) -> dict[Role, int]:
        """The Moodle role id of each role: the run's one map, for its enrolments, removals and plan."""
        return {Role.STUDENT: self.student_role_id, Role.INSTRUCTOR: self.instructor_role_id}


@dataclass(frozen=True)
class PrepareCourseInput:
    event_id: str
    name: str
    slug: str
    template_course_id: int
    visible: bool


@dataclass(frozen=True)
class CourseRef:
    id: int
    shortname: str
    created: bool = False
    """True when this call made the course (it has no enrolments yet)."""


@dataclass(frozen=True)
class MatchKey:
    """What identifies a participant in Moodle, without the rest of their personal data."""

    participant_id: str
    username: str
    email: str
    role_id: int


@dataclass(frozen=True)
class PlanInput:
    course_id: int
    match_field: MatchField
    keys: list[MatchKey]
    managed_role_ids: list[int]
    """The run's instructor and student role ids."""


@dataclass(frozen=True)
class PlanResult:
    done: dict[str, int] = field(default_factory=dict)
    """participant id -> Moodle user id, for those already enrolled with exactly their role."""
    role_changes: list[str] = field(default_factory=list)
    """Participants enrolled with another managed role, with none (remove_roles) or suspended: enrol_user
    swaps or gives the role back on the same enrolment, or re-activates it (re-created without the role
    functions)."""


@dataclass(frozen=True)
class EnsureUserInput:
    participant: Participant
    known_missing: bool = False
    """A bulk look-up just found no account: the first attempt creates it without looking again."""
    match_field: MatchField = MatchField.EMAIL
    """The run's MOODLE_USER_MATCH_FIELD."""
    user_auth: str = "manual"
    """The run's MOODLE_USER_AUTH for a new account."""


@dataclass(frozen=True)
class FindUsersInput:
    """A deployment's bulk look-up: the accounts of every key, `LOOKUP_BATCH` people a call."""

    keys: list[MatchKey]
    match_field: MatchField
    """The run's MOODLE_USER_MATCH_FIELD."""


@dataclass(frozen=True)
class FoundUsers:
    user_ids: dict[str, int] = field(default_factory=dict)
    """participant id -> Moodle user id, for those whose account exists."""


@dataclass(frozen=True)
class UserRef:
    user_id: int
    created: bool


@dataclass(frozen=True)
class EnrolInput:
    course_id: int
    user_id: int
    role_id: int
    other_role_ids: list[int]
    """Managed roles the user must not keep (a student who becomes instructor, and back)."""
    participant_id: str
    course_may_have_teacher: bool = True
    """When False (a fresh course during the student phase) a retry needs no check: no mail can go out."""


@dataclass(frozen=True)
class EnrolResult:
    enrolled: bool
    """False when the user already held exactly this role (nothing was written)."""
    kept_enrolment: bool = False
    """True when the existing enrolment was kept: a role given back or swapped in place, or re-activated."""
    found_enrolled: bool = False
    """True when the user was in the course before this activity wrote (another role, none, or suspended,
    perhaps by hand). Known only where it looks first: with ``other_role_ids`` (every added participant)."""


@dataclass(frozen=True)
class WithdrawInput:
    """Take one person away from a course by the run's MOODLE_UNENROL_ACTION."""

    course_id: int
    user_id: int
    role_id: int
    """The role they were enrolled with (suspend keeps it)."""
    action: UnenrolAction
    participant_id: str
    managed_role_ids: list[int]
    """The roles this service gives (the run's student and instructor roles): the only ones it takes away."""


@dataclass(frozen=True)
class WithdrawUsersInput:
    """Take many people away from a course by the run's MOODLE_UNENROL_ACTION (archive's students)."""

    course_id: int
    user_ids: list[int]
    role_id: int
    action: UnenrolAction
    managed_role_ids: list[int]
    """As `WithdrawInput.managed_role_ids`."""
    listed: bool = True
    """The users were just read from the course's enrolments (archive): unenrolling needs no second read.
    False (a deploy's removals, from the roster): who is no longer enrolled is left alone, unwritten."""


@dataclass(frozen=True)
class WithdrawResult:
    changed: bool
    """False when there was nothing to do (not enrolled, already suspended or without roles, or keep)."""
    note: str


@dataclass
class Removal:
    """One person a deploy takes away (`DeployResult.removed`), or would take away (the plan's `remove`):
    no longer listed, enrolled by this service for the event earlier."""

    participant_id: str
    moodle_user_id: int
    role: str
    action: UnenrolAction
    """MOODLE_UNENROL_ACTION."""


@dataclass(frozen=True)
class UnenrolInput:
    course_id: int
    user_ids: list[int]


@dataclass(frozen=True)
class FindUserInput:
    """One participant's account, for a removal (None when Moodle has none)."""

    participant: Participant
    match_field: MatchField
    """The run's MOODLE_USER_MATCH_FIELD."""


@dataclass(frozen=True)
class ArchivePlan:
    student_user_ids: list[int]
    instructors_kept: int


@dataclass(frozen=True)
class ArchivePlanInput:
    course_id: int
    student_role_id: int
    instructor_role_id: int
