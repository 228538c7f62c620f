"""Moodle's REST web services: a typed async client, its errors and the connection check."""

from .check import ConnectionReport, check_connection
from .client import MoodleClient
from .errors import (
    AccessDeniedError,
    InvalidParameterError,
    InvalidTokenError,
    MoodleApiError,
    MoodleConnectionError,
    MoodleDatabaseError,
    MoodleError,
    MoodlePHPError,
    MoodleResponseError,
    MoodleTimeoutError,
    MoodleWarning,
    MoodleWarningsError,
)

__all__ = [
    "AccessDeniedError",
    "ConnectionReport",
    "InvalidParameterError",
    "InvalidTokenError",
    "MoodleApiError",
    "MoodleClient",
    "MoodleConnectionError",
    "MoodleDatabaseError",
    "MoodleError",
    "MoodlePHPError",
    "MoodleResponseError",
    "MoodleTimeoutError",
    "MoodleWarning",
    "MoodleWarningsError",
    "check_connection",
    "client_from_settings",
]


def client_from_settings(settings: "Settings", **kwargs: object) -> MoodleClient:  # type: ignore[name-defined]  # noqa: F821
    """A client configured from MOODLE_URL, MOODLE_TOKEN, MOODLE_TIMEOUT and MOODLE_VERIFY_SSL."""
    return MoodleClient(
        settings.moodle_url,
        settings.moodle_token.get_secret_value(),
        timeout=settings.moodle_timeout,
        verify_ssl=settings.moodle_verify_ssl,
        max_connections=settings.moodle_max_concurrency,
        **kwargs,  # type: ignore[arg-type]
    )
