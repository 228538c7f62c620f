"""What the workflows share: reading the worker's config, activity options, and error wording."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import NotRequired, TypedDict, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.errors import is_configuration_error_type
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.types import CourseRef, SyncConfig
    from openvle_moodle_sync.failures import describe_failure


T = TypeVar("T")


class ActivityOptions(TypedDict):
    start_to_close_timeout: timedelta
    retry_policy: RetryPolicy
    heartbeat_timeout: NotRequired[timedelta]


def retry_policy(max_interval_s: float) -> RetryPolicy:
    """Transient failures (Moodle down, timeouts) are retried with backoff until Moodle is back;
    errors a retry cannot fix are raised non-retryable by the activities and fail at once."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=max_interval_s),
    )


async def load_config() -> SyncConfig:
    """The worker's settings for this run, recorded in history (a local activity: no Moodle call)."""
    return await workflow.execute_local_activity_method(
        MoodleSyncActivities.load_sync_config, start_to_close_timeout=timedelta(seconds=10)
    )


def skip_reason(config: SyncConfig, moodle_course_id: int | None) -> str | None:
    """Why a run makes no Moodle call at all, or None when it has work to do."""
    if not config.enabled:
        return "Moodle integration is disabled (MOODLE_ENABLED is false); nothing was done"
    if moodle_course_id is None:
        return "the event's environment has no Moodle course (moodle_course_id is null)"
    return None


@dataclass(frozen=True)
class EventCourse:
    """Where a run on an event's course starts: the run's settings, why it does nothing (if it does not),
    and the course that carries the event's mark (None: there is none)."""

    config: SyncConfig
    skipped_reason: str | None = None
    course: CourseRef | None = None


async def event_course(event_id: str, moodle_course_id: int | None) -> EventCourse:
    """The run's settings, then (unless Moodle is off for it) the event's course."""
    config = await load_config()
    reason = skip_reason(config, moodle_course_id)
    if reason:
        return EventCourse(config, reason)
    course = await workflow.execute_activity_method(
        MoodleSyncActivities.find_event_course, event_id, **quick(config))
    return EventCourse(config, course=course)


def per_user(sync_timeout_s: float, retry_max_interval_s: float) -> ActivityOptions:
    """Options of a per-user activity: MOODLE_SYNC_TIMEOUT for each attempt."""
    return {
        "start_to_close_timeout": timedelta(seconds=sync_timeout_s),
        "retry_policy": retry_policy(retry_max_interval_s),
    }


def quick(config: SyncConfig) -> ActivityOptions:
    return per_user(config.sync_timeout_s, config.retry_max_interval_s)


def checked(config: SyncConfig) -> ActivityOptions:
    """Options of a per-user write that first reads the course's enrolment list (whose size grows with
    the course): MOODLE_SYNC_TIMEOUT, but at least two minutes."""
    return per_user(max(config.sync_timeout_s, 120.0), config.retry_max_interval_s)


def slow(config: SyncConfig) -> ActivityOptions:
    """Options of a course-wide activity (duplicate, delete, list): MOODLE_COURSE_TIMEOUT."""
    return {
        "start_to_close_timeout": timedelta(seconds=config.course_timeout_s),
        "retry_policy": retry_policy(config.retry_max_interval_s),
    }


async def with_root_cause(work: Awaitable[T], doing: str) -> T:
    """``work``'s result; an activity or child workflow failure ends the run as `as_run_failure`: the root
    cause (Moodle's words, not "Activity task failed") in the run's failure, the UI's first line."""
    try:
        return await work
    except (ActivityError, ChildWorkflowError) as error:
        raise as_run_failure(error, doing) from error


def as_run_failure(error: BaseException, doing: str) -> ApplicationError:
    """A failure of the whole run that shows the real cause at the top, where the UI shows it first."""
    failure = describe_failure(error)
    return ApplicationError(f"{doing} failed: {failure.message}", type=failure.type, non_retryable=True)


def is_configuration_error(error: BaseException) -> bool:
    """A bad token, a missing function, a wrong URL: no participant can succeed, stop the run."""
    return is_configuration_error_type(describe_failure(error).type)
