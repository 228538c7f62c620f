"""EventRoster: the durable memory of whom this service enrolled for one event, and the helpers the other
workflows use to read and update it (through `activities.roster`)."""

from __future__ import annotations

from dataclasses import replace

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.roster import (
        ENTRIES_QUERY,
        RECORD_SIGNAL,
        ROSTER_WORKFLOW,
        RecordInput,
        RosterActivities,
        RosterEntry,
        RosterState,
        RosterUpdate,
    )
    from openvle_moodle_sync.activities.types import SyncConfig

from . import ids
from .common import ActivityOptions, per_user

ROSTER_PATCH = "event-roster"
"""`workflow.patched` id of the roster steps in DeployEvent, ChangeParticipant, ArchiveEvent and DeleteEvent."""

UPDATES_PER_RUN = 500
"""Updates one roster run takes before it continues as new: its history stays near 2,000 events."""


@workflow.defn(name=ROSTER_WORKFLOW)
class EventRoster:
    """participant id -> (Moodle user id, role) for everyone this service enrolled for the event, and those of
    them it took away since by suspending them or removing their roles (marked withdrawn).

    Runs for the event's whole life, so the namespace's retention never drops it, and continues as new
    every UPDATES_PER_RUN updates to keep its history short. Updates are set operations, so a retried
    update changes nothing."""

    @workflow.init
    def __init__(self, state: RosterState) -> None:
        # Here, not in run: a signal sent with the start (or buffered across continue-as-new) is applied
        # before run begins, and must apply on top of the entries carried over.
        self._entries: dict[str, RosterEntry] = dict(state.entries)
        self._updates = 0
        self._closed = False

    @workflow.run
    async def run(self, state: RosterState) -> None:
        await workflow.wait_condition(
            lambda: self._closed or self._updates >= UPDATES_PER_RUN or workflow.info().is_continue_as_new_suggested()
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not self._closed:
            workflow.continue_as_new(RosterState(entries=self._entries))

    @workflow.signal(name=RECORD_SIGNAL)
    def record(self, update: RosterUpdate) -> None:
        self._updates += 1
        if update.close:
            self._entries.clear()
            self._closed = True
            return
        dropped = set(update.drop)  # for look-ups only: the entries' own order is walked (a set's is not stable)
        for participant_id, entry in list(self._entries.items()):
            if participant_id in dropped or entry.role == update.drop_role:
                if update.withdrawn:
                    self._entries[participant_id] = replace(entry, withdrawn=True)
                else:
                    del self._entries[participant_id]
        self._entries.update(update.put)

    @workflow.query(name=ENTRIES_QUERY)
    def entries(self) -> dict[str, RosterEntry]:
        return self._entries


def _options(config: SyncConfig) -> ActivityOptions:
    # A Temporal call, not a Moodle one: MOODLE_SYNC_TIMEOUT, but never less than 30 s.
    return per_user(max(config.sync_timeout_s, 30.0), config.retry_max_interval_s)


async def read_roster(event_id: str, config: SyncConfig) -> dict[str, RosterEntry]:
    return await workflow.execute_activity_method(
        RosterActivities.read_roster, ids.roster_id(event_id), **_options(config))


async def record_roster(event_id: str, update: RosterUpdate, config: SyncConfig) -> None:
    await workflow.execute_activity_method(
        RosterActivities.record_roster, RecordInput(ids.roster_id(event_id), event_id, update), **_options(config))
