"""Moodle's database stopped in the middle of a deployment: does every participant still end up done?

    MOODLE_LAB_DIR=/tmp/moodle-lab-b MOODLE_LAB_PORT=8091 MOODLE_LAB_SMTP_PORT=2531 MOODLE_LAB_PG_PORT=5441 \\
        .venv/bin/python bench/db_outage.py --runs 5 --participants 120 --outage-s 30 [--json]

Needs the Moodle lab (../shared/moodle-lab, run as root, started with up.sh and the same MOODLE_LAB_*
variables). Each run resets the lab to its clean site, starts `DeployEvent` for an event of N participants
(every 40th an instructor, accounts made with MOODLE_USER_AUTH=manual so that every new account gets one
mail) on a real `python worker.py` and a Temporal dev server, and once a tenth of them are done stops the
lab's PostgreSQL (`pg_ctl stop -m fast`) for --outage-s seconds, then starts it again the same way. It then
checks Moodle itself: one course with the event's mark, one account per participant, each enrolled with
exactly their role, and the mails per person (one "New user account" mail; welcome mails only for
instructors after the first). It prints, per run: the deployment's duration, the activity retries (from the
history: attempts beyond the first, by the type of the failure that caused them) and any duplicate mail.
Exit status 1 if any run ends with a participant not done or anything doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.client import Client, WorkflowFailureError  # noqa: E402
from temporalio.service import RPCError  # noqa: E402

from openvle_moodle_sync import starter  # noqa: E402
from openvle_moodle_sync.models import course_idnumber  # noqa: E402
from openvle_moodle_sync.moodle import MoodleClient  # noqa: E402
from openvle_moodle_sync.temporal_client import data_converter, ensure_search_attributes  # noqa: E402
from openvle_moodle_sync.workflows import ids  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.proc import Processes, processes_in, worker_env  # noqa: E402

LAB = Path(os.environ.get("MOODLE_LAB_SRC", ROOT.parent / "shared" / "moodle-lab"))
PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))
ROLE_IDS = {"student": 5, "instructor": 3}


class Lab:
    """The Moodle lab of MOODLE_LAB_DIR: its tokens, its reset, and its PostgreSQL stopped and started
    exactly as the lab's own scripts do (pg_ctl as the postgres user)."""

    def __init__(self) -> None:
        self.dir = Path(os.environ.get("MOODLE_LAB_DIR", "/tmp/moodle-lab"))
        self.pg_port = os.environ.get("MOODLE_LAB_PG_PORT", "5433")
        values = dict(line.split("=", 1) for line in (self.dir / "tokens.env").read_text().splitlines() if "=" in line)
        self.url, self.token = values["MOODLE_URL"], values["MOODLE_TOKEN"]
        self.template_id = int(values["MOODLE_TEMPLATE_COURSE_ID"])
        self.mail_log = Path(values["MOODLE_LAB_MAIL_LOG"])

    def reset(self) -> None:
        subprocess.run(["bash", str(LAB / "reset.sh")], check=True, capture_output=True)

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PGBIN / "pg_ctl"), "-D", str(self.dir / "pg" / "data"),
                        *args], check=True, capture_output=True)

    def stop_database(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop")

    def start_database(self) -> None:
        self._pg_ctl("-l", str(self.dir / "logs" / "postgres.log"), "-w", "-t", "60",
                     "-o", f"-p {self.pg_port} -k {self.dir / 'pg' / 'run'}", "start")

    def mails(self) -> list[dict[str, Any]]:
        if not self.mail_log.exists():
            return []
        return [json.loads(line) for line in self.mail_log.read_text(errors="replace").splitlines() if line.strip()]


def make_event(event_id: str, n: int, template_id: int) -> dict[str, Any]:
    people = [{"id": f"p-{i}", "username": f"{event_id}-u{i}", "email": f"{event_id}-u{i}@example.com",
               "first_name": f"First{i}", "last_name": f"Last{i}", "role": "instructor" if i % 40 == 0 else "student"}
              for i in range(n)]
    return {"id": event_id, "name": f"DB outage {event_id}", "slug": event_id, "moodle_course_id": template_id,
            "participants": people}


async def retries(client: Client, workflow_id: str) -> Counter[str]:
    """Attempts beyond the first of every activity, by the type of the failure before each retry."""
    counts: Counter[str] = Counter()
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            if started.attempt > 1:
                failure = started.last_failure
                kind = (failure.application_failure_info.type if failure.HasField("application_failure_info")
                        else "timeout" if failure.HasField("timeout_failure_info") else "other")
                counts[kind] += started.attempt - 1
    return counts


async def check_moodle(lab: Lab, event: dict[str, Any]) -> dict[str, Any]:
    """What Moodle holds for the event, and every way it differs from exactly right."""
    problems: list[str] = []
    async with MoodleClient(lab.url, lab.token, timeout=120) as moodle:
        courses = await moodle.get_courses_by_field("idnumber", course_idnumber(event["id"]))
        slug_courses = await moodle.get_courses_by_field("shortname", event["slug"])
        if len(courses) != 1 or len(slug_courses) != 1:
            problems.append(f"courses: {len(courses)} marked, {len(slug_courses)} with the slug")
        course_id = courses[0]["id"] if courses else None
        users = await moodle.get_users_by_field("username", [p["username"] for p in event["participants"]])
        accounts = Counter(u["username"] for u in users)
        by_email = Counter(str(u["email"]).lower() for u in await moodle.get_users_by_field(
            "email", [p["email"] for p in event["participants"]]))
        missing = [p["id"] for p in event["participants"] if accounts[p["username"]] == 0]
        doubled = [p["id"] for p in event["participants"] if by_email[p["email"]] > 1]
        if missing or doubled:
            problems.append(f"accounts: {len(missing)} missing, {len(doubled)} doubled")
        roles: dict[str, set[int]] = {}
        if course_id is not None:
            roles = {u["username"]: {r["roleid"] for r in u.get("roles", [])}
                     for u in await moodle.get_enrolled_users(course_id)}
        wrong = [p["id"] for p in event["participants"] if roles.get(p["username"]) != {ROLE_IDS[p["role"]]}]
        if wrong or len(roles) != len(event["participants"]):
            problems.append(f"enrolments: {len(wrong)} wrong or missing, {len(roles)} enrolled")
    mails: Counter[tuple[str, str]] = Counter()
    for mail in lab.mails():
        kind = "welcome" if str(mail.get("subject", "")).lower().startswith("welcome to") else "account"
        for rcpt in mail.get("rcpt_tos", []):
            mails[(str(rcpt).lower(), kind)] += 1
    # Moodle welcomes every teacher enrolled after the first one (whichever that is), and no student here.
    instructors = [p["email"] for p in event["participants"] if p["role"] == "instructor"]
    duplicate_mails = {f"{a} {k}": n for (a, k), n in mails.items()
                       if n > 1 or (k == "welcome" and a not in instructors)}
    welcomed = sum(1 for (a, k) in mails if k == "welcome" and a in instructors)
    if welcomed > len(instructors) - 1:
        duplicate_mails["instructors welcomed"] = welcomed
    no_account_mail = [p["id"] for p in event["participants"] if mails[(p["email"], "account")] == 0]
    if duplicate_mails:
        problems.append(f"mails more than expected: {duplicate_mails}")
    return {"problems": problems, "duplicate_mails": len(duplicate_mails),
            "participants_without_account_mail": len(no_account_mail)}


async def one_run(client: Client, lab: Lab, queue: str, n: int, outage_s: float, run: int) -> dict[str, Any]:
    lab.reset()
    event = make_event(f"dbo{run}-{uuid.uuid4().hex[:6]}", n, lab.template_id)
    settings = make_settings(temporal_task_queue=queue)
    started = time.monotonic()
    handle = await starter.deploy_event(client, event, settings=settings)
    # Stop the database once a tenth of the participants are done: mid-deployment, with writes in flight.
    done_at_stop = 0
    while time.monotonic() - started < 600:
        try:
            progress = await starter.get_progress(client, event["id"])
        except RPCError:  # a query the busy worker did not answer in time: ask again
            continue
        if progress.done >= n // 10 or progress.state != "running":
            done_at_stop = progress.done
            break
        await asyncio.sleep(0.2)
    stopped = time.monotonic()
    await asyncio.to_thread(lab.stop_database)
    await asyncio.sleep(outage_s)
    await asyncio.to_thread(lab.start_database)
    restarted = time.monotonic()
    outcome = "completed"
    try:
        result = await handle.result()
        done, failed = result.done, result.failed
    except WorkflowFailureError as error:
        outcome = f"failed: {error.cause}"
        progress = await starter.get_progress(client, event["id"])
        done, failed = progress.done, progress.failed
    finished = time.monotonic()
    moodle = await check_moodle(lab, event)
    retried = await retries(client, ids.deploy_id(event["id"]))
    ok = outcome == "completed" and done == n and failed == 0 and not moodle["problems"]
    return {"run": run, "ok": ok, "outcome": outcome, "participants": n, "done": done, "failed": failed,
            "done_when_database_stopped": done_at_stop, "database_down_s": round(restarted - stopped, 1),
            "deploy_s": round(finished - started, 1), "after_database_back_s": round(finished - restarted, 1),
            "retries": sum(retried.values()), "retries_by_cause": dict(retried), **moodle}


async def main(args: argparse.Namespace) -> int:
    lab = Lab()
    work = Path(tempfile.mkdtemp(prefix="db-outage-"))
    results = []
    with processes_in(work) as procs:
        temporal = procs.temporal(work / "temporal.db")
        client = await Client.connect(temporal.address, data_converter=data_converter(make_settings()))
        await ensure_search_attributes(client)
        queue = f"db-outage-{uuid.uuid4().hex[:6]}"
        env = worker_env(moodle_url=lab.url, token=lab.token, temporal_address=temporal.address, task_queue=queue,
                         moodle_sync_timeout="60", moodle_retry_max_interval=str(args.retry_max_interval),
                         moodle_max_concurrency="20")
        Processes.worker(procs, env)
        for run in range(1, args.runs + 1):
            result = await one_run(client, lab, queue, args.participants, args.outage_s, run)
            results.append(result)
            if not args.json:
                print(f"run {run}: {'OK ' if result['ok'] else 'BAD'} {result['done']}/{result['participants']} done, "
                      f"{result['failed']} failed, deploy {result['deploy_s']} s (database down "
                      f"{result['database_down_s']} s at {result['done_when_database_stopped']} done, "
                      f"{result['after_database_back_s']} s after it was back), {result['retries']} retries "
                      f"{result['retries_by_cause']}, duplicate mails {result['duplicate_mails']}"
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
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
