"""The demo itself: start the services, run the sample event's life, show Moodle after each step, stop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from devtools.processes import Proc, ProcessFailed, TemporalProc, free_port, port_is_free, worker_env
from openvle_moodle_sync import starter
from openvle_moodle_sync.settings import ConfigError, Settings, load_settings
from openvle_moodle_sync.starter.cli import describe_result, failure_message, task_queue_pollers, watch_deployment
from openvle_moodle_sync.starter.plan_view import plan_table
from openvle_moodle_sync.temporal_client import connect, ensure_search_attributes
from openvle_moodle_sync.workflows.ids import EVENT_ID_ATTRIBUTE

from . import __doc__ as package_doc
from .sample import newcomer, sample_event
from .services import DEMO_DIR, ServiceError, Services, StateDirInUse, installed

TOKEN = "demo-token-5f2b9c1e7a"
LATENCY_MS = 100
STEP_TIMEOUT = 60.0
READY_TIMEOUT = 40.0


class StepFailed(Exception):
    """A step ended otherwise than expected; the message says what Moodle or Temporal showed."""


@dataclass
class Step:
    title: str
    workflow_id: str = ""
    outcome: str = ""
    status: str = "not run"


@dataclass
class MoodleView:
    """What the event looks like in Moodle (read from the simulator's /_fake/state)."""

    course: dict[str, Any] | None
    teachers: int
    students: int
    accounts: int
    newuser_mails: int
    welcome_mails: int
    welcome_to_teachers: int
    welcome_to_students: int
    """'Welcome to course' mails by the recipient's role when the mail was sent (not their role now)."""
    calls: int

    def lines(self) -> list[str]:
        c = self.course
        if c is None:
            course = "[bold]no course[/] for this event (deleted)"
        else:
            seen = "[green]visible[/]" if c["visible"] else "[yellow]hidden[/]"
            course = (f"#{c['id']} [bold]{escape(c['fullname'])}[/] · shortname {escape(c['shortname'])} · "
                      f"{seen} · idnumber {escape(c['idnumber'])}")
        return [
            f"  course    {course}",
            f"  enrolled  {self.teachers} editing teachers (role 3), {self.students} students (role 5)"
            if c is not None else "  enrolled  -",
            f"  accounts  {self.accounts} of the event's people exist in Moodle (created by the sync, auth manual)",
            f"  mails     {self.newuser_mails} 'new account' mails, {self.welcome_mails} 'welcome to course' mails "
            f"({self.welcome_to_teachers} to teachers, {self.welcome_to_students} to students)",
            f"  calls     {self.calls} web-service calls so far",
        ]


def welcome_text(welcome_mails: int) -> str:
    """Why the deployment sent the 'welcome to course' mails it sent (none to students)."""
    why = ("Moodle welcomes whoever is enrolled into a course that already has a teacher; the sync enrols the "
           "students before the instructors, so no student got a 'welcome to course' mail")
    if welcome_mails == 0:
        return f"Nobody got a 'welcome to course' mail: {why}."
    return (f"{why}. The {welcome_mails} 'welcome to course' mail{'s' if welcome_mails != 1 else ''} went to "
            "instructors: each one enrolled after the first joins a course that has a teacher.")


class Demo:
    def __init__(self, console: Console, services: Services, latency_ms: float) -> None:
        self.console = console
        self.latency_ms = latency_ms
        self.services = services
        self.steps = [Step(title) for title in (
            "Plan the deployment (reads only)", "Deploy the event", "Add a participant", "Remove a participant",
            "Deploy the current list again (converge)", "Archive the event",
            "Delete the event (default settings)", "Delete the event (course deletion on)",
        )]
        self.temporal_port, self.ui_port = 7233, 8233
        self.moodle_port = 0
        self.worker: Proc | None = None
        self.worker_env: dict[str, str] = {}
        self.settings: Settings
        self.client: Client
        self.event: dict[str, Any] = {}
        self.people: set[str] = set()
        self.roles: dict[str, str] = {}
        """Everyone who has been in the event (username), with their role in it."""
        self.welcome_roles: list[str] = []
        """The recipient's role of each 'welcome to course' mail so far, as it was when the mail was sent."""
        self.course_id: int | None = None

    # --- start-up -----------------------------------------------------------------------------------

    def shown(self, name: str) -> str:
        return self.services.shown(name)

    @property
    def moodle_url(self) -> str:
        return f"http://127.0.0.1:{self.moodle_port}"

    @property
    def ui(self) -> str:
        return f"http://localhost:{self.ui_port}"

    def env(self, *, delete_course: bool = False) -> dict[str, str]:
        """The worker's settings (as environment variables, which win over .env)."""
        return {
            "MOODLE_ENABLED": "True",
            "MOODLE_URL": self.moodle_url,
            "MOODLE_TOKEN": TOKEN,
            "MOODLE_USER_AUTH": "manual",
            "MOODLE_USER_MATCH_FIELD": "email",
            "MOODLE_COURSE_VISIBLE": "True",
            "MOODLE_DELETE_COURSE_ON_EVENT_DELETE": str(delete_course),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_TLS": "False",
        }

    def start_processes(self) -> TemporalProc:
        if not (port_is_free(self.temporal_port) and port_is_free(self.ui_port)):
            self.temporal_port, self.ui_port = free_port(), free_port()
            self.console.print(f"[yellow]Port 7233 or 8233 is in use: the demo's Temporal uses "
                               f"{self.temporal_port} (UI {self.ui_port}) instead.[/]")
        self.moodle_port = free_port()
        temporal = self.services.start_temporal(self.temporal_port, self.ui_port)
        self.services.record(temporal=f"127.0.0.1:{self.temporal_port}", ui=self.ui)
        self.services.start_moodle(self.moodle_port, TOKEN, self.latency_ms)  # Temporal boots meanwhile
        try:
            self.settings = load_settings(**{k.lower(): v for k, v in self.env().items()})
        except ConfigError as error:
            raise ServiceError(f"{error}\n(the demo reads .env too; fix it or move it aside)") from None
        return temporal

    async def connect_temporal(self, temporal: TemporalProc) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                self.client = await connect(self.settings)
                await ensure_search_attributes(self.client)
                return
            except (ConnectionError, RPCError) as error:
                if not temporal.alive():
                    raise temporal.fail("ended before it served") from None
                if time.monotonic() > deadline:
                    raise ServiceError(f"Temporal did not become ready within {READY_TIMEOUT:.0f} s: {error}") from None
                await asyncio.sleep(0.2)

    async def terminate_leftovers(self) -> int:
        """Runs an interrupted earlier demo left running (its simulator is gone) would confuse this one."""
        count = 0
        try:
            async for run in self.client.list_workflows('ExecutionStatus="Running"'):
                await self.client.get_workflow_handle(run.id, run_id=run.run_id).terminate(
                    reason="left over from an earlier, interrupted demo")
                count += 1
        except RPCError:
            pass
        return count

    async def start_worker(self, *, delete_course: bool = False) -> Proc:
        """(Re)start the worker with the demo's settings and wait until Temporal sees it poll."""
        self.worker_env = self.env(delete_course=delete_course)
        worker = self.worker = self.services.start_worker(
            worker_env(moodle_url=self.moodle_url, token=TOKEN, temporal_address=f"127.0.0.1:{self.temporal_port}",
                       isolated=False, **self.worker_env), self.worker)
        queue, prefix = self.settings.temporal_task_queue, f"{worker.pid}@"
        deadline = time.monotonic() + READY_TIMEOUT
        while not any(p.startswith(prefix) for p in await task_queue_pollers(self.client, queue)):
            if not worker.alive():
                raise worker.fail("ended before it polled its task queue")
            if time.monotonic() > deadline:
                raise ServiceError(f"the worker did not poll within {READY_TIMEOUT:.0f} s; "
                                   f"see {self.shown('worker.log')}")
            await asyncio.sleep(0.2)
        return worker

    # --- Moodle and Temporal views ------------------------------------------------------------------

    async def moodle(self) -> MoodleView:
        async with httpx.AsyncClient(timeout=10) as http:
            state = (await http.get(f"{self.moodle_url}/_fake/state")).json()
        course = next((c for c in state["courses"] if c["id"] == self.course_id), None)
        enrolments = [e for e in state["enrolments"] if e["courseid"] == self.course_id and not e["suspended"]]
        users = {u["id"] for u in state["users"] if u["username"] in self.people}
        mails = [m for m in state["messages"] if m["user_id"] in users]
        usernames = {u["id"]: u["username"] for u in state["users"]}
        welcome = [m for m in mails if m["kind"] == "welcome"]
        for mail in welcome[len(self.welcome_roles):]:  # sent since the last look: the recipient's role now
            self.welcome_roles.append(self.roles[usernames[mail["user_id"]]])
        return MoodleView(
            course=course,
            teachers=sum(1 for e in enrolments if self.settings.moodle_instructor_role_id in e["roles"]),
            students=sum(1 for e in enrolments if self.settings.moodle_student_role_id in e["roles"]),
            accounts=len(users),
            newuser_mails=sum(1 for m in mails if m["kind"] == "newuser"),
            welcome_mails=len(welcome),
            welcome_to_teachers=self.welcome_roles.count("instructor"),
            welcome_to_students=self.welcome_roles.count("student"),
            calls=state["call_count"],
        )

    def workflow_link(self, handle: WorkflowHandle[Any, Any]) -> str:
        return f"{self.ui}/namespaces/default/workflows/{quote(handle.id)}/{handle.result_run_id}/history"

    def event_link(self) -> str:
        query = quote(f'{EVENT_ID_ATTRIBUTE.name}="{self.event["id"]}"')
        return f"{self.ui}/namespaces/default/workflows?query={query}"

    def show(self, view: MoodleView, handle: WorkflowHandle[Any, Any]) -> None:
        self.console.print("[bold]In Moodle now:[/]")
        for line in view.lines():
            self.console.print(line, highlight=False, soft_wrap=True)
        self.console.print(f"[bold]In the Temporal UI:[/] {self.workflow_link(handle)}", highlight=False,
                           soft_wrap=True)

    # --- the steps ----------------------------------------------------------------------------------

    async def run_step(self, index: int, intro: str, body: Callable[[Step], Awaitable[None]]) -> None:
        step = self.steps[index]
        self.console.print()
        self.console.rule(f"[bold]Step {index + 1}/{len(self.steps)} · {step.title}", align="left")
        self.console.print(intro, highlight=False)
        try:
            await asyncio.wait_for(body(step), STEP_TIMEOUT)
        except TimeoutError:
            step.status = f"failed: no result within {STEP_TIMEOUT:.0f} s (see {self.shown('worker.log')})"
            raise StepFailed(step.status) from None
        except StepFailed as error:
            step.status = f"failed: {error}"
            raise
        step.status = "done"

    async def finish(self, step: Step, handle: WorkflowHandle[Any, Any], result: Any) -> MoodleView:
        step.workflow_id = handle.id
        self.console.print(f"[bold green]✓[/] {escape(handle.id)} completed: {escape(describe_result(result))}",
                           highlight=False)
        view = await self.moodle()
        self.show(view, handle)
        return view

    async def result(self, handle: WorkflowHandle[Any, Any]) -> Any:
        try:
            return await handle.result()
        except WorkflowFailureError as failure:
            raise StepFailed(f"{handle.id} failed: {failure_message(failure)}") from None

    @staticmethod
    def expect(condition: bool, what: str) -> None:
        if not condition:
            raise StepFailed(f"expected {what}")

    async def plan(self, step: Step) -> None:
        before = await self.moodle()
        plan = await starter.plan_event(self.client, self.event, settings=self.settings)
        self.console.print(plan_table(plan))
        after = await self.moodle()
        self.expect(plan.course.action == "create" and len(plan.create_accounts) == len(self.event["participants"]),
                    "a new course and an account for everyone")
        self.expect((after.accounts, after.newuser_mails, after.welcome_mails) == (0, 0, 0),
                    "no account and no mail made by a plan")
        self.console.print(f"[dim]The plan ran on the worker ({after.calls - before.calls} read-only web-service "
                           "calls): no write, no mail. openvle-moodle-sync plan --event EVENT.json shows the same.[/]")
        step.outcome = (f"would create the course and {len(plan.create_accounts)} accounts; expected mails "
                        + ", ".join(f"{n} {kind}" for kind, n in plan.expected_mails.items()))

    async def converge(self, step: Step) -> None:
        leaving = [p for p in self.event["participants"] if p["role"] == "student"][:2]
        self.event["participants"] = [p for p in self.event["participants"] if p not in leaving]
        plan = await starter.plan_event(self.client, self.event, settings=self.settings)
        self.console.print(plan_table(plan))
        self.expect(sorted(r.participant_id for r in plan.remove) == sorted(p["id"] for p in leaving),
                    "the plan to take the 2 dropped students away")
        before = await self.moodle()
        handle = await starter.deploy_event(self.client, self.event, settings=self.settings)
        result = await self.result(handle)
        view = await self.finish(step, handle, result)
        self.expect(view.students == before.students - 2, "two students fewer")
        self.console.print("[dim]A deploy converges on the list it is given: it takes away the people it enrolled "
                           "for this event who are no longer listed (by MOODLE_UNENROL_ACTION), never people "
                           "enrolled by hand. Over MOODLE_MAX_REMOVAL_PERCENT (25 %) it would take nobody away and "
                           "stop with MassRemovalBlocked.[/]")
        step.outcome = (", ".join(f"{p['first_name']} {p['last_name']}" for p in leaving)
                        + f" taken away ({view.students} students left)")

    async def deploy(self, step: Step) -> None:
        handle = await starter.deploy_event(self.client, self.event, settings=self.settings)
        try:
            result = await watch_deployment(self.client, handle, self.event["id"], self.console)
        except WorkflowFailureError as failure:
            raise StepFailed(f"{handle.id} failed: {failure_message(failure)}") from None
        self.course_id = result.course_id
        view = await self.finish(step, handle, result)
        instructors = sum(1 for p in self.event["participants"] if p["role"] == "instructor")
        students = len(self.event["participants"]) - instructors
        self.expect(view.course is not None and bool(view.course["visible"]), "a visible course")
        self.expect((view.teachers, view.students) == (instructors, students),
                    f"{instructors} teachers and {students} students, Moodle has {view.teachers} and {view.students}")
        self.expect(view.accounts == len(self.event["participants"]), "an account for every participant")
        self.expect(view.welcome_to_students == 0, "no 'welcome to course' mail to a student")
        self.console.print(f"[dim]Each new account (auth manual) got Moodle's 'new account' mail with its password. "
                           f"{welcome_text(view.welcome_mails)}[/]")
        step.outcome = (f"course {result.course_id} created; {view.accounts} accounts; {view.teachers} teachers "
                        f"+ {view.students} students enrolled")

    async def add(self, step: Step) -> None:
        person = newcomer(self.event)
        self.people.add(person["username"])
        self.roles[person["username"]] = person["role"]
        before = await self.moodle()
        handle = await starter.add_participant(self.client, self.event, person, settings=self.settings)
        result = await self.result(handle)
        view = await self.finish(step, handle, result)
        self.expect(view.students == before.students + 1, "one more student")
        self.console.print(f"[dim]{escape(person['first_name'])} {escape(person['last_name'])} got a 'new account' "
                           "mail and, joining a course that has teachers, Moodle's 'welcome to course' mail.[/]")
        self.event["participants"].append(person)
        step.outcome = f"{person['first_name']} {person['last_name']}: account created, enrolled as student"

    async def remove(self, step: Step) -> None:
        person = next(p for p in reversed(self.event["participants"][:-1]) if p["role"] == "student")
        before = await self.moodle()
        handle = await starter.remove_participant(self.client, self.event, person, settings=self.settings)
        result = await self.result(handle)
        view = await self.finish(step, handle, result)
        self.expect(view.students == before.students - 1, "one student fewer")
        self.event["participants"].remove(person)  # OpenVLE's list no longer has them
        self.console.print("[dim]MOODLE_UNENROL_ACTION=unenrol (the guide's default): the participant's submissions "
                           "and grades in this course are gone; the account stays. With remove_roles (and the two "
                           "role functions in the token's service) the enrolment and the grades stay.[/]")
        step.outcome = f"{person['first_name']} {person['last_name']} unenrolled ({view.students} students left)"

    async def archive(self, step: Step) -> None:
        handle = await starter.archive_event(self.client, self.event, settings=self.settings)
        result = await self.result(handle)
        view = await self.finish(step, handle, result)
        self.expect(view.students == 0 and view.teachers == 3, "no students and 3 teachers left")
        self.expect(view.course is not None and not view.course["visible"], "a hidden course")
        step.outcome = f"{result.students_unenrolled} students unenrolled, {view.teachers} teachers kept, hidden"

    async def delete_kept(self, step: Step) -> None:
        handle = await starter.delete_event(self.client, self.event, settings=self.settings)
        result = await self.result(handle)
        view = await self.finish(step, handle, result)
        self.expect(view.course is not None, "the course kept")
        self.console.print(
            "[dim]The guide's default: MOODLE_DELETE_COURSE_ON_EVENT_DELETE=False keeps the Moodle course when "
            "the event is deleted (instructors keep its material and grades). An operator who wants it gone sets "
            "the variable to True and restarts the worker: next step.[/]")
        step.outcome = f"course {self.course_id} kept (the default)"

    async def delete_for_good(self, step: Step) -> None:
        self.console.print("Restarting the worker with MOODLE_DELETE_COURSE_ON_EVENT_DELETE=True …", highlight=False)
        worker = await self.start_worker(delete_course=True)
        self.console.print(f"  worker pid {worker.pid} polling again", highlight=False)
        handle = await starter.delete_event(self.client, self.event, settings=self.settings)
        result = await self.result(handle)
        view = await self.finish(step, handle, result)
        self.expect(view.course is None, "the course deleted")
        self.console.print("[dim]The Moodle accounts stay: other courses may use them.[/]")
        step.outcome = f"course {self.course_id} deleted; {view.accounts} accounts stay"

    async def restore_defaults(self) -> None:
        """--keep-running: the worker left running gets the default settings back."""
        self.console.print("Restarting the worker with the default MOODLE_DELETE_COURSE_ON_EVENT_DELETE=False …",
                           highlight=False)
        worker = await self.start_worker()
        self.console.print(f"  worker pid {worker.pid} polling again", highlight=False)

    # --- the whole run ------------------------------------------------------------------------------

    async def run(self, temporal: TemporalProc, *, keep_running: bool = False) -> int:
        console = self.console
        with console.status("Starting the Temporal dev server …"):
            await self.connect_temporal(temporal)
        console.print(f"[green]✓[/] Temporal dev server  127.0.0.1:{self.temporal_port}, Web UI {self.ui} "
                      f"(state in {self.shown('temporal.db')}, log {self.shown('temporal.log')})",
                      highlight=False)
        console.print(f"[green]✓[/] Moodle simulator     {self.moodle_url} ({self.latency_ms:g} ms per call, "
                      f"log {self.shown('fake_moodle.log')})", highlight=False)
        leftovers = await self.terminate_leftovers()
        if leftovers:
            console.print(f"  (terminated {leftovers} run(s) an interrupted earlier demo left running)")
        with console.status("Starting the worker …"):
            worker = await self.start_worker()
        console.print(f"[green]✓[/] Worker               pid {worker.pid}, task queue "
                      f"{self.settings.temporal_task_queue!r} (openvle-moodle-sync-worker, "
                      f"log {self.shown('worker.log')})",
                      highlight=False)

        async with httpx.AsyncClient(timeout=10) as http:
            template = (await http.get(f"{self.moodle_url}/_fake/state")).json()["template_course_id"]
        courses = await starter.search_courses("", settings=self.settings)
        event_id = "demo-" + time.strftime("%H%M%S")
        self.event = sample_event(event_id, template)
        self.people = {p["username"] for p in self.event["participants"]}
        self.roles = {p["username"]: p["role"] for p in self.event["participants"]}
        event_json = json.dumps(self.event, ensure_ascii=False, indent=2)
        (self.services.state_dir / "event.json").write_text(event_json, encoding="utf-8")
        instructors = [p for p in self.event["participants"] if p["role"] == "instructor"]
        console.print()
        console.print(Panel.fit(
            f"[bold]{self.event['name']}[/] (OpenVLE event {event_id}, slug {self.event['slug']})\n"
            f"{len(self.event['participants'])} participants: {len(instructors)} instructors ("
            + ", ".join(f"{p['first_name']} {p['last_name']}" for p in instructors) + "), "
            f"{len(self.event['participants']) - len(instructors)} students (Łukasz Nowak, Søren Østergaard, "
            "Chloé Lefèvre, …)\n"
            f"Template: Moodle course {template} ("
            + ", ".join(f"{c['shortname']}" for c in courses if c["id"] == template)
            + f"), found with `openvle-moodle-sync courses`.  Event JSON: {self.shown('event.json')}",
            title="The sample event"), highlight=False)
        console.print(f"All of the event's runs in the Temporal UI: {self.event_link()}", highlight=False,
                      soft_wrap=True)

        plan: list[tuple[str, Callable[[Step], Awaitable[None]]]] = [
            ("Before anything is written: what would a deploy do now?", self.plan),
            ("OpenVLE starts the event: the template course is duplicated under the event's name and slug, "
             "each participant's account is created if missing, and everyone is enrolled.", self.deploy),
            ("A participant joins the running event.", self.add),
            ("A student leaves the running event.", self.remove),
            ("OpenVLE deploys the event's current list, two students shorter: Moodle converges on it.",
             self.converge),
            ("The event ends: students are unenrolled, instructors stay, the course is hidden.", self.archive),
            ("The event is deleted in OpenVLE, with the default settings.", self.delete_kept),
            ("The same with MOODLE_DELETE_COURSE_ON_EVENT_DELETE=True.", self.delete_for_good),
        ]
        for index, (intro, body) in enumerate(plan):
            try:
                await self.run_step(index, intro, body)
            except StepFailed as error:
                console.print(f"[bold red]✗ Step {index + 1} failed:[/] {escape(str(error))}")
                break
        code = self.summary()
        if keep_running and self.worker_env != self.env():
            await self.restore_defaults()
        return code

    def summary(self) -> int:
        console = self.console
        table = Table(title="Summary", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("Step", no_wrap=True)
        table.add_column("Workflow", no_wrap=True)
        table.add_column("What happened in Moodle")
        table.add_column("Status")
        for number, step in enumerate(self.steps, 1):
            style = "green" if step.status == "done" else "red"
            mark = "✓ done" if step.status == "done" else step.status
            table.add_row(str(number), step.title, step.workflow_id, escape(step.outcome),
                          f"[{style}]{escape(mark)}[/]")
        console.print()
        console.print(table)
        done = sum(1 for s in self.steps if s.status == "done")
        ok = done == len(self.steps)
        colour = "green" if ok else "red"
        console.print(f"[bold {colour}]Demo result: {done}/{len(self.steps)} steps done.[/]")
        if self.event:
            console.print(f"Every run of the event in the Temporal UI: {self.event_link()}", highlight=False,
                          soft_wrap=True)
        return 0 if ok else 1

    def write_next_event(self) -> str:
        """A new event of the same people, for trying the CLI after the demo (its own event is deleted)."""
        event_id = f"{self.event.get('id', 'demo')}-next"
        event = {**sample_event(event_id, int(self.event.get("moodle_course_id", 0))),
                 "name": "Linux Workshop December 2026", "slug": "linux-ws-2026-12"}
        name = "next-event.json"
        (self.services.state_dir / name).write_text(json.dumps(event, ensure_ascii=False, indent=2), encoding="utf-8")
        return name

    def hold(self) -> None:
        """--keep-running: leave everything up for exploring until Ctrl-C."""
        env = self.worker_env
        settings = ", ".join(f"{k}={v}" for k, v in env.items() if k.startswith("MOODLE_") and k != "MOODLE_TOKEN")
        pid = self.worker.pid if self.worker else None
        next_event = self.write_next_event()
        lines = [
            "[bold]Still running (--keep-running).[/] Press Ctrl-C to stop everything.",
            f"  Temporal UI:       {self.ui}",
            f"  Moodle simulator:  {self.moodle_url}/_fake/state (its whole state as JSON)",
            f"  Worker:            pid {pid} with {settings} (the rest from the environment and .env)",
            "  Try the CLI in another shell, with the worker's settings:",
            *([f"    source {activate}"] if (activate := venv_activate()) else []),
            "    export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()),
            "    openvle-moodle-sync doctor",
            "    openvle-moodle-sync courses",
            f"    openvle-moodle-sync progress --event-id {self.event.get('id', 'ID')}",
            f"    openvle-moodle-sync plan --event {self.shown(next_event)}",
            f"    openvle-moodle-sync deploy --event {self.shown(next_event)} --wait",
            f"  ({self.shown(next_event)} is a new event of the same people: the demo's event is deleted.)",
        ]
        self.console.print()
        for line in lines:
            self.console.print(line, highlight=False, soft_wrap=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:  # the normal end of --keep-running
            self.console.print()


def venv_activate() -> str | None:
    """The script that puts the installed commands (``openvle-moodle-sync``) on PATH, as a shell names it from
    here; None when they are on PATH already or this Python has no virtual environment."""
    script = installed("openvle-moodle-sync")
    activate = Path(sys.executable).parent / "activate"
    if script is None or shutil.which("openvle-moodle-sync") == str(script) or not activate.is_file():
        return None
    with contextlib.suppress(ValueError):
        return str(activate.relative_to(Path.cwd()))
    return shlex.quote(str(activate))


def _raise_interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=package_doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-running", action="store_true",
                        help="keep Temporal, the simulator and the worker (on the default settings again) running "
                             "after the demo, until Ctrl-C")
    parser.add_argument("--state-dir", type=Path, default=DEMO_DIR,
                        help="where the dev server's database, the logs and event.json go (default .demo)")
    parser.add_argument("--latency-ms", type=float, default=LATENCY_MS,
                        help=f"the simulator's delay per Moodle call (default {LATENCY_MS}, about a real Moodle's)")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    started = time.monotonic()
    console.print(Panel.fit("[bold]openvle-moodle-sync demo[/]: Temporal dev server + Moodle simulator + worker, "
                            "and one event's whole life in Moodle", border_style="blue"))
    code = 1
    try:
        with Services(state_dir=args.state_dir) as services:
            demo = Demo(console, services, args.latency_ms)
            try:
                temporal = demo.start_processes()
                code = asyncio.run(demo.run(temporal, keep_running=args.keep_running))
                console.print(f"Finished in {time.monotonic() - started:.1f} s.")
                if args.keep_running:
                    demo.hold()
            except (ServiceError, ProcessFailed) as error:
                console.print(f"[bold red]Could not start the demo:[/] {escape(str(error))}")
                code = 1
            finally:
                console.print("Stopping the worker, the Moodle simulator and the Temporal dev server …")
        console.print(f"Stopped. Logs are in {services.shown('')}/; run again with: make demo "
                      "(DEMO_ARGS=--keep-running keeps everything up for the UI).", highlight=False)
    except StateDirInUse as error:  # nothing was started, nothing in the directory touched
        console.print(f"[bold red]Could not start the demo:[/] {escape(str(error))}", highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("\nInterrupted: everything the demo started is stopped.")
        return 130
    return code

