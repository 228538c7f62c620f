"""What can go wrong when talking to Moodle, as a small hierarchy.

Every error says what happened in the words of the OpenVLE guide's troubleshooting table
("Moodle API Error [invalidtoken]: ...", "Failed to connect to Moodle ...") followed by the fix, keeps
Moodle's ``exception``, ``errorcode`` and ``message``, and says whether trying again can help
(`MoodleError.retryable`). No error text ever holds the token: it travels only in POST bodies, which
errors never quote, and `redact` scrubs it from anything Moodle echoes back.

    MoodleError
    ├── MoodleConnectionError      transport failure, timeout, HTTP 5xx/429   (retryable)
    │   └── MoodleTimeoutError
    ├── MoodleResponseError        not a Moodle web-service answer (HTML, 404, ...)
    └── MoodleApiError             Moodle answered with an exception body
        ├── InvalidTokenError      [invalidtoken]
        ├── AccessDeniedError      [accessexception]: function missing from the token's service
        ├── InvalidParameterError  [invalidparameter]
        ├── MoodleDatabaseError    Moodle's database failed: [dml*], [dbconnectionfailed], or a PHP error
        │                          of the database driver (``pg_num_rows(): ...``)            (retryable)
        └── MoodlePHPError         other TypeError/Error bodies, which carry no errorcode
    MoodleWarningsError            warnings inside a success body (update/delete courses)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Errorcodes where Moodle itself was in trouble, not the request: a retry can succeed.
_RETRYABLE_CODES = frozenset({"sitemaintenance", "upgraderunning", "cannotlock", "locktimeout"})

# Moodle's exceptions for a database that failed (as seen on Moodle 4.5 with its PostgreSQL stopped:
# dml_connection_exception [dbconnectionfailed] at bootstrap, dml_read_exception [dmlreadexception] and
# dml_write_exception [dmlwriteexception] mid-request). Not dml_missing_record_exception [invalidrecord] or
# dml_multiple_records_exception: those are about the data, and a retry cannot fix them.
_DATABASE_EXCEPTIONS = frozenset({"dml_connection_exception", "dml_read_exception", "dml_write_exception",
                                  "dml_transaction_exception", "dml_sessionwait_exception"})
_DATABASE_CODES = frozenset({"dbconnectionfailed", "sessionwaiterr"})

# A PHP error raised inside a database extension's function: the connection went away mid-request and the
# driver got no result (Moodle 4.5: ``pg_num_rows(): Argument #1 ($result) must be of type PgSql\Result,
# bool given``). PHP names the function first: pg_*, mysqli_* / mysqli::*, sqlsrv_*, oci_*, PDO::*.
_DATABASE_DRIVER_ERROR = re.compile(r"^\s*(?:(?:pg|mysqli|sqlsrv|oci)_\w+\(\)|(?:mysqli|PDO\w*)::\w+\(\))")


def is_database_failure(exception: str, errorcode: str | None, message: str) -> bool:
    """Whether a Moodle exception body says that Moodle's database failed (not that the request is bad)."""
    if errorcode:
        return errorcode.startswith("dml") or errorcode in _DATABASE_CODES or exception in _DATABASE_EXCEPTIONS
    return exception in _DATABASE_EXCEPTIONS or bool(_DATABASE_DRIVER_ERROR.match(message))


DATABASE_FIX = ("Moodle's database failed during the call; it is retried until the database answers again. "
                "If this lasts, check Moodle's database server.")

# The fix shown after each errorcode (the guide's troubleshooting table, then the codes seen on Moodle 4.5).
FIXES: dict[str, str] = {
    "invalidtoken": "Token is invalid or expired. Generate a new token in Moodle "
    "(Site administration > Server > Web services > Manage tokens) and set MOODLE_TOKEN.",
    "invalidparameter": "One of the passed values is invalid. Check the logs.",
    "accessexception": "The token does not have all required Web Service Functions. Check service "
    "configuration (Site administration > Server > Web services > External services > Functions).",
    "invalidrecord": "Moodle has no such record (course, user, category or web-service function).",
    "wsnoinstance": "The Manual Enrolment Plugin must be enabled in Moodle, with a manual enrolment "
    "instance in the course.",
    "wsusercannotassign": "The token's user may not assign that role in the course; check "
    "MOODLE_INSTRUCTOR_ROLE_ID / MOODLE_STUDENT_ROLE_ID and the user's permissions.",
    "shortnametaken": "Another Moodle course already uses this short name.",
    "courseidnumbertaken": "Another Moodle course already uses this ID number.",
    "invalidcourseid": "The course does not exist in Moodle; check the environment's moodleCourseId.",
    "enablewsdescription": "Web services are disabled in Moodle: enable them (Site administration > "
    "Advanced features > Enable web services) and the REST protocol.",
    "webservicesnotenabled": "Web services are disabled in Moodle: enable them and the REST protocol.",
    "servicenotavailable": "The token's external service is disabled; enable it in Moodle.",
    "sitemaintenance": "Moodle is in maintenance mode; the call will be retried.",
}

CONNECTION_FIX = "Check MOODLE_URL and MOODLE_TOKEN. Is the Moodle instance reachable?"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Remove every secret from a text that may be shown, logged or stored."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class MoodleError(Exception):
    """Base of every Moodle failure. ``retryable`` says whether trying again can help."""

    retryable: bool = False

    def __init__(self, message: str, *, function: str | None = None, fix: str | None = None) -> None:
        self.function = function
        self.fix = fix
        self.detail = message
        super().__init__(f"{message} {fix}" if fix else message)


