"""Coalesced calls on a real Moodle: one bad participant in a shared call fails alone, nobody is mailed twice.

Moodle applies a call all or nothing and mails generated passwords as it goes (see moodle/coalesce.py); these
tests put one bad item among good ones in calls the coalescer shares and read Moodle's state and the mail
log (when MOODLE_TEST_MAIL_LOG is set)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from openvle_moodle_sync.moodle import InvalidParameterError, MoodleClient, MoodlePHPError
from openvle_moodle_sync.moodle.client import NewUser
from tests.live.conftest import LIVE, PASSWORD, Live, MailLog, RecordingTransport

pytestmark = LIVE

STUDENT = 5


def account(live: Live, suffix: str, **extra: Any) -> NewUser:
    values: dict[str, Any] = {"username": live.name(suffix), "firstname": "Ovlt", "lastname": suffix.capitalize(),
                              "email": live.email(suffix), "auth": "manual", **extra}
    return NewUser(**values)  # type: ignore[typeddict-item]


@asynccontextmanager
async def recorded(live: Live, window_s: float = 0.3) -> AsyncIterator[tuple[MoodleClient, RecordingTransport]]:
    """A coalescing client that waits long enough for the calls a test makes at once to share one."""
    transport = RecordingTransport()
    async with httpx.AsyncClient(transport=transport, timeout=60) as http:
        yield MoodleClient(live.url, live.token, http=http, timeout=60).coalescing(100, window_s=window_s), transport


async def test_one_bad_enrolment_in_a_shared_call_fails_alone(live: Live, moodle: MoodleClient) -> None:
    copy = await moodle.duplicate_course(live.template_id, live.name("co1"), live.name("co1"), 1)
    live.made_courses.add(copy["id"])
    users = [int(u["id"]) for u in await moodle.create_users(
        [account(live, f"co{i}", password=PASSWORD) for i in range(3)])]  # a password: no mail
    wanted = [*users[:2], 999_999_999, *users[2:]]  # an account that does not exist (deleted meanwhile)
    async with recorded(live) as (coalescing, calls):
        results = await asyncio.gather(
            *(coalescing.enrol_users([{"roleid": STUDENT, "userid": u, "courseid": copy["id"]}]) for u in wanted),
            return_exceptions=True)
    assert isinstance(results[2], MoodlePHPError), results
    assert [r for i, r in enumerate(results) if i != 2] == [None] * 3
    enrolled = {u["id"] for u in await moodle.get_enrolled_users(copy["id"])}
    assert enrolled == set(users)
    sizes = [sum(1 for k in form if k.endswith("[userid]"))
             for f, form in calls.calls if f == "enrol_manual_enrol_users"]
    assert sizes[0] == 4  # shared first, then narrowed down to the bad item


async def test_one_refused_account_among_mailed_ones_mails_nobody_twice(live: Live, moodle: MoodleClient,
                                                                       mails: MailLog) -> None:
    await moodle.create_users([account(live, "taken", password=PASSWORD)])
    good = [account(live, f"new{i}", createpassword=1) for i in range(3)]
    clash = account(live, "taken", email=live.email("taken-other"), createpassword=1)  # username held already
    wanted = [*good[:2], clash, *good[2:]]
    async with recorded(live) as (coalescing, calls):
        results = await asyncio.gather(*(coalescing.create_users([a]) for a in wanted), return_exceptions=True)
    assert isinstance(results[2], InvalidParameterError), results
    made = {str(u["username"]) for u in await moodle.get_users_by_field("username", [a["username"] for a in good])}
    assert made == {a["username"] for a in good}
    creates = [form for f, form in calls.calls if f == "core_user_create_users"]
    assert max(sum(1 for k in form if k.endswith("[username]")) for form in creates) > 1  # they shared calls
    if mails.available:
        per = mails.per_address([*(a["email"] for a in good), clash["email"]])
        assert per == {**{a["email"].lower(): 1 for a in good}, clash["email"].lower(): 0}
