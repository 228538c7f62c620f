"""DeployAdmission: deployments admitted a few at a time, in the order they were asked for.

One run per task queue (`admission_id`), started by the worker; each event's entity workflow goes through
it with `admitted`::

    async with admitted(event_id, len(event.participants), asked_at):
        await workflow.execute_child_workflow(DeployEvent.run, ...)

The line itself is `admission.AdmissionLine` (first asked first served, ``limit`` at a time, an event
smaller than every running one let past). It fails open: when no DeployAdmission runs, or it does not answer
within ADMISSION_WAIT, the deployment starts without waiting; an admitted event that never leaves (its entity
was terminated) stops counting after LEASE.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import Priority, WorkflowIDConflictPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.admission import AdmissionLine

ADMISSION_WORKFLOW = "DeployAdmission"
ARRIVE_SIGNAL = "arrive"
LEAVE_SIGNAL = "leave"
LINE_QUERY = "line"
"""DeployAdmission's line now: the running event ids and the waiting ones, in order (`AdmissionLine`)."""
ADMIT_SIGNAL = "admitted"
"""Sent by DeployAdmission to the entity that asked, with the event id, when its deployment may start."""

DEFAULT_LIMIT = 4
"""Deployments admitted at a time (bench/RESULTS.md, term start: the worker stays as busy)."""
LEASE = timedelta(hours=1)
"""An admitted event that has not left after this no longer holds a place (an entity terminated mid-run)."""
ADMISSION_WAIT = timedelta(hours=2)
"""An entity waits at most this long in line, then deploys anyway (the line is an order, never a stop)."""
SIGNALS_PER_RUN = 1000
"""Arrivals and departures one run takes before it continues as new (its history stays near 4,000 events)."""


def admission_id(task_queue: str) -> str:
    """The one DeployAdmission of a task queue."""
    return f"moodle-admission-{task_queue}"


async def start_admission(client: Client, task_queue: str, limit: int = DEFAULT_LIMIT) -> None:
    """Start the task queue's DeployAdmission unless it runs (each worker calls this at start-up). Its workflow
    tasks go first (priority 1): the line must answer while the term's deployments fill the queue."""
    await client.start_workflow(DeployAdmission.run, AdmissionState(limit=limit), id=admission_id(task_queue),
                                task_queue=task_queue, priority=Priority(priority_key=1),
                                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                                static_summary=f"Deployments admitted {limit} at a time on {task_queue}")


@dataclass(frozen=True)
class Arrival:
    event_id: str
    participants: int
    reply_to: str
    """Workflow id of the entity to signal (ADMIT_SIGNAL) when the deployment may start."""
    asked_at: float = 0.0
    """When the deployment was asked for (epoch seconds, the caller's clock): its place in line."""


@dataclass
class AdmissionState:
    limit: int = DEFAULT_LIMIT
    line: AdmissionLine | None = None
    reply_to: dict[str, str] = field(default_factory=dict)
    """Event id -> the entity waiting for it or running it."""
    admitted_at: dict[str, float] = field(default_factory=dict)
    """Event id -> when it was admitted (workflow time, epoch seconds), for LEASE."""


@workflow.defn(name=ADMISSION_WORKFLOW)
class DeployAdmission:
    """Holds the line of deployments; signals each entity when its deployment may start."""

    @workflow.init
    def __init__(self, state: AdmissionState) -> None:
        self._line = state.line or AdmissionLine(state.limit)
        self._reply_to = dict(state.reply_to)
        self._admitted_at = dict(state.admitted_at)
        self._outbox: list[str] = []
        self._signals = 0

    @workflow.run
    async def run(self, state: AdmissionState) -> None:
        while self._signals < SIGNALS_PER_RUN and not workflow.info().is_continue_as_new_suggested():
            with contextlib.suppress(TimeoutError):  # a lease ran out
                await workflow.wait_condition(lambda: bool(self._outbox) or self._signals >= SIGNALS_PER_RUN,
                                              timeout=self._next_expiry())
            self._expire()
            await self._tell_admitted()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._tell_admitted()
        workflow.continue_as_new(AdmissionState(self._line.limit, self._line, self._reply_to, self._admitted_at))

    @workflow.signal(name=ARRIVE_SIGNAL)
    def arrive(self, arrival: Arrival) -> None:
        self._signals += 1
        self._reply_to[arrival.event_id] = arrival.reply_to
        if self._line.arrive(arrival.event_id, arrival.participants, arrival.asked_at):
            self._admit([arrival.event_id])

    @workflow.signal(name=LEAVE_SIGNAL)
    def leave(self, event_id: str) -> None:
        self._signals += 1
        self._depart(event_id)

    @workflow.query(name=LINE_QUERY)
    def line(self) -> AdmissionLine:
        return self._line

    def _depart(self, event_id: str) -> None:
        self._reply_to.pop(event_id, None)
        self._admitted_at.pop(event_id, None)
        self._admit(self._line.leave(event_id))

    def _admit(self, event_ids: list[str]) -> None:
        now = workflow.now().timestamp()
        for event_id in event_ids:
            self._admitted_at[event_id] = now
            self._outbox.append(event_id)

    async def _tell_admitted(self) -> None:
        """Tell every admitted entity at once: under a term start's load one signal takes seconds to be
        delivered, and the second admitted event should not wait for the first's."""
        while self._outbox:
            admitted, self._outbox = self._outbox, []
            await asyncio.gather(*(self._tell(event_id) for event_id in admitted))

    async def _tell(self, event_id: str) -> None:
        reply_to = self._reply_to.get(event_id)
        if reply_to is None:
            return
        try:
            await workflow.get_external_workflow_handle(reply_to).signal(ADMIT_SIGNAL, event_id)
        except FailureError:  # the entity is gone: its place goes to the next one
            self._depart(event_id)

    def _next_expiry(self) -> timedelta | None:
        if not self._admitted_at:
            return None
        left = min(self._admitted_at.values()) + LEASE.total_seconds() - workflow.now().timestamp()
        return timedelta(seconds=max(left, 1.0))

    def _expire(self) -> None:
        now = workflow.now().timestamp()
        for event_id, at in list(self._admitted_at.items()):
            if now - at >= LEASE.total_seconds():
                self._depart(event_id)


@asynccontextmanager
async def admitted(event_id: str, participants: int, asked_at: float) -> AsyncIterator[None]:
    """Inside an entity workflow: wait for the deployment's turn (its place in line is ``asked_at``, when it
    was asked for, in epoch seconds), and give the place back at the end.

    Registers the entity's handler of ADMIT_SIGNAL itself. Fails open: without a DeployAdmission on this
    task queue, or after ADMISSION_WAIT in line, the body runs at once."""
    granted = False

    def on_admitted(admitted_id: str) -> None:
        nonlocal granted
        granted = granted or admitted_id == event_id

    workflow.set_signal_handler(ADMIT_SIGNAL, on_admitted)
    line = workflow.get_external_workflow_handle(admission_id(workflow.info().task_queue))
    try:
        await line.signal(ARRIVE_SIGNAL, Arrival(event_id, participants, workflow.info().workflow_id, asked_at))
    except FailureError:  # no DeployAdmission runs: no line to wait in
        yield
        return
    try:
        await workflow.wait_condition(lambda: granted, timeout=ADMISSION_WAIT)
    except TimeoutError:
        workflow.logger.warning("deployment of event %s admitted after waiting %s in line", event_id,
                                ADMISSION_WAIT)
    try:
        yield
    finally:
        await line.signal(LEAVE_SIGNAL, event_id)
