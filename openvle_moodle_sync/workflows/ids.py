"""Workflow ids and the search attribute, derived from the event: one place, used by workflows and starter.

An id names the work, not the attempt: a second start of the same work finds the run already going,
and a failed run can be started again under the same id."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

EVENT_ID_ATTRIBUTE = SearchAttributeKey.for_keyword("OpenVLEEventId")
"""Search attribute on every run, so operators find an event's runs in the Temporal UI."""


def deploy_id(event_id: str) -> str:
    return f"moodle-deploy-{event_id}"


def batch_id(event_id: str, phase: str, index: int) -> str:
    return f"moodle-deploy-{event_id}-{phase}-{index}"


def participant_id(event_id: str, participant: str) -> str:
    return f"moodle-participant-{event_id}-{participant}"


def archive_id(event_id: str) -> str:
    return f"moodle-archive-{event_id}"


def delete_id(event_id: str) -> str:
    return f"moodle-delete-{event_id}"


def roster_id(event_id: str) -> str:
    """The event's roster (EventRoster): runs for the event's whole life."""
    return f"moodle-roster-{event_id}"


def plan_id(event_id: str, request: str) -> str:
    """One plan of the event; ``request`` tells plans of the same event apart (they are read-only)."""
    return f"moodle-plan-{event_id}-{request}"
