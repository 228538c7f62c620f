"""How activity failures reach the workflow: as `ApplicationError`s that keep Moodle's errorcode and
say whether a retry can help. Only these types cross into workflow history."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError

from openvle_moodle_sync.moodle.errors import MoodleApiError, MoodleError, MoodleWarningsError

P = ParamSpec("P")
R = TypeVar("R")

#: Error types after which no participant of a run can succeed: the run stops at once.
CONFIGURATION_ERRORS = frozenset({"InvalidTokenError", "AccessDeniedError", "MoodleResponseError"})


def sync_error(message: str, type_: str, **details: Any) -> ApplicationError:
    """A failure that no retry can fix (bad input, a course that is not ours, ...)."""
    return ApplicationError(message, details, type=type_, non_retryable=True)


def to_application_error(error: MoodleError) -> ApplicationError:
    details: dict[str, Any] = {"function": error.function}
    if isinstance(error, MoodleApiError):
        details.update(error.to_dict())
    elif isinstance(error, MoodleWarningsError):
        details["warnings"] = [w.warningcode for w in error.warnings]
    return ApplicationError(str(error), details, type=type(error).__name__, non_retryable=not error.retryable)


def moodle_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn the client's errors into `ApplicationError`s, retryable exactly when the client says so."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except MoodleError as error:
            raise to_application_error(error) from None

    return wrapper
