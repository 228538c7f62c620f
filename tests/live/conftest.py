"""Fixtures of the live suite: a real Moodle from MOODLE_TEST_* variables, safe on any staging site.

- Everything the suite makes carries one unique prefix per session (``ovlt-<hex>-``): course short names,
  full names and event ids, usernames and email addresses (``@example.com``, never delivered).
- Courses it made are deleted at the end (``core_course_delete_courses``), including any course whose
  short name, full name or idnumber carries the prefix, so a test that failed half-way leaves nothing.
- Accounts cannot be deleted with the service's 14 functions: the suite creates as few as it can (about
  eight per session, all with the prefix) and reuses them between tests.
- It never resets the site and touches nothing without its prefix (it reads the template course and the
  token's own account, and enrols nobody else anywhere).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from openvle_moodle_sync.moodle import MoodleClient
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.worker import build_worker
from tests.conftest import make_settings

URL = os.environ.get("MOODLE_TEST_URL", "").strip().rstrip("/")
TOKEN = os.environ.get("MOODLE_TEST_TOKEN", "").strip()
TEMPLATE_ID = os.environ.get("MOODLE_TEST_TEMPLATE_ID", "").strip()
LIMITED_TOKEN = os.environ.get("MOODLE_TEST_LIMITED_TOKEN", "").strip()
MAIL_LOG = os.environ.get("MOODLE_TEST_MAIL_LOG", "").strip()

SKIP_REASON = ("live Moodle tests need MOODLE_TEST_URL, MOODLE_TEST_TOKEN and MOODLE_TEST_TEMPLATE_ID "
               "(see docs/development.md, 'Live tests against a real Moodle')")

#: Apply to every live test module: ``pytestmark = LIVE``.
LIVE = [pytest.mark.live, pytest.mark.skipif(not (URL and TOKEN and TEMPLATE_ID), reason=SKIP_REASON)]

#: A password that meets Moodle's default password policy; accounts made with it get no mail.
PASSWORD = "Ovlt-Pass-2026!"

WRITE_FUNCTIONS = frozenset({
    "core_course_create_courses", "core_course_update_courses", "core_course_duplicate_course",
    "core_course_delete_courses", "enrol_manual_enrol_users", "enrol_manual_unenrol_users",
    "core_user_create_users",
})


@dataclass
class Live:
    """The Moodle under test and this session's unique prefix."""

    url: str
    token: str
    template_id: int
    limited_token: str | None
    mail_log: Path | None
    prefix: str
    made_courses: set[int] = field(default_factory=set)

    def name(self, suffix: str) -> str:
        """A name unique to this session: ``ovlt-<hex>-<suffix>``."""
        return f"{self.prefix}{suffix}"

    def email(self, suffix: str) -> str:
        return f"{self.prefix}{suffix}@example.com"

    def client(self, token: str | None = None, **kwargs: Any) -> MoodleClient:
        return MoodleClient(self.url, self.token if token is None else token, **kwargs)


@pytest.fixture(scope="session")
def live() -> Live:
    if not (URL and TOKEN and TEMPLATE_ID):
        pytest.skip(SKIP_REASON)
    mail_log = Path(MAIL_LOG) if MAIL_LOG else None
    return Live(url=URL, token=TOKEN, template_id=int(TEMPLATE_ID), limited_token=LIMITED_TOKEN or None,
                mail_log=mail_log, prefix=f"ovlt-{uuid.uuid4().hex[:8]}-")


@pytest.fixture(scope="session")
async def moodle(live: Live) -> AsyncIterator[MoodleClient]:
    """A client with the main token; at the end of the session it deletes every course the suite made."""
    async with live.client() as client:
        yield client
        await delete_made_courses(client, live)


async def delete_made_courses(client: MoodleClient, live: Live) -> None:
    found = (await client.search_courses(live.prefix.rstrip("-"), perpage=100))["courses"]
    ids = set(live.made_courses)
    ids |= {c["id"] for c in found
            if any(live.prefix in str(c.get(k) or "") for k in ("shortname", "fullname", "idnumber"))}
    existing = {c["id"] for c in await client.get_courses(sorted(ids))} if ids else set()
    existing.discard(live.template_id)
    if existing:
        await client.delete_courses(sorted(existing), timeout=600)


