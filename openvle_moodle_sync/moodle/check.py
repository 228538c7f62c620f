"""The connection check: can this service work with the configured Moodle?

Used at worker start-up (logged, as the OpenVLE guide's verification step expects a line with
"Moodle") and by ``python -m starter doctor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openvle_moodle_sync.settings import REQUIRED_FUNCTIONS

from .client import MoodleClient
from .errors import MoodleError


@dataclass
class ConnectionReport:
    """What the check found; ``ok`` only when Moodle answered and every required function is there."""

    url: str
    ok: bool = False
    sitename: str | None = None
    release: str | None = None
    username: str | None = None
    missing_functions: list[str] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> str:
        if self.error:
            return f"Moodle connection check failed for {self.url}: {self.error}"
        text = (f"Moodle connection OK: site {self.sitename!r} at {self.url}, release {self.release}, "
                f"token user {self.username!r}")
        if self.missing_functions:
            text = (f"Moodle connection to {self.url} works (release {self.release}, token user "
                    f"{self.username!r}) but the token's service lacks {len(self.missing_functions)} required "
                    f"function(s): {', '.join(self.missing_functions)}. The token does not have all required "
                    "Web Service Functions. Check service configuration: add them to the external service "
                    "(Site administration > Server > Web services > External services > Functions).")
        return text


async def check_connection(client: MoodleClient) -> ConnectionReport:
    """Ask Moodle for its site info and compare the token's functions with the 14 required ones."""
    report = ConnectionReport(url=client.url)
    try:
        info = await client.get_site_info()
    except MoodleError as error:
        report.error = str(error)
        return report
    report.sitename = info.get("sitename")
    report.release = info.get("release")
    report.username = info.get("username")
    # Moodle returns the functions in no defined order: compare as a set.
    available = {f.get("name") for f in info.get("functions", [])}
    report.missing_functions = [name for name in REQUIRED_FUNCTIONS if name not in available]
    report.ok = not report.missing_functions
    return report
