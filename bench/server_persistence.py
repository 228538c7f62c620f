"""Where the Temporal server's persistence time goes during one deployment.

Starts the embedded dev server (the project's `devserver.DEV_SERVER_ARGS`, plus any ``--server-arg``) with
its metrics endpoint, runs a worker in this process against the Moodle simulator, deploys one event of
``--participants`` (the population of deploy_bench.py: one instructor in ten, nobody with an account yet),
and prints the server's persistence calls by operation: how many per participant, and
their share of the time spent in persistence. The dev server keeps its state in SQLite through a single
connection, so this share is where a large deployment's server time goes.

    python bench/server_persistence.py --participants 3000
    python bench/server_persistence.py --participants 3000 \\
        --server-arg history.enableHostLevelEventsCache=true
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from deploy_bench import SIM_TOKEN, _key_value, _positive, free_port, make_population  # bench/: this script's folder
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.devserver import DEV_SERVER_ARGS, file_storage_args, temporal_cli
from openvle_moodle_sync.moodle import MoodleClient
from openvle_moodle_sync.settings import load_settings
from openvle_moodle_sync.temporal_client import data_converter, ensure_search_attributes
from openvle_moodle_sync.worker import build_worker

SAMPLES = {"persistence_requests_total": 0, "persistence_latency_sum": 1}
"""The server's persistence samples kept: calls, and seconds spent (the column of each in `scrape`). The
parser names a counter's samples ``<name>_total``, as OpenMetrics does."""


def scrape(port: int) -> dict[str, tuple[float, float]]:
    """operation/service -> (calls, seconds) so far."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            column = SAMPLES.get(sample.name)
            if column is None:
                continue
            key = f"{sample.labels.get('operation', '?')}/{sample.labels.get('service_name', '?')}"
            totals.setdefault(key, [0.0, 0.0])[column] += sample.value
    return {key: (calls, seconds) for key, (calls, seconds) in totals.items()}


async def main(args: argparse.Namespace) -> None:
    metrics_port = free_port()
    state = tempfile.TemporaryDirectory(prefix="server-persistence-")  # file storage, as bench/deploy_bench.py
    server_args = [*DEV_SERVER_ARGS, "--metrics-port", str(metrics_port),
                   *file_storage_args(Path(state.name) / "temporal.db")]
    for value in args.server_arg:
        server_args += ["--dynamic-config-value", value]
    settings = load_settings(_env_file=None, moodle_enabled=True, moodle_url="http://moodle.bench",
                             moodle_token=SIM_TOKEN, moodle_user_auth="manual",
                             moodle_max_concurrency=args.concurrency,
                             temporal_task_queue=f"bench-{uuid.uuid4().hex[:8]}")
    try:
        env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_cli(),
                                                    dev_server_extra_args=server_args, dev_server_log_level="error",
                                                    data_converter=data_converter(settings))
    except RuntimeError:
        state.cleanup()
        raise SystemExit("The Temporal dev server did not start: its own error is above (a --server-arg it "
                         "refuses stops it: check the key and that the value is JSON, e.g. true or 1).") from None
    try:
        await ensure_search_attributes(env.client)
        fake = FakeMoodle(token=SIM_TOKEN, latency_ms=args.latency_ms)
        moodle = MoodleClient(settings.moodle_url, SIM_TOKEN, transport=httpx.ASGITransport(app=fake),
                              max_connections=settings.moodle_max_concurrency)
        async with moodle, build_worker(env.client, settings, moodle):
            before = scrape(metrics_port)
            started = time.monotonic()
            event = make_population(f"p{uuid.uuid4().hex[:8]}", args.participants, fake.site.template_course_id).event
            handle = await starter.deploy_event(env.client, event, settings=settings)
            await handle.result()
            elapsed = time.monotonic() - started
            after = scrape(metrics_port)
    finally:
        await env.shutdown()
        state.cleanup()
    rows = sorted(((after[k][1] - before.get(k, (0, 0))[1], after[k][0] - before.get(k, (0, 0))[0], k)
                   for k in after), reverse=True)
    total = sum(seconds for seconds, _, _ in rows) or 1.0
    print(f"deployment of {args.participants} at {args.latency_ms:g} ms a call: {elapsed:.1f} s; "
          f"time in persistence {total:.1f} s")
    print(f"{'operation/service':42} {'calls':>8} {'per person':>10} {'share':>6} {'mean ms':>8}")
    for seconds, calls, key in rows[:args.top]:
        print(f"{key:42} {calls:8.0f} {calls / args.participants:10.2f} {100 * seconds / total:5.1f}% "
              f"{1000 * seconds / max(calls, 1):8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=_positive, default=3000)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=_positive, default=20, help="MOODLE_MAX_CONCURRENCY (the benchmark's)")
    parser.add_argument("--server-arg", action="append", default=[], metavar="KEY=VALUE", type=_key_value,
                        help="one more dynamic config value for the dev server")
    parser.add_argument("--top", type=_positive, default=8, help="operations shown")
    asyncio.run(main(parser.parse_args()))
