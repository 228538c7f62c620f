"""A Temporal failure's type and message as operators see them: the root cause, never its wrappers.

A run that fails because an activity failed reaches its caller as `WorkflowFailureError` → `ActivityError`
("Activity task failed") → the `ApplicationError` the activity raised (``AccessDeniedError``: the token's
service lacks ``core_role_unassign_roles``). Only the last one says what to fix, so the CLI, `progress`
and the demo show that one, with its type: an `ApplicationError`'s ``type`` (`contracts.ErrorType`, or a
Moodle error class's name), else the exception's class name (``TimeoutError``, ``CancelledError``…).

Deterministic and free of I/O: workflows may use it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, FailureError


def root_cause(error: BaseException) -> BaseException:
    """The innermost failure past the ones that only wrap another: a run's failure for its caller, an
    activity's and a child workflow's (the error itself when it wraps nothing)."""
    while isinstance(error, WorkflowFailureError | ActivityError | ChildWorkflowError) and error.cause is not None:
        error = error.cause
    return error


@dataclass(frozen=True)
class FailureInfo:
    """A failure's type and message, as shown to operators (``[type] message``)."""

    type: str
    message: str

    def __str__(self) -> str:
        return f"[{self.type}] {self.message}"


def describe_failure(error: BaseException) -> FailureInfo:
    """The type and message of ``error``'s root cause."""
    cause = root_cause(error)
    if isinstance(cause, ApplicationError):
        return FailureInfo(cause.type or type(cause).__name__, cause.message)
    if isinstance(cause, FailureError):
        return FailureInfo(type(cause).__name__, cause.message)
    return FailureInfo(type(cause).__name__, str(cause))
