"""How activity failures reach the workflow: as `ApplicationError`s that keep Moodle's errorcode and
say whether a retry can help. Only these types cross into workflow history.

They are expected failures (a slug taken, Moodle down, a bad token), not bugs: each is logged as one
line with its type and message (logger ``activities``), and raised with the BENIGN category, which makes
the Temporal SDK log it at DEBUG instead of a WARNING with a traceback. Any other exception is a bug and
keeps the SDK's WARNING with its traceback."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.moodle.errors import (
    AccessDeniedError,
    InvalidTokenError,
    MoodleApiError,
    MoodleError,
    MoodleResponseError,
    MoodleWarningsError,
)

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("activities")

#: Errors after which no participant of a run can succeed: the run stops at once.
CONFIGURATION_ERRORS: tuple[type[MoodleError], ...] = (InvalidTokenError, AccessDeniedError, MoodleResponseError)


def is_configuration_error_type(error_type: str | None) -> bool:
    """Whether an ApplicationError's type names one of the `CONFIGURATION_ERRORS`."""
    return error_type in {cls.__name__ for cls in CONFIGURATION_ERRORS}


def sync_error(message: str, type_: ErrorType, **details: Any) -> ApplicationError:
    """A failure that no retry can fix (bad input, a course that is not ours, ...)."""
    return ApplicationError(message, details, type=type_, non_retryable=True,
                            category=ApplicationErrorCategory.BENIGN)


def to_application_error(error: MoodleError) -> ApplicationError:
    details: dict[str, Any] = {"function": error.function}
    if isinstance(error, MoodleApiError):
        details.update(error.to_dict())
    elif isinstance(error, MoodleWarningsError):
        details["warnings"] = [w.warningcode for w in error.warnings]
    return ApplicationError(str(error), details, type=type(error).__name__, non_retryable=not error.retryable,
                            category=ApplicationErrorCategory.BENIGN)


def log_failure(error: ApplicationError) -> None:
    """One line for an expected failure: which activity, its type and message, and what happens next."""
    info = activity.info()
    outcome = "failed for good" if error.non_retryable else f"attempt {info.attempt} failed, will be retried"
    log.warning("%s %s (workflow %s): %s: %s", info.activity_type, outcome, info.workflow_id, error.type,
                " ".join(error.message.split()))


def moodle_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn the client's errors into `ApplicationError`s, retryable exactly when the client says so, and
    log every expected failure as one line."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except MoodleError as error:
            failure = to_application_error(error)
        except ApplicationError as error:
            failure = error
        log_failure(failure)
        raise failure from None

    return wrapper
