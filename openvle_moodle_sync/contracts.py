"""The names other processes rely on: the error types of failed activities and runs, and the query and the
signal of the workflows. Workflows, activities, the starter, the CLI and the tests use these symbols, never
the strings, so that a name cannot drift between the side that raises or serves and the side that reads.

The failures of Moodle calls carry their client error's class name as type (`MoodleError` subclasses,
e.g. ``InvalidTokenError``): match them with the class (``InvalidTokenError.__name__``)."""

from __future__ import annotations

from enum import StrEnum


class ErrorType(StrEnum):
    """Types of the expected, non-retryable failures this service raises itself (business rules).

    One naming rule: a step that cannot be done (an activity's or a call's failure) is named ``…Error``, as
    the Moodle client's error classes are; a run stopped by a rule of its own after doing what it could is
    named by its outcome (``DeploymentIncomplete``, ``MassRemovalBlocked``: documented to the backend)."""

    # --- a step that cannot be done ------------------------------------------------------------------
    SLUG_TAKEN = "SlugTakenError"
    """Another Moodle course, not made for this event, uses the event's slug."""
    TEMPLATE_NOT_FOUND = "TemplateNotFoundError"
    """The event's moodle_course_id names no Moodle course."""
    USER_CONFLICT = "UserConflictError"
    """The participant matches no account, and another account holds their other identifier."""
    USER_CREATION = "UserCreationError"
    """Moodle refused to create the participant's account."""
    MOODLE_USER_MISSING = "MoodleUserMissingError"
    """The participant's Moodle account was deleted during the run."""
    EVENT_NOT_DEPLOYED = "EventNotDeployedError"
    """An operation that needs the event deployed (add, remove, archive, rerun) on an event that is not."""
    EVENT_ARCHIVED = "EventArchivedError"
    """An operation on an archived event that would change it (add, remove, deploy without reopen, rerun)."""
    EVENT_DELETED = "EventDeletedError"
    """An operation on a deleted event (add, remove, archive, deploy without reopen, rerun)."""
    EVENT_BUSY = "EventBusyError"
    """An add or remove while the event has as many operations waiting as it takes (refused at the call)."""
    ROSTER_REFUSED = "RosterRefusedError"
    """Temporal refused a call to the event's roster for good (a permission, a missing search attribute)."""
    MISSING_FUNCTIONS = "MissingFunctionsError"
    """The token's service lacks a function MOODLE_UNENROL_ACTION needs; checked before any write."""

    # --- a run's outcome ----------------------------------------------------------------------------
    DEPLOYMENT_INCOMPLETE = "DeploymentIncomplete"
    """A deployment that finished with failed participants (the run's result is in the failure's details)."""
    MASS_REMOVAL_BLOCKED = "MassRemovalBlocked"
    """A deploy would take away too many of the people it enrolled (MOODLE_MAX_REMOVAL_PERCENT): nobody went."""


PROGRESS_QUERY = "progress"
"""The query every workflow answers with its progress (DeployBatch: its participants' outcomes)."""

OPERATION_SIGNAL = "operation"
"""The signal that brings an `Operation` to the event's `EventLife` workflow (sent with start)."""

STUDENTS_SETTLED_SIGNAL = "students_settled"
"""The signal by which `DeployEvent` tells a share of instructors (`DeployBatch`) that every student share
has ended: its instructors may be enrolled now (their accounts were made meanwhile)."""

RECORD_SIGNAL = "record"
"""The signal by which an operation's child workflow tells `EventLife` whom it enrolled or took away."""

ENTRIES_QUERY = "entries"
"""The query of `EventLife` that returns the roster: participant id -> `RosterEntry`."""

LIFE_MEMO = "life"
"""The memo key under which `EventLife` keeps its `LifeView` (read by the API without a worker)."""
