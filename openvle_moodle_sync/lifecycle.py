"""An event's life: its states, the operations on it, and the one rule that says which operation makes sense
in which state.

The rule serves twice: the backend's API refuses an operation at the call, from what the server holds about
the event (the `EventLife` workflow's memo), and `EventLife` checks it again when it takes the operation up,
in case the state changed in between. Pure code: the workflow imports it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.moodle.errors import MoodleConnectionError, MoodleDatabaseError, MoodleTimeoutError
from openvle_moodle_sync.names import CLI


class LifeState(StrEnum):
    """Where the event stands in Moodle."""

    NOT_DEPLOYED = "not_deployed"
    DEPLOYED = "deployed"
    ARCHIVED = "archived"
    DELETED = "deleted"


class OperationKind(StrEnum):
    """What the backend (or an operator) asks of the event."""

    DEPLOY = "deploy"
    RERUN = "rerun"
    ADD = "add"
    REMOVE = "remove"
    ARCHIVE = "archive"
    DELETE = "delete"


class OperationState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    REFUSED = "refused"
    """Not run: it makes no sense in the state the event had when it was taken up."""
    JOINED = "joined"
    """The same as an operation queued or running (same list and options): its result is that one's."""
    SUPERSEDED = "superseded"
    """A queued deploy replaced by a later one before it started: its result is the later one's."""


REOPEN_HINT = f"deploy it again with reopen=True ({CLI} deploy --event EVENT.json --reopen)"


@dataclass(frozen=True)
class Refusal:
    """Why an operation is refused: the failure type, the words, and what to do."""

    error_type: ErrorType
    message: str
    next_step: str


def _when(since: str | None) -> str:
    return f" on {since[:19].replace('T', ' ')} UTC" if since else ""


_WHY: dict[tuple[LifeState, OperationKind | None], str] = {
    (LifeState.NOT_DEPLOYED, OperationKind.RERUN): "has no deployment to re-run",
    (LifeState.NOT_DEPLOYED, OperationKind.ARCHIVE): "has no Moodle course to archive",
    (LifeState.NOT_DEPLOYED, None): "is not deployed to Moodle, so its participants cannot change there",
    (LifeState.ARCHIVED, OperationKind.DEPLOY): "a deploy would enrol its students again in its hidden course",
    (LifeState.ARCHIVED, OperationKind.RERUN): "its last deployment is over",
    (LifeState.ARCHIVED, None): "its course is hidden and its students are gone, so its participants cannot change",
    (LifeState.DELETED, OperationKind.DEPLOY): "a deploy would bring it back",
    (LifeState.DELETED, OperationKind.RERUN): "its last deployment is over",
    (LifeState.DELETED, OperationKind.ARCHIVE): "there is nothing left to archive",
    (LifeState.DELETED, None): "its participants cannot change",
}
"""Why an operation (None: any other) makes no sense in a state."""

_ANSWER: dict[LifeState, tuple[ErrorType, str, str]] = {
    LifeState.NOT_DEPLOYED: (ErrorType.EVENT_NOT_DEPLOYED, "{event} {why}.",
                             f"Deploy it first ({CLI} deploy --event EVENT.json); changes asked while it deploys "
                             "apply after it."),
    LifeState.ARCHIVED: (ErrorType.EVENT_ARCHIVED, "{event} was archived{when}: {why}.",
                         f"To start its life again, {REOPEN_HINT}: the course is shown again and Moodle converges "
                         "on the list."),
    LifeState.DELETED: (ErrorType.EVENT_DELETED, "{event} was deleted{when}: {why}.",
                        f"To start its life again, {REOPEN_HINT}: a deleted course is copied anew from the "
                        "template."),
}
"""Per state: the failure type, the words and the next step of a refusal."""


def allowed(kind: OperationKind, state: LifeState, *, reopen: bool = False, deployed_before: bool = True) -> bool:
    """Whether ``kind`` applies to an event in ``state``. ``deployed_before``: a deployment of the event was
    asked before (a rerun repeats it)."""
    if kind == OperationKind.DELETE or state == LifeState.DEPLOYED:
        return True  # deleting is always possible; an event never deployed has nothing to delete
    if state == LifeState.NOT_DEPLOYED:
        return kind == OperationKind.DEPLOY or (kind == OperationKind.RERUN and deployed_before)
    # archived or deleted: a deploy that reopens starts the life again; archiving again changes nothing
    return (kind == OperationKind.DEPLOY and reopen) or (kind, state) == (OperationKind.ARCHIVE, LifeState.ARCHIVED)


def refusal(kind: OperationKind, state: LifeState, *, event_id: str, since: str | None = None,
            reopen: bool = False, deployed_before: bool = True) -> Refusal | None:
    """Why ``kind`` cannot apply to an event in ``state`` (None: it can; see `allowed`)."""
    if allowed(kind, state, reopen=reopen, deployed_before=deployed_before):
        return None
    error_type, words, step = _ANSWER[state]
    why = _WHY.get((state, kind)) or _WHY[(state, None)]
    return Refusal(error_type, words.format(event=f"Event {event_id}", when=_when(since), why=why), step)


def state_after(kind: OperationKind, state: LifeState) -> LifeState:
    """The state an accepted operation leads to once it succeeds."""
    return {OperationKind.DEPLOY: LifeState.DEPLOYED, OperationKind.RERUN: LifeState.DEPLOYED,
            OperationKind.ARCHIVE: LifeState.ARCHIVED, OperationKind.DELETE: LifeState.DELETED}.get(kind, state)


