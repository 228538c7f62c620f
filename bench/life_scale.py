"""The event's life at scale: many lives alive at once on one worker, and many operations on one event.

1. ``--events E`` events are deployed at once through the API (their Moodle mapping is null, so each
   deployment is a child run that skips Moodle: what is measured is the engine and the lives). Prints the
   wall time, the p50/p90 of the API calls, and the process's peak RSS with E lives alive.
2. ``--adds A`` participants are added to one of them, all asked at once, and the life's runs are counted:
   it continues as new every `OPERATIONS_PER_RUN` operations, so its longest run stays short whatever A.

    .venv/bin/python bench/life_scale.py [--events 1000] [--adds 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.workflows import ids
from openvle_moodle_sync.workflows.life import OPERATIONS_PER_RUN
from tests.conftest import TOKEN, make_event, make_person, make_settings, running_worker, start_dev_server


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


async def timed_call(make: object, latencies: list[float]) -> object:
    started = time.perf_counter()
    handle = await make()  # type: ignore[operator]
    latencies.append(time.perf_counter() - started)
    return handle


async def main(events: int, adds: int) -> dict[str, object]:
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
        started = time.perf_counter()
        changes = await asyncio.gather(*(timed_call(
            lambda i=i: starter.add_participant(client, event, make_person(event, f"a{i}"), settings=settings),
            latencies) for i in range(adds)))
        await asyncio.gather(*(h.result() for h in changes))  # type: ignore[attr-defined]
        out["adds_wall_s"] = round(time.perf_counter() - started, 1)
        out["add_call_p50_ms"], out["add_call_p90_ms"] = pct(latencies, 0.5), pct(latencies, 0.9)
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
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--adds", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.events, args.adds)), indent=2))
