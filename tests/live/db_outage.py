"""Moodle's database stopped in the middle of a deployment, on the Moodle lab: one run and its checks.

Used by tests/live/test_database_outage_live.py (one run) and bench/db_outage.py (several, with figures).
Only for the lab (../shared/moodle-lab): it stops and starts the lab's PostgreSQL with pg_ctl, as root."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError

from openvle_moodle_sync import starter
from openvle_moodle_sync.models import course_idnumber
from openvle_moodle_sync.moodle import MoodleClient
from openvle_moodle_sync.starter.progress import NOT_STARTED, RUNNING
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent.parent
LAB = Path(os.environ.get("MOODLE_LAB_SRC", ROOT.parent / "shared" / "moodle-lab"))
PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))
ROLE_IDS = {"student": 5, "instructor": 3}


class Lab:
    """The Moodle lab in ``directory`` (its MOODLE_LAB_DIR): its tokens, its reset, and its PostgreSQL
    stopped and started exactly as the lab's own scripts do (pg_ctl as the postgres user)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        pg_conf = (self.dir / "lab.env").read_text() if (self.dir / "lab.env").exists() else ""
        recorded = dict(line.split("=", 1) for line in pg_conf.splitlines() if "=" in line)
        self.pg_port = recorded.get("PG_PORT", os.environ.get("MOODLE_LAB_PG_PORT", "5433")).strip("'\"")
        values = dict(line.split("=", 1) for line in (self.dir / "tokens.env").read_text().splitlines() if "=" in line)
        self.url, self.token = values["MOODLE_URL"], values["MOODLE_TOKEN"]
        self.template_id = int(values["MOODLE_TEMPLATE_COURSE_ID"])
        self.mail_log = Path(values["MOODLE_LAB_MAIL_LOG"])

    def reset(self) -> None:
        subprocess.run(["bash", str(LAB / "reset.sh")], check=True, capture_output=True,
                       env={**os.environ, "MOODLE_LAB_DIR": str(self.dir)})

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
    people = {p["email"].lower() for p in event["participants"]}
    for mail in lab.mails():  # the log is the lab's: only this event's people count
        kind = "welcome" if str(mail.get("subject", "")).lower().startswith("welcome to") else "account"
        for rcpt in mail.get("rcpt_tos", []):
            if str(rcpt).lower() in people:
                mails[(str(rcpt).lower(), kind)] += 1
    # Moodle welcomes every teacher enrolled after the first one (whichever that is), and no student here:
    # a welcome mail more than that is ours (an enrol call repeated), a problem.
    instructors = [p["email"] for p in event["participants"] if p["role"] == "instructor"]
    extra_welcomes = sum(n for (a, k), n in mails.items() if k == "welcome" and (n > 1 or a not in instructors))
    extra_welcomes += max(0, sum(1 for (a, k) in mails if k == "welcome" and a in instructors) - (len(instructors) - 1))
    if extra_welcomes:
        problems.append(f"{extra_welcomes} welcome mail(s) more than Moodle sends for one enrolment each")
    # A second "New user account" mail is Moodle's: core_user_create_users mails the password inside its
    # database transaction, so when the database fails after the mail the account is rolled back and the
    # retry (which finds no account) creates it again, with a second mail. Counted, not a problem of ours.
    account_mails_twice = sorted(a for (a, k), n in mails.items() if k == "account" and n > 1)
    return {"problems": problems, "welcome_mails_extra": extra_welcomes,
            "account_mails_twice": len(account_mails_twice),
            "participants_without_account_mail": sum(1 for p in event["participants"]
                                                     if mails[(p["email"], "account")] == 0)}


async def one_run(client: Client, lab: Lab, queue: str, n: int, outage_s: float, run: int, *,
                  reset: bool = False, prefix: str = "") -> dict[str, Any]:
    """Deploy an event of ``n`` with the database stopped for ``outage_s`` once a tenth are done; what came
    of it (``ok`` when every participant is done and Moodle holds exactly the event, with no mail twice)."""
    if reset:
        lab.reset()
    event = make_event(f"{prefix}dbo{run}-{uuid.uuid4().hex[:6]}", n, lab.template_id)
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
        if progress.done >= n // 10 or progress.state not in (NOT_STARTED, RUNNING):  # or it ended
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
    retried = await retries(client, handle.id)
    ok = outcome == "completed" and done == n and failed == 0 and not moodle["problems"]
    return {"run": run, "ok": ok, "outcome": outcome, "participants": n, "done": done, "failed": failed,
            "done_when_database_stopped": done_at_stop, "database_down_s": round(restarted - stopped, 1),
            "deploy_s": round(finished - started, 1), "after_database_back_s": round(finished - restarted, 1),
            "retries": sum(retried.values()), "retries_by_cause": dict(retried), **moodle}