EVENT_FAULTS: dict[str, str] = {
    ErrorType.TEMPLATE_NOT_FOUND: (f"the event's moodle_course_id names no Moodle course: map the event's "
                                   f"environment to a template course (list them with: {CLI} courses)"),
    ErrorType.SLUG_TAKEN: ("another Moodle course, not made for this event, uses the event's slug as its short "
                           "name: give the event another slug"),
    ErrorType.USER_CONFLICT: ("a participant's username and email belong to two different Moodle accounts: "
                              "correct that participant's details in the event"),
    ErrorType.USER_CREATION: ("Moodle refused to create a participant's account (the message says which value): "
                              "correct that participant's details in the event"),
}
"""Failures caused by the event itself (its template, slug or a participant's data), with what to change in
it: a rerun repeats the same event and fails the same way, so the fix is to correct the event and deploy it
again."""

OUTAGES: frozenset[str] = frozenset({
    MoodleConnectionError.__name__, MoodleTimeoutError.__name__, MoodleDatabaseError.__name__, "TimeoutError",
})
"""Failures of Moodle's availability: nothing is wrong with the event or the settings."""

REFUSALS = frozenset({ErrorType.EVENT_NOT_DEPLOYED, ErrorType.EVENT_ARCHIVED, ErrorType.EVENT_DELETED})


def again(kind: OperationKind, event_id: str) -> str:
    """The command that repeats an operation of ``kind``."""
    return {OperationKind.DEPLOY: f"{CLI} rerun --event-id {event_id} --wait",
            OperationKind.RERUN: f"{CLI} rerun --event-id {event_id} --wait",
            OperationKind.ADD: f"{CLI} add --event EVENT.json --participant PARTICIPANT.json",
            OperationKind.REMOVE: f"{CLI} remove --event EVENT.json --participant PARTICIPANT.json",
            OperationKind.ARCHIVE: f"{CLI} archive --event EVENT.json",
            OperationKind.DELETE: f"{CLI} delete --event EVENT.json"}[kind]


def is_event_fault(error_type: str | None) -> bool:
    """Whether a failure of ``error_type`` is a fault of the event itself (fixed by deploying it again)."""
    return error_type in EVENT_FAULTS or error_type == ErrorType.MASS_REMOVAL_BLOCKED


def next_step(error_type: str | None, kind: OperationKind, event_id: str, *, configuration_error: bool = False,
              participant_types: Iterable[str | None] | None = None, event_file: str = "EVENT.json",
              command: str | None = None) -> str:
    """What the operator does after an operation of ``kind`` failed with ``error_type`` (the root cause's,
    `failures.describe_failure`): a fault of the event leads to fixing the event and deploying it again; a
    fault of the setup (token, URL, functions, a setting, an outage) to fixing that and repeating the
    operation. The one mapping: the workflows record it, `progress` and the CLI show it.

    ``configuration_error``: the type names a bad token, a denied function or a wrong URL
    (`activities.errors.is_configuration_error_type`). ``participant_types``: the error types of a
    `DeploymentIncomplete` run's failed participants, when known. ``event_file``: the event's JSON, when the
    caller knows it. ``command``: the command that repeats the operation as the operator typed it (default
    `again`)."""
    redeploy = f"{CLI} deploy --event {event_file} --wait"
    repeat = command or again(kind, event_id)
    if error_type in REFUSALS:
        return "Nothing was written. " + (
            f"Deploy it first ({redeploy})." if error_type == ErrorType.EVENT_NOT_DEPLOYED
            else f"To start its life again, {REOPEN_HINT}.")
    if error_type in EVENT_FAULTS:
        return f"Fix the event: {EVENT_FAULTS[error_type]}. Then deploy it again: {redeploy}"
    if error_type == ErrorType.MASS_REMOVAL_BLOCKED:  # a rerun would stop at the brake again
        return (f"Check the event's list ({CLI} plan --event {event_file} shows who would go). If they really "
                f"leave: {CLI} deploy --event {event_file} --allow-mass-removal --wait")
    if configuration_error:
        return (f"The worker's Moodle settings are wrong (see the message; `{CLI} doctor` checks them): fix them "
                "where the worker runs (a token: set MOODLE_TOKEN on the worker; a function: add it to the "
                f"token's service in Moodle), restart the worker, then: {repeat}")
    if error_type == ErrorType.MISSING_FUNCTIONS:
        return ("Add the functions named in the message to the token's service in Moodle (Site administration > "
                "Server > Web services > External services), or set another MOODLE_UNENROL_ACTION on the worker "
                f"and restart it; then: {repeat}")
    if error_type in OUTAGES:
        return f"Moodle did not answer in time (see the message): once it answers again, {repeat}"
    if error_type == ErrorType.DEPLOYMENT_INCOMPLETE:
        if participant_types is None:
            return (f"Read each failed participant's error. A participant's own data: correct the event and "
                    f"deploy it again ({redeploy}). Anything else: fix it, then {repeat} (it only does what is "
                    "missing).")
        if any(is_event_fault(t) for t in participant_types):
            return ("Fix the failed participants' details in the event (each one's error says what Moodle "
                    f"refused), then deploy it again (it also retries the others): {redeploy}")
        return f"Fix the cause named in each failed participant's error, then: {repeat} (it only does what is missing)"
    return f"Fix the cause named in the message, then: {repeat} (it only does what is missing)"
