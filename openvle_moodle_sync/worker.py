"""The worker: runs the workflows and the Moodle activities.

    python -m openvle_moodle_sync.worker     (``python worker.py`` from the repository root)

Settings come from the environment and .env (see docs/configuration.md). Before polling it checks the Moodle
connection and logs what it found; it stops gracefully on SIGINT/SIGTERM (activities in flight get
MOODLE_SYNC_TIMEOUT to finish; what does not finish is retried by another worker, nothing is lost)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import timedelta
from typing import TypedDict

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import PollerBehaviorAutoscaling, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from openvle_moodle_sync.activities import build_activities
from openvle_moodle_sync.activities.call_priority import CallPriority
from openvle_moodle_sync.moodle import MoodleClient, check_connection, client_from_settings
from openvle_moodle_sync.settings import ConfigError, Settings, load_settings
from openvle_moodle_sync.temporal_client import connect, ensure_search_attributes, exit_process
from openvle_moodle_sync.workflows import ALL_WORKFLOWS
from openvle_moodle_sync.workflows.admission import start_admission

log = logging.getLogger("worker")


ACTIVITY_SLOTS_PER_CONNECTION = 3
"""An activity holds its slot a little longer than its Moodle call (the engine's own round trips, and with
eager activities off, a trip through the task queue for each): with three slots per Moodle connection the
connections stay busy (N=1000 at 50 ms a call: 16.1 s with two, 12.1 s with three). Moodle never sees more
than MOODLE_MAX_CONCURRENCY calls at once: the client's connection pool is that size, and the activities
waiting for one of its connections get it in their tasks' priority order (`moodle.gate`)."""


class WorkerTuning(TypedDict):
    max_concurrent_activities: int
    activity_task_poller_behavior: PollerBehaviorAutoscaling
    workflow_task_poller_behavior: PollerBehaviorAutoscaling
    graceful_shutdown_timeout: timedelta
    disable_eager_activity_execution: bool


def worker_tuning(settings: Settings) -> WorkerTuning:
    """The worker's options (shared with the benchmark's engine floor, so both are measured alike).

    Pollers scale with the load: a deployment schedules hundreds of activities at once, and a fixed
    handful of pollers would leave slots idle while tasks wait in the queue."""
    # Activities whose calls are coalesced mostly wait for their shared call: room for two calls' worth of them
    # lets the calls fill up (N=200 on the lab: 32 enrolment calls with 60 slots).
    slots = max(settings.moodle_max_concurrency * ACTIVITY_SLOTS_PER_CONNECTION, 2 * settings.moodle_batch_size)
    return {
        "max_concurrent_activities": slots,
        "activity_task_poller_behavior": PollerBehaviorAutoscaling(maximum=max(slots, 5)),
        "workflow_task_poller_behavior": PollerBehaviorAutoscaling(),
        "graceful_shutdown_timeout": timedelta(seconds=settings.moodle_sync_timeout + 5),
        # Eager activities go from a workflow task straight to a free slot of this worker, past the task
        # queue and so past its priority and fairness: a large event would take every slot that frees.
        "disable_eager_activity_execution": True,
    }


def workflow_runner() -> SandboxedWorkflowRunner:
    """The workflow sandbox of the worker, and of the replays of stored histories (the same, so a replay
    tests what runs). It re-imports a workflow's modules for every run unless they are passed through: this
    package's modules hold no state that a run could change (constants, types, pure functions), and every
    workflow change is checked by replaying the stored histories, so they are passed through and a new run
    (each operation of an event's life is one) costs no re-import."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("openvle_moodle_sync"))


def activities_client(moodle: MoodleClient, settings: Settings) -> MoodleClient:
    """The client the activities call Moodle with: coalescing, unless MOODLE_BATCH_SIZE=1 (one call each)."""
    return moodle.coalescing(settings.moodle_batch_size) if settings.moodle_batch_size > 1 else moodle


def build_worker(client: Client, settings: Settings, moodle: MoodleClient) -> Worker:
    """The worker with every workflow and activity; at most MOODLE_MAX_CONCURRENCY Moodle calls at once.

    The activities' per-user writes and look-ups made at about the same moment go to Moodle as shared calls
    of at most MOODLE_BATCH_SIZE items (`moodle.coalesce`)."""
    moodle = activities_client(moodle, settings)
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=ALL_WORKFLOWS,
        activities=build_activities(client, moodle, settings),
        interceptors=[CallPriority()],  # a call waiting for a Moodle connection keeps its task's priority
        workflow_runner=workflow_runner(),
        **worker_tuning(settings),
    )


async def log_moodle_connection(settings: Settings, moodle: MoodleClient) -> bool:
    """The start-up check the OpenVLE guide asks operators to look for (`grep -i moodle`)."""
    if not settings.moodle_enabled:
        log.info("Moodle integration is disabled (MOODLE_ENABLED is false): workflows finish without "
                 "touching Moodle")
        return True
    report = await check_connection(moodle, settings.moodle_unenrol_action)
    (log.info if report.ok else log.error)("%s", report.summary())
    return report.ok


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    client = await connect(settings)
    await ensure_search_attributes(client)
    await start_admission(client, settings.temporal_task_queue)  # deployments in turn (workflows.admission)
    async with client_from_settings(settings) as moodle:
        await log_moodle_connection(settings, moodle)
        worker = build_worker(client, settings, moodle)
        log.info("worker polling task queue %r on %s (namespace %s), at most %d Moodle calls at once",
                 settings.temporal_task_queue, client.service_client.config.target_host, client.namespace,
                 settings.moodle_max_concurrency)
        async with worker:
            await stop.wait()
            log.info("shutting down: finishing the activities in flight")
    log.info("worker stopped")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    if settings.metrics_port:
        Runtime.set_default(Runtime(telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=f"0.0.0.0:{settings.metrics_port}"))))

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    try:
        asyncio.run(serve())
    except ConnectionError as error:
        log.error("%s", error)
        return 1
    return 0


def cli() -> None:
    """The console script and ``python -m openvle_moodle_sync.worker``."""
    exit_process(main())


if __name__ == "__main__":
    cli()