class MoodleConnectionError(MoodleError):
    """Moodle could not be reached, or answered as a server in trouble (HTTP 5xx or 429)."""

    retryable = True

    def __init__(self, url: str, reason: str, *, function: str | None = None) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"Failed to connect to Moodle at {url}"
            + (f" ({function})" if function else "") + f": {reason.rstrip('.')}.",
            function=function,
            fix=CONNECTION_FIX,
        )


class MoodleTimeoutError(MoodleConnectionError):
    """Moodle did not answer within MOODLE_TIMEOUT."""


class MoodleResponseError(MoodleError):
    """The answer is not a Moodle web-service answer (an HTML page, a 404, ...): the URL is wrong."""

    def __init__(self, url: str, reason: str, *, function: str | None = None) -> None:
        super().__init__(
            f"Failed to connect to Moodle at {url}: {reason}.",
            function=function,
            fix="MOODLE_URL must be the Moodle site root (without /webservice/...), with web services "
            "and the REST protocol enabled.",
        )


@dataclass(frozen=True)
class MoodleWarning:
    """One item of a ``warnings`` list in a Moodle success body."""

    item: str
    itemid: int | str | None
    warningcode: str
    message: str

    @classmethod
    def from_body(cls, raw: dict[str, Any]) -> MoodleWarning:
        return cls(
            item=str(raw.get("item", "")),
            itemid=raw.get("itemid"),
            warningcode=str(raw.get("warningcode", "")),
            message=str(raw.get("message", "")),
        )


class MoodleApiError(MoodleError):
    """Moodle answered with an exception body: ``{"exception", "errorcode", "message"[, "debuginfo"]}``."""

    def __init__(
        self,
        *,
        exception: str,
        errorcode: str | None,
        message: str,
        debuginfo: str | None = None,
        function: str | None = None,
        context: str | None = None,
    ) -> None:
        self.exception = exception
        self.errorcode = errorcode
        self.message = message
        self.debuginfo = debuginfo
        self.context = context
        code = errorcode or exception
        # Shown as one line of plain text (dbconnectionfailed comes as HTML paragraphs); ``message`` keeps it as sent.
        text = f"Moodle API Error [{code}]: {' '.join(re.sub(r'<[^>]+>', ' ', message).split())}"
        if debuginfo:
            text += f" ({debuginfo.strip()})"
        if function:
            text += f" in {function}"
        if context:
            text += f" ({context})"
        text += "."
        # A subclass may be retryable as a whole (MoodleDatabaseError); otherwise the errorcode decides.
        self.retryable = type(self).retryable or code in _RETRYABLE_CODES
        super().__init__(text, function=function, fix=self.default_fix or FIXES.get(code))

    default_fix: str | None = None
    """The fix of every error of this class, whatever its errorcode (None: by errorcode, `FIXES`)."""

    def to_dict(self) -> dict[str, Any]:
        return {"exception": self.exception, "errorcode": self.errorcode, "message": self.message}


class InvalidTokenError(MoodleApiError):
    """[invalidtoken]: the token is wrong, expired or missing."""


class AccessDeniedError(MoodleApiError):
    """[accessexception]: the function is not in the token's service (or the user lacks the capability)."""


class InvalidParameterError(MoodleApiError):
    """[invalidparameter]: Moodle rejected a value; ``debuginfo`` says which when site debugging is on."""


class MoodleDatabaseError(MoodleApiError):
    """Moodle's database failed during the call (`is_database_failure`): an outage, so retried like one.

    Keeps Moodle's exception, errorcode (None for a driver's PHP error) and message."""

    retryable = True
    default_fix = DATABASE_FIX


class MoodlePHPError(MoodleApiError):
    """A PHP TypeError/Error inside Moodle (no errorcode) that is not the database's; on enrol it means the
    user does not exist."""


_BY_CODE: dict[str, type[MoodleApiError]] = {
    "invalidtoken": InvalidTokenError,
    "accessexception": AccessDeniedError,
    "invalidparameter": InvalidParameterError,
}


def api_error_from_body(body: dict[str, Any], *, function: str | None = None) -> MoodleApiError:
    """The error for a Moodle exception body."""
    exception, message = str(body.get("exception", "")), str(body.get("message", ""))
    errorcode = str(body["errorcode"]) if body.get("errorcode") else None
    cls: type[MoodleApiError]
    if is_database_failure(exception, errorcode, message):
        cls = MoodleDatabaseError
    elif errorcode:
        cls = _BY_CODE.get(errorcode, MoodleApiError)
    else:
        cls = MoodlePHPError
    return cls(
        exception=exception,
        errorcode=errorcode,
        message=message,
        debuginfo=body.get("debuginfo"),
        function=function,
    )


class MoodleWarningsError(MoodleError):
    """A success body carried warnings about the items (e.g. update_courses: shortnametaken)."""

    def __init__(self, warnings: list[MoodleWarning], *, function: str | None = None) -> None:
        self.warnings = warnings
        first = warnings[0]
        super().__init__(
            "Moodle API Error ["
            + ", ".join(w.warningcode for w in warnings)
            + f"]: {first.message}" + (f" in {function}" if function else "") + ".",
            function=function,
            fix=FIXES.get(first.warningcode),
        )

    @property
    def codes(self) -> set[str]:
        return {w.warningcode for w in self.warnings}
