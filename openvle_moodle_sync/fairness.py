"""Fair share between events on one task queue: Temporal's task Priority and Fairness.

Every run of an event carries the event id as its fairness key. The task queue then hands out tasks
round-robin between the events that have work waiting, instead of first come first served, so a small
event is not queued behind every task of a large one started before it. Activities and child workflows
inherit their workflow's priority. The server applies fairness keys only with the dynamic config
``matching.enableFairness=true`` (the dev servers of `devserver.DEV_SERVER_ARGS` and the production
compose have it, with one partition for the task queue: the server keeps the order within a partition);
without it the priority key still orders the tasks. The worker keeps the order up to Moodle: a call
waiting for a Moodle connection gets it in its task's priority order (`moodle.gate`).

The priority key (1 runs first, 5 last, 3 is Temporal's default) is the caller's choice, or by default
by size: work of at most `SMALL_EVENT` participants (a workshop, one participant's change, an archive or
a delete) goes before a large import.

Round-robin between events is fair, not first come first served: a hundred events of one size started at
once each get a hundredth of the worker and all finish near the end. So deployments go through an admission
line first (`admission`, `workflows.admission`): a few at a time in the order they were asked for,
a smaller event let past; the keys here share the worker between the admitted ones and every other run.

`event_priority` is pure (no clock, no I/O): a workflow computes the Priority of a child run with it.
"""

from __future__ import annotations

from temporalio.common import Priority

SMALL_EVENT = 500
"""Participants up to which work counts as small (one share of a deployment, see workflows.batch)."""

SMALL_PRIORITY = 2
LARGE_PRIORITY = 3
PRIORITY_RANGE = range(1, 6)


def event_priority(event_id: str, participants: int, priority: int | None = None) -> Priority:
    """The task priority of a run of ``event_id`` that handles ``participants`` people.

    >>> event_priority("42", 3000)
    Priority(priority_key=3, fairness_key='42', fairness_weight=None)
    """
    if priority is None:
        priority = SMALL_PRIORITY if participants <= SMALL_EVENT else LARGE_PRIORITY
    elif priority not in PRIORITY_RANGE:
        raise ValueError(f"priority must be an integer from 1 (first) to 5 (last), not {priority!r}")
    # Event ids are at most 64 characters of ASCII (models.Event), the fairness key's limit in bytes.
    return Priority(priority_key=priority, fairness_key=event_id)
