"""The event's life, measured: what ordering an operation through `EventLife` costs one deployment, and the
lives at scale. The simulator runs in process, with no latency; the dev server in memory.

``cost``: a small event (``--participants``) deployed ``--runs`` times each way, alternating: through the API
(the life takes the operation and runs `DeployEvent` as its child) and by starting `DeployEvent` directly.
Prints the median wall time of each, their ratio, and the life's own history events for one deploy.

``scale``: ``--events`` events deployed at once through the API (a null Moodle mapping: each deployment is a
child run that skips Moodle, so what is measured is the engine and the lives), with the p50/p90 of the calls
and the process's peak RSS; then ``--adds`` participants added to one of them, all asked at once, and the
life's runs counted: it continues as new every `OPERATIONS_PER_RUN` operations.

    .venv/bin/python bench/life_bench.py cost [--runs 15] [--participants 5]
    .venv/bin/python bench/life_bench.py scale [--events 1000] [--adds 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path

from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.models import parse_event
from openvle_moodle_sync.starter.progress import read_life
from openvle_moodle_sync.workflows import DeployEvent, ids
from openvle_moodle_sync.workflows.life import OPERATIONS_PER_RUN
from openvle_moodle_sync.workflows.types import DeployInput
from tests.conftest import TOKEN, make_event, make_person, make_settings, running_worker, start_dev_server


async def cost(runs: int, participants: int) -> dict[str, object]:
    env = await start_dev_server()
    client = env.client
    fake, settings = FakeMoodle(token=TOKEN), make_settings()
    through_life: list[float] = []
    direct: list[float] = []
    life_events: list[int] = []
    async with running_worker(client, settings, fake):
        for run in range(runs + 1):  # the first pair warms up
            event = make_event(fake, participants=participants)
            started = time.perf_counter()
            await (await starter.deploy_event(client, event, settings=settings)).result()
            life_s = time.perf_counter() - started
            life_events.append((await client.get_workflow_handle(ids.life_id(event["id"])).describe()).history_length)
            other = make_event(fake, participants=participants)
            started = time.perf_counter()
            await client.execute_workflow(DeployEvent.run, DeployInput(event=parse_event(other)),
                                          id=ids.deploy_id(other["id"], uuid.uuid4().hex[:10]),
                                          task_queue=settings.temporal_task_queue)
            direct_s = time.perf_counter() - started
            if run:
                through_life.append(life_s)
                direct.append(direct_s)
    await env.shutdown()
    life_ms, direct_ms = statistics.median(through_life) * 1000, statistics.median(direct) * 1000
    return {"participants": participants, "runs": runs, "through_life_ms": round(life_ms, 1),
            "direct_ms": round(direct_ms, 1), "life_over_direct": round(life_ms / direct_ms, 3),
            "extra_ms": round(life_ms - direct_ms, 1), "life_history_events": statistics.median(life_events)}



def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


CALLS_IN_FLIGHT = asyncio.Semaphore(200)
"""The backend's calls at once (a connection pool's worth): 10,000 at once overrun the dev server's RPC timeout."""


BUSY_RETRY_S = 2.0
"""A call refused with `EventBusy` is sent again after this, as a backend's retry queue would."""


async def timed_call(make: object, latencies: list[float], refused: list[int] | None = None) -> object:
    while True:
        async with CALLS_IN_FLIGHT:
            started = time.perf_counter()
            try:
                handle = await make()  # type: ignore[operator]
            except starter.EventBusy:
                if refused is None:
                    raise
                refused.append(1)
            else:
                latencies.append(time.perf_counter() - started)
                return handle
        await asyncio.sleep(BUSY_RETRY_S)


async def drained(client: Client, event_id: str) -> None:
    """Until the event's life has nothing queued or running (its memo; a handle per add would poll the server
    ten thousand times over)."""
    while True:
        record = await read_life(client, event_id)
        if record and record.view and record.current and not record.view.queued_total and not record.view.current:
            return
        await asyncio.sleep(2)


async def scale(events: int, adds: int) -> dict[str, object]:
    env = await start_dev_server()
    client = env.client
    fake, settings = FakeMoodle(token=TOKEN), make_settings()
    out: dict[str, object] = {"events": events, "adds": adds, "operations_per_run": OPERATIONS_PER_RUN}
    async with running_worker(client, settings, fake):
        many = [make_event(fake, participants=3, moodle_course_id=None) for _ in range(events)]
        latencies: list[float] = []
        started = time.perf_counter()
        handles = await asyncio.gather(*(timed_call(lambda e=e: starter.deploy_event(client, e, settings=settings),
                                                    latencies) for e in many))
        await asyncio.gather(*(h.result() for h in handles))  # type: ignore[attr-defined]
        out["deploy_wall_s"] = round(time.perf_counter() - started, 1)
        out["deploy_call_p50_ms"], out["deploy_call_p90_ms"] = pct(latencies, 0.5), pct(latencies, 0.9)
        out["lives_alive"] = sum(1 for _ in [wf async for wf in client.list_workflows(
            "WorkflowType = 'EventLife' AND ExecutionStatus = 'Running'")])
        out["peak_rss_mb_with_lives"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

        event = many[0]
        latencies = []
        refused: list[int] = []
        started = time.perf_counter()
        await asyncio.gather(*(timed_call(
            lambda i=i: starter.add_participant(client, event, make_person(event, f"a{i}"), settings=settings),
            latencies, refused) for i in range(adds)))
        out["adds_sent_s"] = round(time.perf_counter() - started, 1)
        await drained(client, event["id"])
        out["adds_wall_s"] = round(time.perf_counter() - started, 1)
        out["add_call_p50_ms"], out["add_call_p90_ms"] = pct(latencies, 0.5), pct(latencies, 0.9)
        out["add_calls_refused_busy"] = len(refused)
        out["adds_completed"] = (await client.count_workflows(
            f"WorkflowType = 'ChangeParticipant' AND ExecutionStatus = 'Completed' AND "
            f"{ids.EVENT_ID_ATTRIBUTE.name} = '{event['id']}'")).count
        runs = [wf async for wf in client.list_workflows(f"WorkflowId = '{ids.life_id(event['id'])}'")]
        lengths = [(await client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()).history_length
                   for wf in runs]
        out["life_runs"] = len(runs)
        out["life_longest_run_events"] = max(lengths)
        out["life_median_run_events"] = statistics.median(lengths)
    await env.shutdown()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cost_args = commands.add_parser("cost", help="what the life adds to one small deployment")
    cost_args.add_argument("--runs", type=int, default=15)
    cost_args.add_argument("--participants", type=int, default=5)
    scale_args = commands.add_parser("scale", help="many lives at once, many operations on one")
    scale_args.add_argument("--events", type=int, default=1000)
    scale_args.add_argument("--adds", type=int, default=2000)
    args = parser.parse_args()
    work = cost(args.runs, args.participants) if args.command == "cost" else scale(args.events, args.adds)
    print(json.dumps(asyncio.run(work), indent=2))
