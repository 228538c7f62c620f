"""Moodle's database stopped in the middle of a deployment: does every participant still end up done?

    MOODLE_LAB_DIR=/tmp/moodle-lab-b MOODLE_LAB_PORT=8091 MOODLE_LAB_SMTP_PORT=2531 MOODLE_LAB_PG_PORT=5441 \\
        .venv/bin/python bench/db_outage.py --runs 5 --participants 120 --outage-s 30 [--json]

Needs the Moodle lab (../shared/moodle-lab, run as root, started with up.sh and the same MOODLE_LAB_*
variables). Each run resets the lab to its clean site, starts `DeployEvent` for an event of N participants
(every 40th an instructor, accounts made with MOODLE_USER_AUTH=manual so that every new account gets one
mail) on a real `python worker.py` and a Temporal dev server, and once a tenth of them are done stops the
lab's PostgreSQL (`pg_ctl stop -m fast`) for --outage-s seconds, then starts it again the same way. It then
checks Moodle itself: one course with the event's mark, one account per participant, each enrolled with
exactly their role, and the mails per person (welcome mails only for instructors after the first; "New user
account" mails counted, see tests/live/db_outage.py on why Moodle may send one twice). It prints, per run: the
deployment's duration, the activity retries (from the history: attempts beyond the first, by the type of the
failure that caused them) and the mails sent twice. Exit status 1 if any run ends with a participant not
done, anything doubled in Moodle, or a welcome mail too many.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.client import Client  # noqa: E402

from openvle_moodle_sync.temporal_client import data_converter, ensure_search_attributes  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.live.db_outage import Lab, one_run  # noqa: E402
from tests.proc import Processes, processes_in, worker_env  # noqa: E402


async def main(args: argparse.Namespace) -> int:
    lab = Lab(Path(os.environ.get("MOODLE_LAB_DIR", "/tmp/moodle-lab")))
    work = Path(tempfile.mkdtemp(prefix="db-outage-"))
    results = []
    with processes_in(work) as procs:
        temporal = procs.temporal(work / "temporal.db")
        client = await Client.connect(temporal.address, data_converter=data_converter(make_settings()))
        await ensure_search_attributes(client)
        queue = f"db-outage-{uuid.uuid4().hex[:6]}"
        env = worker_env(moodle_url=lab.url, token=lab.token, temporal_address=temporal.address, task_queue=queue,
                         moodle_sync_timeout="60", moodle_retry_max_interval=str(args.retry_max_interval),
                         moodle_max_concurrency=str(args.max_concurrency), moodle_batch_size=str(args.batch_size))
        Processes.worker(procs, env)
        for run in range(1, args.runs + 1):
            result = await one_run(client, lab, queue, args.participants, args.outage_s, run, reset=True)
            results.append(result)
            if not args.json:
                print(f"run {run}: {'OK ' if result['ok'] else 'BAD'} {result['done']}/{result['participants']} done, "
                      f"{result['failed']} failed, deploy {result['deploy_s']} s (database down "
                      f"{result['database_down_s']} s at {result['done_when_database_stopped']} done, "
                      f"{result['after_database_back_s']} s after it was back), {result['retries']} retries "
                      f"{result['retries_by_cause']}, welcome mails too many {result['welcome_mails_extra']}, "
                      f"account mails twice {result['account_mails_twice']}"
                      + (f"; {result['problems']}" if result["problems"] else ""), flush=True)
        # The worker's log: how the retried failures looked to an operator.
        log = (work / "worker.log").read_text(errors="replace")
    summary = {"runs": results, "all_ok": all(r["ok"] for r in results),
               "worker_log_database_errors": log.count("MoodleDatabaseError"),
               "retry_max_interval_s": args.retry_max_interval, "outage_s": args.outage_s}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"all runs ok: {summary['all_ok']}; worker log mentions MoodleDatabaseError "
              f"{summary['worker_log_database_errors']} times; logs in {work}")
    return 0 if summary["all_ok"] else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--participants", type=int, default=120)
    parser.add_argument("--outage-s", type=float, default=30.0)
    parser.add_argument("--retry-max-interval", type=float, default=10.0,
                        help="the worker's MOODLE_RETRY_MAX_INTERVAL (default 10: retries every 10 s at most)")
    parser.add_argument("--max-concurrency", type=int, default=20, help="the worker's MOODLE_MAX_CONCURRENCY")
    parser.add_argument("--batch-size", type=int, default=100,
                        help="the worker's MOODLE_BATCH_SIZE (1: one Moodle call per participant)")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
