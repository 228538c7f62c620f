"""MOODLE_UNENROL_ACTION=keep takes nobody away, so the event's roster keeps everyone as enrolled by this service:
a later deploy that no longer lists them can still take them away (under another action)."""

from __future__ import annotations

from temporalio.client import Client

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.activities.roster import RosterEntry
from openvle_moodle_sync.settings import UnenrolAction
from tests.conftest import EXTENDED_TOKEN, TOKEN, roster_entries, running_worker
from tests.test_unenrol_actions import deployed, settings_for


def fake_with_extended_token() -> FakeMoodle:
    return FakeMoodle(token=TOKEN, extended_token=EXTENDED_TOKEN)


async def test_archive_under_keep_keeps_the_students_in_the_roster(client: Client) -> None:
    fake, settings = fake_with_extended_token(), settings_for(UnenrolAction.KEEP)
    async with running_worker(client, settings, fake):
        event, _, _ = await deployed(client, fake, settings)
        before = await roster_entries(client, event["id"])
        archived = await (await starter.archive_event(client, event, settings=settings)).result()
        assert archived.hidden and archived.students_withdrawn == 0
        assert await roster_entries(client, event["id"]) == before
        assert sum(1 for e in before.values() if e.role == "student" and not e.withdrawn) == 3


async def test_a_removal_under_keep_leaves_the_roster_alone(client: Client) -> None:
    fake, settings = fake_with_extended_token(), settings_for(UnenrolAction.KEEP)
    async with running_worker(client, settings, fake):
        event, _, user_id = await deployed(client, fake, settings)
        person = event["participants"][1]
        removed = await (await starter.remove_participant(client, event, person, settings=settings)).result()
        assert not removed.applied[-1].changed
        assert (await roster_entries(client, event["id"]))[person["id"]] == RosterEntry(user_id, "student")
