"""Workflow ids and the search attribute, derived from the event: one place, used by workflows and starter.

Each event has one `EventLife` workflow (`life_id`): every operation on the event goes through it. Each
operation runs as a child workflow whose id the caller chooses (`operation_id`), so its handle knows the id
before the child starts; the kind's prefix keeps the UI's rows readable."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

from openvle_moodle_sync.lifecycle import OperationKind

EVENT_ID_ATTRIBUTE = SearchAttributeKey.for_keyword("OpenVLEEventId")
"""Search attribute on every run, so operators find an event's runs in the Temporal UI."""


def life_id(event_id: str) -> str:
    """The event's `EventLife`: runs for the event's whole life."""
    return f"moodle-event-{event_id}"


OPERATION_PREFIX = {OperationKind.DEPLOY: "moodle-deploy", OperationKind.RERUN: "moodle-deploy",
                    OperationKind.ADD: "moodle-participant", OperationKind.REMOVE: "moodle-participant",
                    OperationKind.ARCHIVE: "moodle-archive", OperationKind.DELETE: "moodle-delete"}
"""The start of the id of the child workflow that carries out each kind of operation (the UI's rows)."""


def operation_id(kind: OperationKind, event_id: str, op: str, participant: str | None = None) -> str:
    """The child workflow of one operation: ``op`` is the operation's own id, ``participant`` whom an add or
    remove is about (``moodle-participant-<event>-<participant>-<op>``)."""
    about = f"{event_id}-{participant}" if participant else event_id
    return f"{OPERATION_PREFIX[kind]}-{about}-{op}"


def deploy_id(event_id: str, op: str) -> str:
    """A deployment of the event (a deploy or a rerun)."""
    return operation_id(OperationKind.DEPLOY, event_id, op)


def batch_id(deploy_workflow_id: str, phase: str, index: int) -> str:
    """A share of a large deployment, named after its parent run."""
    return f"{deploy_workflow_id}-{phase}-{index}"


def plan_id(event_id: str, request: str) -> str:
    """One plan of the event; ``request`` tells plans of the same event apart (they are read-only)."""
    return f"moodle-plan-{event_id}-{request}"
