"""Workflow ids and the search attribute, derived from the event: one place, used by workflows and starter.

Each event has one `EventLife` workflow (`life_id`): every operation on the event goes through it. Each
operation runs as a child workflow whose id the caller chooses (`operation_id`), so its handle knows the id
before the child starts; the kind's prefix keeps the UI's rows readable."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

EVENT_ID_ATTRIBUTE = SearchAttributeKey.for_keyword("OpenVLEEventId")
"""Search attribute on every run, so operators find an event's runs in the Temporal UI."""


def life_id(event_id: str) -> str:
    """The event's `EventLife`: runs for the event's whole life."""
    return f"moodle-event-{event_id}"


def deploy_id(event_id: str, op: str) -> str:
    return f"moodle-deploy-{event_id}-{op}"


def participant_id(event_id: str, participant: str, op: str) -> str:
    return f"moodle-participant-{event_id}-{participant}-{op}"


def archive_id(event_id: str, op: str) -> str:
    return f"moodle-archive-{event_id}-{op}"


def delete_id(event_id: str, op: str) -> str:
    return f"moodle-delete-{event_id}-{op}"


def batch_id(deploy_workflow_id: str, phase: str, index: int) -> str:
    """A share of a large deployment, named after its parent run."""
    return f"{deploy_workflow_id}-{phase}-{index}"


def plan_id(event_id: str, request: str) -> str:
    """One plan of the event; ``request`` tells plans of the same event apart (they are read-only)."""
    return f"moodle-plan-{event_id}-{request}"