@pytest.fixture(scope="session")
async def template(live: Live, moodle: MoodleClient) -> dict[str, Any]:
    """The template course (read once)."""
    courses = await moodle.get_courses([live.template_id])
    assert courses, f"MOODLE_TEST_TEMPLATE_ID={live.template_id}: Moodle has no such course"
    return dict(courses[0])


@pytest.fixture(scope="session")
def people(live: Live) -> list[dict[str, Any]]:
    """Participants shared by the lifecycle tests (so their accounts are made once per session):
    the first one teaches."""
    return [
        {"id": f"p-{i}", "username": live.name(f"u{i}"), "email": live.email(f"u{i}"),
         "first_name": f"Ovlt{i}", "last_name": "Livetest", "role": "instructor" if i == 0 else "student"}
        for i in range(4)
    ]


# --- recording the worker's HTTP calls, and losing responses on purpose ----------------------------


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes every request to the real Moodle and records its ``wsfunction`` and form.

    ``lose_next[function] = n`` makes the next n answers to that function get lost after Moodle has
    applied the call (as a dropped connection would), so the activity is retried by Temporal."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.lose_next: Counter[str] = Counter()
        self.lost: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode(), keep_blank_values=True))
        form.pop("wstoken", None)
        function = form.get("wsfunction", "")
        response = await self.inner.handle_async_request(request)
        self.calls.append((function, form))
        if self.lose_next[function] > 0:
            self.lose_next[function] -= 1
            await response.aread()
            await response.aclose()
            self.lost.append(function)
            raise httpx.ReadError(f"answer to {function} lost on purpose (live test)", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def functions(self, since: int = 0) -> list[str]:
        return [f for f, _ in self.calls[since:]]

    def writes(self, since: int = 0) -> list[str]:
        return [f for f in self.functions(since) if f in WRITE_FUNCTIONS]

    def mark(self) -> int:
        return len(self.calls)


def live_settings(live: Live, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"moodle_url": live.url, "moodle_token": live.token, "moodle_user_auth": "manual",
                              "moodle_timeout": 60.0, "moodle_sync_timeout": 60.0, "moodle_course_timeout": 600.0}
    values.update(overrides)
    return make_settings(**values)


@asynccontextmanager
async def live_worker(client: Client, live: Live, settings: Settings
                      ) -> AsyncIterator[tuple[Worker, RecordingTransport]]:
    """The real worker (worker.build_worker) talking to the real Moodle through a recording transport."""
    transport = RecordingTransport()
    http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(settings.moodle_timeout))
    moodle = MoodleClient(live.url, live.token, http=http, timeout=settings.moodle_timeout)
    worker = build_worker(client, settings, moodle)
    try:
        async with worker:
            yield worker, transport
    finally:
        await http.aclose()


# --- the mail log -----------------------------------------------------------------------------------


class MailLog:
    """The lab's mail sink log (JSON lines with ``rcpt_tos`` and ``subject``); counts only our addresses."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @property
    def available(self) -> bool:
        return self.path is not None

    def messages(self, addresses: Iterable[str]) -> list[dict[str, Any]]:
        wanted = {a.lower() for a in addresses}
        if self.path is None or not self.path.exists():
            return []
        found = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                mail = json.loads(line)
            except ValueError:
                continue
            if {str(r).lower() for r in mail.get("rcpt_tos", [])} & wanted:
                found.append(mail)
        return found

    def per_address(self, addresses: Iterable[str]) -> dict[str, int]:
        addresses = list(addresses)
        counts = dict.fromkeys((a.lower() for a in addresses), 0)
        for mail in self.messages(addresses):
            for rcpt in mail.get("rcpt_tos", []):
                if str(rcpt).lower() in counts:
                    counts[str(rcpt).lower()] += 1
        return counts

    def subjects(self, address: str) -> list[str]:
        return [str(m.get("subject", "")) for m in self.messages([address])]


@pytest.fixture(scope="session")
def mails(live: Live) -> MailLog:
    return MailLog(live.mail_log)


def addresses(participants: Iterable[dict[str, Any]]) -> list[str]:
    return [p["email"] for p in participants]
