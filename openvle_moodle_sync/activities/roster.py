"""The event's roster: whom this service enrolled in the event's course, kept by the event's `EventLife`.

Deploy, add, remove and archive tell it what they did (a signal to their parent `EventLife`); a deploy gets it
in its input to know whom it may take away (only people it enrolled itself, never people enrolled in Moodle
by other means). It lives in a long-running workflow, so it survives worker crashes, re-runs and the
namespace's retention window. `read_roster` is the door for `PlanEvent`, which runs beside the event's life.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from openvle_moodle_sync.contracts import ENTRIES_QUERY, ErrorType


@dataclass(frozen=True)
class RosterEntry:
    """One person this service enrolled for the event."""

    user_id: int
    role: str
    withdrawn: bool = False
    """Taken away by an action that leaves the enrolment in Moodle (suspend, remove_roles): no deploy takes
    them away again, and an add or a deploy that restores their enrolment makes it the service's again."""


def active(entries: dict[str, RosterEntry]) -> dict[str, RosterEntry]:
    """The people this service enrolled who have not been taken away since (the brake's 100%)."""
    return {pid: entry for pid, entry in entries.items() if not entry.withdrawn}


@dataclass(frozen=True)
class RosterUpdate:
    """What a run did: set semantics, so applying it twice changes nothing."""

    put: dict[str, RosterEntry] = field(default_factory=dict)
    """participant id -> entry, for people this service enrolled (or whose role it changed)."""
    drop: list[str] = field(default_factory=list)
    """participant ids taken away from the course."""
    drop_role: str | None = None
    """Every entry with this role goes (archive takes the students away)."""
    withdrawn: bool = False
    """The people ``drop`` and ``drop_role`` name stay enrolled in Moodle (suspended, or without a role): keep
    them, marked withdrawn, so that restoring them later makes them the service's again."""


def apply_update(entries: dict[str, RosterEntry], update: RosterUpdate) -> None:
    """Apply ``update`` to ``entries`` in place, walking the entries in their own order (deterministic)."""
    dropped = set(update.drop)  # for look-ups only: the entries' own order is walked (a set's is not stable)
    for participant_id, entry in list(entries.items()):
        if participant_id in dropped or entry.role == update.drop_role:
            if update.withdrawn:
                entries[participant_id] = replace(entry, withdrawn=True)
            else:
                del entries[participant_id]
    entries.update(update.put)


#: Answers of Temporal that no retry changes: the run fails with the reason instead of retrying forever.
PERMANENT_RPC_ERRORS = frozenset({RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.PERMISSION_DENIED,
                                  RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.UNAUTHENTICATED,
                                  RPCStatusCode.UNIMPLEMENTED})


def roster_failure(error: RPCError, doing: str) -> Exception:
    """A refused roster call as a non-retryable failure in words; anything else stays retryable."""
    if error.status not in PERMANENT_RPC_ERRORS:
        return error
    return ApplicationError(
        f"Temporal refused to {doing} ({error.status.name}: {error.message}). Check the worker's Temporal "
        "permissions, then re-run.", type=ErrorType.ROSTER_REFUSED, non_retryable=True)


class RosterActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn
    async def read_roster(self, life_workflow_id: str) -> dict[str, RosterEntry]:
        """The roster; empty when the event has no life yet (never deployed)."""
        try:
            return await self.client.get_workflow_handle(life_workflow_id).query(
                ENTRIES_QUERY, result_type=dict[str, RosterEntry])
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return {}
            raise roster_failure(error, f"read the roster of {life_workflow_id}") from None
