"""The engine floor: the shape of DeployEvent's work with no Moodle behind it.

One workflow runs, for each of N participants, two no-op activities one after the other (as
`ensure_user` then `enrol_user`), all participants at once, with the per-user activity options of the
service (MOODLE_SYNC_TIMEOUT, the same retry policy). Above ``batch_size`` participants the work is
split into child workflows of ``batch_size`` like DeployEvent does (a single history cannot hold
2 x 10,000 activities); ``batch_size`` 0 keeps everything in one workflow.

    python bench/bench_floor.py      # a worker for these, with the settings of worker.py (env/.env)
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

FLOOR_WORKFLOW = "BenchEngineFloor"
FLOOR_BATCH_WORKFLOW = "BenchEngineFloorBatch"


@activity.defn(name="bench_noop")
async def noop(key: str) -> str:
    return key


def _options(sync_timeout_s: float, retry_max_interval_s: float) -> dict:
    return {
        "start_to_close_timeout": timedelta(seconds=sync_timeout_s),
        "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                                    maximum_interval=timedelta(seconds=retry_max_interval_s)),
    }


async def _pairs(first: int, count: int, sync_timeout_s: float, retry_max_interval_s: float) -> int:
    options = _options(sync_timeout_s, retry_max_interval_s)

    async def pair(i: int) -> None:
        key = f"p-{i}"
        await workflow.execute_activity(noop, key, **options)
        await workflow.execute_activity(noop, key, **options)

    await asyncio.gather(*(pair(i) for i in range(first, first + count)))
    return 2 * count


@workflow.defn(name=FLOOR_BATCH_WORKFLOW)
class EngineFloorBatch:
    @workflow.run
    async def run(self, first: int, count: int, sync_timeout_s: float, retry_max_interval_s: float) -> int:
        return await _pairs(first, count, sync_timeout_s, retry_max_interval_s)


@workflow.defn(name=FLOOR_WORKFLOW)
class EngineFloor:
    @workflow.run
    async def run(self, participants: int, batch_size: int, sync_timeout_s: float,
                  retry_max_interval_s: float) -> int:
        if batch_size <= 0 or participants <= batch_size:
            return await _pairs(0, participants, sync_timeout_s, retry_max_interval_s)
        me = workflow.info().workflow_id
        done = await asyncio.gather(*(
            workflow.execute_child_workflow(
                EngineFloorBatch.run, args=[first, min(batch_size, participants - first), sync_timeout_s,
                                            retry_max_interval_s],
                id=f"{me}-{first // batch_size}",
            )
            for first in range(0, participants, batch_size)
        ))
        return sum(done)


async def _serve() -> None:
    import signal

    from temporalio.worker import Worker

    from openvle_moodle_sync.settings import load_settings
    from openvle_moodle_sync.temporal_client import connect
    from openvle_moodle_sync.worker import ACTIVITY_SLOTS_PER_CONNECTION, worker_tuning

    settings = load_settings()
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The options of worker.build_worker, with the no-op workflows and activity instead of the real ones.
    worker = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[EngineFloor, EngineFloorBatch],
        activities=[noop],
        **worker_tuning(settings),
    )
    async with worker:
        print(f"floor worker polling task queue {settings.temporal_task_queue!r}, "
              f"at most {settings.moodle_max_concurrency * ACTIVITY_SLOTS_PER_CONNECTION} activities at once",
              flush=True)
        await stop.wait()


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    # Run the module under its own name, so the workflow sandbox can import the workflows by name.
    import bench_floor

    asyncio.run(bench_floor._serve())
