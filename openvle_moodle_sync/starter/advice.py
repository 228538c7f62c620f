"""What to do after a run failed: the one action that fixes it, by the failure's type.

Two kinds of fault, two ways out:

- the **event itself** is wrong (its template does not exist, its slug is taken, a participant's details
  clash with another Moodle account or are refused, the list would take too many people away): a re-run
  would use the same event and fail the same way, so the event is fixed and **deployed again**;
- the **environment** is wrong (the token, the URL, a function missing from the token's service, an
  outage): the event is fine, so that is fixed and the run **re-run** (``rerun``; it only does what is
  missing) or, for another operation, the same command given again.

The types are those of `contracts.ErrorType` and the Moodle client's error classes (`moodle.errors`),
as `failures.describe_failure` reads them from the failure's root cause.
"""

from __future__ import annotations

from collections.abc import Iterable

from openvle_moodle_sync.activities.errors import is_configuration_error_type
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.moodle.errors import MoodleConnectionError, MoodleDatabaseError, MoodleTimeoutError
from openvle_moodle_sync.names import CLI

#: The faults of the event itself, each with what to change in it.
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

#: Faults of Moodle's availability: nothing is wrong with the event or the settings.
OUTAGES: frozenset[str] = frozenset({
    MoodleConnectionError.__name__, MoodleTimeoutError.__name__, MoodleDatabaseError.__name__, "TimeoutError",
})


def deploy_command(event_file: str = "EVENT.json") -> str:
    """The command that deploys the event (again)."""
    return f"{CLI} deploy --event {event_file} --wait"


def rerun_command(event_id: str) -> str:
    """The command that runs the event's last deployment again."""
    return f"{CLI} rerun --event-id {event_id} --wait"


def is_event_fault(kind: str | None) -> bool:
    """Whether a failure of type ``kind`` is a fault of the event itself (fixed by deploying it again)."""
    return kind in EVENT_FAULTS or kind in (ErrorType.MASS_REMOVAL_BLOCKED, ErrorType.EVENT_NOT_DEPLOYED)


def next_step(kind: str | None, *, event_id: str, again: str | None = None, event_file: str = "EVENT.json",
              participant_types: Iterable[str | None] = ()) -> str:
    """The next step after a run of event ``event_id`` failed with error type ``kind``.

    ``again`` is the command that runs the failed operation again (by default the deployment's ``rerun``);
    ``event_file`` the event's JSON, when the caller knows it; ``participant_types`` the error types of
    a `DeploymentIncomplete` run's failed participants."""
    deploy = deploy_command(event_file)
    if kind == ErrorType.EVENT_NOT_DEPLOYED:  # an add or remove before the event's course exists
        return f"Deploy the event first: {deploy}" + (f"; then: {again}" if again else " (it enrols everyone listed)")
    again = again or rerun_command(event_id)
    if kind == ErrorType.MASS_REMOVAL_BLOCKED:  # a re-run would stop at the brake again
        return (f"Check the event's list ({CLI} plan --event {event_file} shows who would go). If they really "
                f"leave: {CLI} deploy --event {event_file} --allow-mass-removal --wait")
    if kind in EVENT_FAULTS:
        return f"Fix the event: {EVENT_FAULTS[kind]}. Then deploy it again: {deploy}"
    if kind == ErrorType.DEPLOYMENT_INCOMPLETE:
        if any(is_event_fault(t) for t in participant_types):
            return ("Fix the failed participants' details in the event (each one's error says what Moodle "
                    f"refused), then deploy it again (it also retries the others): {deploy}")
        return f"Fix the cause named in each failed participant's error, then: {again} (it only does what is missing)"
    if is_configuration_error_type(kind):
        return ("The worker's Moodle settings are wrong (see the message): fix them where the worker runs (a "
                "token: set MOODLE_TOKEN on the worker; a function: add it to the token's service in Moodle), "
                f"restart the worker, then: {again}")
    if kind == ErrorType.MISSING_FUNCTIONS:
        return ("Add the functions named in the message to the token's service in Moodle (Site administration > "
                "Server > Web services > External services), or set another MOODLE_UNENROL_ACTION on the worker "
                f"and restart it; then: {again}")
    if kind == ErrorType.INVALID_SETTING:
        return f"Run a worker that knows the setting named in the message (the same version or newer), then: {again}"
    if kind in OUTAGES:
        return f"Moodle did not answer in time (see the message): once it answers again, {again}"
    return f"Fix the cause named in the message, then: {again} (it only does what is missing)"
