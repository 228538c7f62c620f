"""The activities: all I/O of the workflows (Moodle calls, and reading an event's roster for a plan).

One class per concern, each given what it needs; `build_activities` makes one of each and returns every
activity for the worker to register. An activity is a public coroutine method of these classes."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from temporalio.client import Client

from openvle_moodle_sync.moodle.client import MoodleClient
from openvle_moodle_sync.settings import Settings

from .moodle_sync import MoodleSyncActivities
from .plan import PlanActivities
from .roster import RosterActivities
from .withdraw import WithdrawActivities

__all__ = ["MoodleSyncActivities", "PlanActivities", "RosterActivities", "WithdrawActivities",
           "build_activities"]


def build_activities(client: Client, moodle: MoodleClient, settings: Settings) -> list[Callable[..., Any]]:
    """Every activity of the service, each concern's object made once."""
    concerns: list[object] = [
        MoodleSyncActivities(moodle, settings),
        WithdrawActivities(moodle),
        PlanActivities(moodle, settings),
        RosterActivities(client),
    ]
    return [method for concern in concerns
            for name, method in inspect.getmembers(concern, inspect.iscoroutinefunction) if not name.startswith("_")]
