"""The connection check: can this service work with the configured Moodle, for the chosen settings?

Used at worker start-up (logged, as the OpenVLE guide's verification step expects a line with
"Moodle"), by ``openvle-moodle-sync doctor``, and by the runs before they take anyone away, so that an
action the token cannot finish fails before its first write with the same words everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from openvle_moodle_sync.settings import FUNCTIONS_BY_ACTION, REQUIRED_FUNCTIONS, ROLE_FUNCTIONS, UnenrolAction

from .client import MoodleClient, SiteInfo
from .errors import MoodleError


class CheckStatus(StrEnum):
    """The outcome of one of `doctor`'s checks (this connection check among them)."""

    OK = "OK"
    WARN = "WARN"
    """Works, but something needs the operator's attention."""
    FAIL = "FAIL"
    """Does not work: `doctor` exits 1."""
    SKIP = "SKIP"
    """Not checked (what it needs is missing or invalid)."""


_FUNCTIONS_PAGE = "Site administration > Server > Web services > External services > Functions"


def available_functions(info: SiteInfo) -> frozenset[str]:
    """The token's functions. Moodle returns them in no defined order: compare as a set."""
    return frozenset(str(f.get("name")) for f in info.get("functions", []))


def missing_for_action(action: UnenrolAction, available: Iterable[str]) -> list[str]:
    """The optional functions MOODLE_UNENROL_ACTION=``action`` needs and the token lacks."""
    have = set(available)
    return [name for name in FUNCTIONS_BY_ACTION.get(action, ()) if name not in have]


def missing_for_action_message(action: UnenrolAction, missing: list[str]) -> str:
    """What to tell the operator when the token cannot carry out the chosen action (doctor, runs, log)."""
    return (f"MOODLE_UNENROL_ACTION={str(action)!r} needs {' and '.join(missing)}, which the token's service "
            f"lacks: add {' and '.join(missing)} to the service ({_FUNCTIONS_PAGE}), or choose another "
            f'MOODLE_UNENROL_ACTION (e.g. "{UnenrolAction.UNENROL}", the default). Nothing was changed in Moodle.')


def can_swap_roles(available: Iterable[str]) -> bool:
    """Whether a role change can swap the role on the same enrolment (no unenrol, no data lost, no mail)."""
    return set(ROLE_FUNCTIONS) <= set(available)


@dataclass
class ConnectionReport:
    """What the check found; ``ok`` only when Moodle answered and every function the settings need is there."""

    url: str
    ok: bool = False
    sitename: str | None = None
    release: str | None = None
    username: str | None = None
    missing_functions: list[str] = field(default_factory=list)
    unenrol_action: UnenrolAction = UnenrolAction.UNENROL
    missing_for_action: list[str] = field(default_factory=list)
    """Optional functions the chosen MOODLE_UNENROL_ACTION needs and the token lacks."""
    roles_in_place: bool = False
    """The token has the role functions: role changes keep the enrolment."""
    error: str | None = None

    def summary(self) -> str:
        if self.error:
            return f"Moodle connection check failed for {self.url}: {self.error}"
        parts = [f"Moodle connection OK: site {self.sitename!r} at {self.url}, release {self.release}, "
                 f"token user {self.username!r}"]
        if self.missing_functions or self.missing_for_action:
            parts = [f"Moodle connection to {self.url} works (release {self.release}, token user {self.username!r})"]
        if self.missing_functions:
            parts = [f"Moodle connection to {self.url} works (release {self.release}, token user "
                     f"{self.username!r}) but the token's service lacks {len(self.missing_functions)} required "
                     f"function(s): {', '.join(self.missing_functions)}. The token does not have all required "
                     "Web Service Functions. Check service configuration: add them to the external service "
                     f"({_FUNCTIONS_PAGE})."]
        if self.missing_for_action:
            parts.append(missing_for_action_message(self.unenrol_action, self.missing_for_action))
        elif not self.missing_functions:
            parts.append(f"MOODLE_UNENROL_ACTION={str(self.unenrol_action)!r}; role changes "
                         + ("swap the role in place" if self.roles_in_place else
                            "re-create the enrolment (add core_role_assign_roles and core_role_unassign_roles "
                            "to the service to keep it)"))
        return ". ".join(parts)


async def check_connection(client: MoodleClient,
                           unenrol_action: UnenrolAction = UnenrolAction.UNENROL) -> ConnectionReport:
    """Ask Moodle for its site info and compare the token's functions with those the settings need."""
    report = ConnectionReport(url=client.url, unenrol_action=unenrol_action)
    try:
        info = await client.get_site_info()
    except MoodleError as error:
        report.error = str(error)
        return report
    report.sitename = info.get("sitename")
    report.release = info.get("release")
    report.username = info.get("username")
    available = available_functions(info)
    report.missing_functions = [name for name in REQUIRED_FUNCTIONS if name not in available]
    report.missing_for_action = missing_for_action(unenrol_action, available)
    report.roles_in_place = can_swap_roles(available)
    report.ok = not report.missing_functions and not report.missing_for_action
    return report
