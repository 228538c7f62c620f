"""Moodle's exception answers: ``{"exception", "errorcode", "message"[, "debuginfo"]}``."""

from __future__ import annotations

from dataclasses import dataclass

ACCESS_DEBUGINFO = (
    "Access to the function {function}() is not allowed.\n"
    "                     There could be multiple reasons for this:\n"
    "                     1. The service linked to the user token does not contain the function.\n"
    "                     2. The service is user-restricted and the user is not listed.\n"
    "                     3. The service is IP-restricted and the user IP is not listed.\n"
    "                     4. The service is time-restricted and the time has expired.\n"
    "                     5. The token is time-restricted and the time has expired.\n"
    "                     6. The service requires a specific capability which the user does not have.\n"
    "                     7. The function is called with username/password (no user token is sent)\n"
    "                     and none of the services has the function to allow the user.\n"
    "                     These settings can be found in Administration > Site administration\n"
    "                     > Server > Web services > External services and Manage tokens."
)


@dataclass
class MoodleError(Exception):
    """A Moodle exception as the REST server reports it.

    ``errorcode`` is None for PHP runtime errors (``TypeError``, ``Error``), which carry no errorcode.
    """

    exception: str
    errorcode: str | None
    message: str
    debuginfo: str | None = None

    def body(self, debug: bool) -> dict[str, object]:
        out: dict[str, object] = {"exception": self.exception}
        if self.errorcode is not None:
            out["errorcode"] = self.errorcode
        out["message"] = self.message
        if debug and self.debuginfo is not None and self.errorcode is not None:
            out["debuginfo"] = self.debuginfo
        return out


MOODLE_EXC = "core\\exception\\moodle_exception"


def moodle_exception(errorcode: str, message: str, debuginfo: str | None = None) -> MoodleError:
    return MoodleError(MOODLE_EXC, errorcode, message, debuginfo)


def invalid_parameter(debuginfo: str) -> MoodleError:
    return MoodleError(
        "core\\exception\\invalid_parameter_exception",
        "invalidparameter",
        "Invalid parameter value detected",
        debuginfo,
    )


def coding_error(message: str, debuginfo: str) -> MoodleError:
    return MoodleError(
        "core\\exception\\coding_exception",
        "codingerror",
        f"Coding error detected, it must be fixed by a programmer: {message}",
        debuginfo,
    )


def missing_record(table: str, debuginfo: str) -> MoodleError:
    return MoodleError(
        "dml_missing_record_exception",
        "invalidrecord",
        f"Can't find data record in database table {table}.",
        debuginfo,
    )


def invalid_token() -> MoodleError:
    return moodle_exception("invalidtoken", "Invalid token - token not found")


def access_exception(function: str) -> MoodleError:
    return MoodleError(
        "webservice_access_exception",
        "accessexception",
        "Access control exception",
        ACCESS_DEBUGINFO.format(function=function),
    )


def php_error(kind: str, message: str) -> MoodleError:
    """A PHP runtime error: ``{"exception": "TypeError"|"Error", "message": ...}``, no errorcode."""
    return MoodleError(kind, None, message)
