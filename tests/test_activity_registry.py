"""The worker registers every activity once, from one list, under the names stored histories hold."""

from __future__ import annotations

from fake_moodle import FakeMoodle
from openvle_moodle_sync.activities import build_activities
from tests.conftest import make_settings, moodle_for

NAMES = {  # in the histories of runs: never renamed (an activity's name is its method's)
    "load_sync_config", "find_event_course", "prepare_course", "hide_course", "delete_course", "plan_deployment",
    "enrol_user", "plan_archive", "find_user", "find_users", "ensure_user", "check_unenrol_action",
    "withdraw_user", "withdraw_users", "unenrol_users", "plan_event", "read_roster", "show_course",
}


async def test_every_activity_once_under_its_name_one_object_per_concern(fake: FakeMoodle) -> None:
    settings = make_settings()
    async with moodle_for(fake, settings) as moodle:
        activities = build_activities(None, moodle, settings)  # type: ignore[arg-type]  # no call is made
    assert sorted(fn.__name__ for fn in activities) == sorted(NAMES)
    assert len({id(fn.__self__) for fn in activities}) == 4  # type: ignore[attr-defined]
