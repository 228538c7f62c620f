"""The event's roster as the operations' workflows see it: a deploy, add, remove or archive tells its parent
`EventLife` what it did (a signal), and a plan reads it (an activity that queries `EventLife`)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.roster import RosterActivities, RosterEntry, RosterUpdate
    from openvle_moodle_sync.activities.types import SyncConfig
    from openvle_moodle_sync.contracts import RECORD_SIGNAL

from . import ids
from .common import per_user


async def record_roster(event_id: str, update: RosterUpdate) -> None:
    """Tell the event's `EventLife` whom this run enrolled or took away. The signal is in its history before
    this run ends, so the next operation sees it. A run started on its own (not by the event's life, as a
    test or an operator may) has no roster to tell."""
    if workflow.info().parent is None:
        return
    await workflow.get_external_workflow_handle(ids.life_id(event_id)).signal(RECORD_SIGNAL, update)


async def read_roster(event_id: str, config: SyncConfig) -> dict[str, RosterEntry]:
    """The roster, for a plan (which runs beside the event's life, not in it)."""
    # A Temporal call, not a Moodle one: MOODLE_SYNC_TIMEOUT, but never less than 30 s.
    return await workflow.execute_activity_method(
        RosterActivities.read_roster, ids.life_id(event_id),
        **per_user(max(config.sync_timeout_s, 30.0), config.retry_max_interval_s))
