"""What ordering an event's operations through its `EventLife` costs one deployment.

Deploys a small event (``--participants``, the simulator in process, no latency) ``--runs`` times each way,
alternating: through the API (the life takes the operation and runs `DeployEvent` as its child) and by
starting `DeployEvent` directly, as before the life existed. Prints the median wall time of each, their
ratio, and the engine steps the life adds (its own history events for one deploy).

    .venv/bin/python bench/life_cost.py [--runs 15] [--participants 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.models import parse_event
from openvle_moodle_sync.workflows import DeployEvent, ids
from openvle_moodle_sync.workflows.types import DeployInput
from tests.conftest import TOKEN, make_event, make_settings, running_worker, start_dev_server


async def main(runs: int, participants: int) -> dict[str, object]:
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--participants", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.runs, args.participants)), indent=2))
