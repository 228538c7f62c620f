"""``python -m starter``: the operators' command line over `starter.api` (see docs/backend-api.md, "Command line").

    python -m starter deploy   --event EVENT.json [--wait]
    python -m starter add      --event EVENT.json --participant PARTICIPANT.json [--wait]
    python -m starter remove   --event EVENT.json --participant PARTICIPANT.json [--wait]
    python -m starter archive  --event EVENT.json [--wait]
    python -m starter delete   --event EVENT.json [--wait]
    python -m starter progress --event-id ID [--json]
    python -m starter rerun    --event-id ID [--wait]
    python -m starter courses  [--search TEXT] [--json]
    python -m starter plan     --event EVENT.json [--json]
    python -m starter doctor

Exit codes: 0 success; 1 the workflow failed (or `progress` shows a run that ended badly), a setting is
wrong, or Temporal/Moodle could not be reached; 2 bad input or usage (nothing was started). Input is
validated before anything talks to Temporal. No Temporal or settings error ends in a traceback: each is
said in words with its fix (`temporal_errors`).

Each command checks only the settings it uses: the commands that start or read workflows need the
TEMPORAL_* ones (the worker uses its own MOODLE_* settings), `courses` and `doctor` the MOODLE_* ones too.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError

from openvle_moodle_sync.models import InputError, check_event_id, parse_event, parse_participant
from openvle_moodle_sync.moodle import MoodleError, check_connection, client_from_settings
from openvle_moodle_sync.moodle.check import CheckStatus
from openvle_moodle_sync.settings import ConfigError, Settings, UnenrolAction, load_settings
from openvle_moodle_sync.temporal_client import connect, connection_failure
from openvle_moodle_sync.temporal_config import resolve
from openvle_moodle_sync.workflows.ids import EVENT_ID_ATTRIBUTE
from openvle_moodle_sync.workflows.types import (
    ArchiveResult,
    ChangeResult,
    DeleteResult,
    DeployResult,
    SubtaskState,
)

from . import api
from .plan_view import plan_json, plan_table
from .progress import DeploymentProgress, next_step
from .temporal_errors import SCHEME_WARNING, START_WORKER, explain, scheme_fix

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
NOTHING_STARTED = "Nothing was started."
"""Said after an error that stopped a command before it started any run."""


def event_id_arg(value: str) -> str:
    """``--event-id``, checked like the event's ``id`` before anything asks Temporal (argparse: exit 2)."""
    try:
        return check_event_id(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
POLL_SECONDS = 0.5
DOCTOR_RPC_TIMEOUT = timedelta(seconds=10)


class CliError(Exception):
    """A problem the command reports as one message and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# --- Arguments ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m starter",
        description="Start and follow the OpenVLE -> Moodle workflows (Temporal at TEMPORAL_ADDRESS).",
        epilog="Settings come from the environment and .env. The commands that start or read workflows use only "
               "TEMPORAL_* (the worker uses its own MOODLE_* settings); courses and doctor use this shell's "
               "MOODLE_* too. See docs/configuration.md.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_)

    def event_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--event", required=True, metavar="EVENT.json", help="the event as JSON (- for stdin)")

    def participant_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--participant", required=True, metavar="PARTICIPANT.json",
                       help="one participant as JSON (- for stdin)")

    def wait_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--wait", action="store_true",
                       help="follow the workflow until it ends; exit 0 only if it succeeded")

    p = command("deploy", "Event start or list change: Moodle converges on the event (creates the course, "
                          "enrols, fixes roles, takes away people it enrolled who are no longer listed).")
    event_arg(p)
    wait_arg(p)
    p.add_argument("--allow-mass-removal", action="store_true",
                   help="go past the mass-removal brake (MOODLE_MAX_REMOVAL_PERCENT) for this deploy")
    for name, help_ in (("add", "A participant joined an active event: create them if needed and enrol them."),
                        ("remove", "A participant left an active event: take them away (by MOODLE_UNENROL_ACTION).")):
        p = command(name, help_)
        event_arg(p)
        participant_arg(p)
        wait_arg(p)
    p = command("archive", "Event end: take the students away (by MOODLE_UNENROL_ACTION), keep the instructors, "
                           "hide the course.")
    event_arg(p)
    wait_arg(p)
    p = command("delete", "Event deleted: delete its course if MOODLE_DELETE_COURSE_ON_EVENT_DELETE is true.")
    event_arg(p)
    wait_arg(p)
    p = command("progress", "Show an event's deployment: its stage and one subtask per participant.")
    p.add_argument("--event-id", required=True, metavar="ID", type=event_id_arg)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = command("rerun", "Run an event's last deployment again; it only does what is missing.")
    p.add_argument("--event-id", required=True, metavar="ID", type=event_id_arg)
    wait_arg(p)
    p = command("courses", "List or search Moodle courses (the templates an environment can map to).")
    p.add_argument("--search", default="", metavar="TEXT", help="only courses whose name matches TEXT")
    p.add_argument("--json", action="store_true", help="print a JSON list of {id, shortname, fullname}")
    p = command("plan", "Show what a deploy of the event would do now, without writing anything.")
    event_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    command("doctor", "Check the settings, the Temporal connection and the Moodle connection.")
    return parser


# --- Context: settings and client, loaded on first use ------------------------------------------------


WORKER_SETTINGS_NOTE = ("The worker uses its own MOODLE_* settings (where it runs); check them there with: "
                        "python -m starter doctor")


class Context:
    """What a command needs; tests inject `settings` and `client`, the CLI loads them on first use.

    ``uses_moodle`` is False for the commands that only talk to Temporal: for them this shell's MOODLE_*
    settings are not checked (the worker has its own), so a typo there never blocks `deploy` or `progress`.
    ``starts`` is False for the commands that only read: their errors do not add "Nothing was started."."""

    def __init__(self, out: Console, err: Console, settings: Settings | None = None,
                 client: Client | None = None, *, uses_moodle: bool = True, starts: bool = True) -> None:
        self.out, self.err = out, err
        self._settings, self._client = settings, client
        self.uses_moodle, self.starts = uses_moodle, starts

    def failed(self, message: str, code: int = EXIT_FAILED) -> CliError:
        """The command could not begin: ``message``, and for a command that starts a run, that none was."""
        return CliError(f"{message}\n{NOTHING_STARTED}" if self.starts else message, code)

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._load_settings()
        return self._settings

    def _load_settings(self) -> Settings:
        try:
            return load_settings()
        except ConfigError as error:
            if self.uses_moodle:
                raise self.failed(str(error)) from None
            full_error = error
        try:
            settings = load_settings(**MOODLE_DEFAULTS)
        except ConfigError as error:
            raise self.failed(str(error)) from None
        self.err.print(Text(f"Note: this shell's MOODLE_* settings have problems; this command does not use them.\n"
                            f"{str(full_error).split(chr(10), 1)[-1]}\n{WORKER_SETTINGS_NOTE}.", style="yellow"))
        return settings

    async def client(self) -> Client:
        if self._client is None:
            settings = self.settings()
            connection = resolve(settings)
            if "://" in connection.address:
                raise self.failed(scheme_fix(connection.address))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    client = await connect(settings)
                except ConnectionError as error:  # connect() words it, with the connection's settings
                    raise self.failed(str(error)) from None
                except OSError as error:  # the system refused something first (a file, a socket)
                    raise self.failed(connection_failure(connection, error)) from None
            if any(SCHEME_WARNING in str(w.message) for w in caught):
                raise self.failed(scheme_fix(connection.address))
            self._client = client
        return self._client

    def temporal_error(self, error: RPCError) -> CliError:
        """An error of Temporal during the command, in words."""
        connection = resolve(self.settings())
        return CliError(explain(error, address=connection.address, namespace=connection.namespace))


#: The MOODLE_* settings at their defaults: what a Temporal-only command loads instead of this shell's.
MOODLE_DEFAULTS: dict[str, Any] = {
    name: info.default for name, info in Settings.model_fields.items() if name.startswith("moodle_")
}


# --- Input -------------------------------------------------------------------------------------------


def read_json(path: str, what: str) -> Any:
    """The JSON in ``path`` (or stdin for ``-``); a `CliError` (exit 2) that says what is wrong otherwise."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise CliError(f"Cannot read the {what} file {path}: {reason}. {NOTHING_STARTED}", EXIT_USAGE) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f"The {what} file {path} is not valid JSON: {error.msg} at line {error.lineno}, "
                       f"column {error.colno}. {NOTHING_STARTED}", EXIT_USAGE) from None
    if not isinstance(value, dict):
        raise CliError(f"The {what} file {path} must hold one JSON object ({{...}}), not a "
                       f"{type(value).__name__}. {NOTHING_STARTED}", EXIT_USAGE)
    return value


def _valid(parse: Callable[[Any], Any], data: Any) -> Any:
    try:
        return parse(data)
    except InputError as error:
        raise CliError(f"{error}\n{NOTHING_STARTED}", EXIT_USAGE) from None


# --- Following a run ---------------------------------------------------------------------------------


class _DeployBar(Progress):
    """A progress bar with a line below it for why the run is waiting (Moodle calls being retried)."""

    message: str = ""

    def get_renderables(self) -> Any:
        yield self.make_tasks_table(self.tasks)
        if self.message:
            yield Text(f"  {self.message}", style="yellow")


async def _progress_or_none(client: Client, event_id: str) -> DeploymentProgress | None:
    try:
        return await api.get_progress(client, event_id)
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError, api.DeploymentNotFound):
        return None  # not started on the worker yet, or a worker restarting: ask again next time


async def watch_deployment(client: Client, handle: WorkflowHandle[Any, DeployResult], event_id: str,
                           console: Console, *, poll_seconds: float = POLL_SECONDS) -> DeployResult:
    """Show a live progress bar of a deployment until it ends; return its result or raise
    `WorkflowFailureError` (then `get_progress` tells which participants failed)."""
    result = asyncio.ensure_future(handle.result())
    spinner = SpinnerColumn(finished_text="[green]✓[/]")
    bar = _DeployBar(
        spinner,
        TextColumn("[bold]Deploying event {task.fields[event]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("done{task.fields[failed_text]}"),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis")),
        console=console,
    )
    try:
        with bar:
            task = bar.add_task("starting", total=None, event=escape(event_id), failed_text="")
            while True:
                progress = await _progress_or_none(client, event_id)
                if progress is not None:
                    bar.update(task, total=progress.total or None, completed=progress.done,
                               description=escape(progress.stage),
                               failed_text=f" [red]· {progress.failed} failed[/]" if progress.failed else "")
                    bar.message = progress.message or ""
                if result.done():
                    break
                await asyncio.wait({result}, timeout=poll_seconds)
            if result.exception() is None:
                final = result.result()
                bar.message = ""
                bar.update(task, total=final.total, completed=final.done, description="finished")
            else:
                spinner.finished_text = Text("✗", style="red")
                bar.update(task, description="[red]failed[/]")
            bar.stop_task(task)
    finally:
        if not result.done():
            result.cancel()
    return result.result()


async def _wait_plain(handle: WorkflowHandle[Any, Any], console: Console) -> Any:
    with console.status(f"Waiting for {escape(handle.id)} …"):
        return await handle.result()


async def _warn_if_no_worker(ctx: Context, client: Client) -> None:
    queue = ctx.settings().temporal_task_queue
    try:
        pollers = await task_queue_pollers(client, queue)
    except RPCError:
        return
    if not pollers:
        ctx.err.print(f"[yellow]Note:[/] no worker is polling task queue {queue!r} right now; the run waits "
                      f"until one does (start it with: {START_WORKER}).")


async def task_queue_pollers(client: Client, queue: str) -> list[str]:
    response = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    ))
    return [p.identity for p in response.pollers]


def failure_kind(failure: WorkflowFailureError) -> str:
    cause: BaseException = failure.cause
    if isinstance(cause, ApplicationError):
        return cause.type or type(cause).__name__
    return type(cause).__name__


def failure_message(failure: WorkflowFailureError) -> str:
    cause: BaseException = failure.cause
    if isinstance(cause, FailureError):
        return f"[{failure_kind(failure)}] {cause.message}"
    return str(cause)


def describe_result(result: Any) -> str:
    """One line (or a few) saying what a finished run did in Moodle."""
    skipped = getattr(result, "skipped_reason", None)
    if skipped:
        return f"Nothing to do: {skipped}"
    if isinstance(result, DeployResult):
        how = "created from the template" if result.course_created else "already there"
        created = sum(1 for p in result.participants if p.user_created)
        written = sum(1 for p in result.participants if p.enrolled)
        return (f"Moodle course {result.course_id} ({result.course_shortname}, {how}): "
                f"{result.done} of {result.total} participants have their account and enrolment "
                f"({created} accounts created and {written} enrolments written by this run)"
                + (f"; {len(result.removed)} no longer listed taken away ({result.removed[0].action})"
                   if result.removed else ""))
    if isinstance(result, ChangeResult):
        return "; ".join(f"participant {o.participant_id}: {o.note}" for o in result.applied) or "nothing applied"
    if isinstance(result, ArchiveResult):
        done = {UnenrolAction.UNENROL: f"{result.students_unenrolled} students unenrolled",
                UnenrolAction.KEEP: "students kept (MOODLE_UNENROL_ACTION is keep)",
                UnenrolAction.SUSPEND: f"{result.students_withdrawn} students' enrolments suspended",
                UnenrolAction.REMOVE_ROLES: f"{result.students_withdrawn} students' roles removed (enrolments kept)",
                }.get(result.unenrol_action, f"{result.students_withdrawn} students taken away")
        return (f"Moodle course {result.course_id} archived: {done}, "
                f"{result.instructors_kept} instructors kept, course {'hidden' if result.hidden else 'still visible'}")
    if isinstance(result, DeleteResult):
        return result.note
    return str(result)


def failed_participants_table(progress: DeploymentProgress) -> Table:
    table = Table(title=f"Failed participants of event {escape(progress.event_id)}", title_justify="left")
    table.add_column("participant")
    table.add_column("role")
    table.add_column("error", overflow="fold")
    for p in progress.participants:
        if p.state == SubtaskState.FAILED:
            table.add_row(escape(p.id), p.role, escape(p.error or ""))
    return table


async def _start(ctx: Context, handle: WorkflowHandle[Any, Any], wait: bool, *, event_id: str,
                 is_deploy: bool = False) -> int:
    if not wait:
        ctx.out.print(escape(handle.id), highlight=False)
        hint = f"python -m starter progress --event-id {event_id}" if is_deploy else "the Temporal UI"
        ctx.err.print(f"Started; follow it with {hint} (or run the command with --wait).", highlight=False)
        return EXIT_OK
    client = await ctx.client()
    await _warn_if_no_worker(ctx, client)
    try:
        if is_deploy:
            result = await watch_deployment(client, handle, event_id, ctx.out)
        else:
            result = await _wait_plain(handle, ctx.out)
    except WorkflowFailureError as failure:
        ctx.err.print(f"[bold red]✗ {escape(handle.id)} failed:[/] {escape(failure_message(failure))}")
        if is_deploy:
            progress = await _progress_or_none(client, event_id)
            if progress is not None and progress.failed:
                ctx.err.print(failed_participants_table(progress))
        again = (f"python -m starter rerun --event-id {event_id} --wait" if is_deploy
                 else "the same command again")
        ctx.err.print(f"Next: {escape(next_step(failure_kind(failure), again))}", highlight=False)
        return EXIT_FAILED
    ctx.out.print(f"[bold green]✓[/] {escape(handle.id)} completed: {escape(describe_result(result))}")
    return EXIT_OK


# --- Commands ----------------------------------------------------------------------------------------


async def cmd_deploy(args: argparse.Namespace, ctx: Context) -> int:
    event = _valid(parse_event, read_json(args.event, "event"))
    client = await ctx.client()
    handle = await api.deploy_event(client, event, settings=ctx.settings(),
                                    allow_mass_removal=args.allow_mass_removal)
    return await _start(ctx, handle, args.wait, event_id=event.id, is_deploy=True)


async def cmd_plan(args: argparse.Namespace, ctx: Context) -> int:
    event = _valid(parse_event, read_json(args.event, "event"))
    client = await ctx.client()
    try:
        plan = await api.plan_event(client, event, settings=ctx.settings())
    except WorkflowFailureError as failure:
        raise CliError(f"The plan of event {event.id} failed: {failure_message(failure)}", EXIT_FAILED) from None
    if args.json:
        print(plan_json(plan))
    else:
        ctx.out.print(plan_table(plan))
    return EXIT_OK


async def _cmd_change(args: argparse.Namespace, ctx: Context) -> int:
    event = _valid(parse_event, read_json(args.event, "event"))
    participant = _valid(parse_participant, read_json(args.participant, "participant"))
    client = await ctx.client()
    start = api.add_participant if args.command == "add" else api.remove_participant
    handle = await start(client, event, participant, settings=ctx.settings())
    return await _start(ctx, handle, args.wait, event_id=event.id)


async def _cmd_event_end(args: argparse.Namespace, ctx: Context) -> int:
    data = read_json(args.event, "event")
    # Archive and delete need only the id and the course mapping (as in the API): validate just that.
    ref = _valid(api._ref, data)
    client = await ctx.client()
    start = api.archive_event if args.command == "archive" else api.delete_event
    handle = await start(client, data, settings=ctx.settings())
    return await _start(ctx, handle, args.wait, event_id=ref.event_id)


async def cmd_rerun(args: argparse.Namespace, ctx: Context) -> int:
    client = await ctx.client()
    try:
        handle = await api.rerun_deployment(client, args.event_id, settings=ctx.settings())
    except api.DeploymentNotFound as error:
        raise CliError(str(error), EXIT_FAILED) from None
    return await _start(ctx, handle, args.wait, event_id=args.event_id, is_deploy=True)


async def cmd_progress(args: argparse.Namespace, ctx: Context) -> int:
    client = await ctx.client()
    try:
        progress = await api.get_progress(client, args.event_id)
    except api.DeploymentNotFound as error:
        raise CliError(str(error), EXIT_FAILED) from None
    code = EXIT_FAILED if progress.ended_badly else EXIT_OK
    if args.json:
        print(json.dumps(dataclasses.asdict(progress), ensure_ascii=False, indent=2))
        return code
    show_progress(ctx.out, progress)
    return code


def pending_activities_table(progress: DeploymentProgress) -> Table:
    """The Moodle calls the server has scheduled and not seen finish, one row per activity type."""
    table = Table(title="Moodle calls pending on the server", title_justify="left")
    table.add_column("activity")
    table.add_column("calls", justify="right")
    table.add_column("highest attempt", justify="right")
    table.add_column("last failure", overflow="fold")
    by_type: dict[str, list[Any]] = {}
    for pending in progress.pending_activities:
        by_type.setdefault(pending.activity, []).append(pending)
    for activity, calls in by_type.items():
        worst = max(calls, key=lambda call: call.attempt)
        table.add_row(escape(activity), str(len(calls)), str(worst.attempt), escape(worst.last_failure or "-"))
    return table


def show_progress(out: Console, progress: DeploymentProgress) -> None:
    """``progress`` for people: the run, its participants, why it waits or failed, and what to do next."""
    colour = {"completed": "green", "running": "cyan"}.get(progress.state, "red")
    out.print(f"Deployment of event [bold]{escape(progress.event_id)}[/] ({escape(progress.workflow_id)}): "
              f"[{colour}]{escape(progress.state)}[/]")
    out.print(f"  stage:         {escape(progress.stage)}")
    out.print(f"  Moodle course: {progress.course_id if progress.course_id is not None else '-'}")
    out.print(f"  participants:  {progress.total} — [green]{progress.done} done[/], "
              f"[red]{progress.failed} failed[/], {progress.running} running, {progress.pending} pending")
    worker = "yes" if progress.worker_polling else "[bold red]no[/] (figures as recorded by the server)"
    out.print(f"  worker:        {worker}, task queue {escape(progress.task_queue)!r}", highlight=False)
    if progress.failure is not None:
        out.print(f"  [bold red]failure:[/]       [{escape(progress.failure.type)}] "
                  f"{escape(progress.failure.message)}", highlight=False)
    if progress.message:
        out.print(f"  [yellow]{escape(progress.message)}[/]")
    if progress.state == "running" and progress.pending_activities:
        out.print(pending_activities_table(progress))
    if progress.failed:
        out.print(failed_participants_table(progress))
    if progress.next_step:
        out.print(f"Next: {escape(progress.next_step)}", highlight=False)
    elif progress.failed:
        out.print(f"Fix the cause, then: python -m starter rerun --event-id {escape(progress.event_id)} --wait")


async def cmd_courses(args: argparse.Namespace, ctx: Context) -> int:
    settings = ctx.settings()
    if not settings.moodle_url or not settings.moodle_token.get_secret_value():
        raise CliError('MOODLE_URL and MOODLE_TOKEN must be set in this shell (or .env) to list Moodle courses '
                       '(e.g. MOODLE_URL="https://moodle.example.com"); `courses` asks Moodle directly, not '
                       'through the worker.', EXIT_FAILED)
    try:
        courses = await api.search_courses(args.search, settings=settings)
    except MoodleError as error:
        raise CliError(str(error), EXIT_FAILED) from None
    if args.json:
        print(json.dumps(courses, ensure_ascii=False, indent=2))
        return EXIT_OK
    title = f"Moodle courses matching {args.search!r}" if args.search.strip() else "Moodle courses"
    table = Table(title=escape(title), title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("shortname")
    table.add_column("fullname")
    for course in courses:
        table.add_row(str(course["id"]), escape(course["shortname"]), escape(course["fullname"]))
    ctx.out.print(table if courses else "No courses found.")
    return EXIT_OK


@dataclasses.dataclass
class Check:
    name: str
    status: CheckStatus
    detail: str
    fix: str = ""


async def run_checks(ctx: Context) -> list[Check]:
    """The doctor's checks, in order: settings, Temporal, worker, Moodle. They are this shell's settings: a
    worker elsewhere has its own, and doctor says so rather than guessing what the worker does."""
    checks: list[Check] = []
    try:
        settings = ctx.settings()
    except CliError as error:
        checks.append(Check("Settings", CheckStatus.FAIL, str(error),
                            "fix the variables named above in the environment or .env"))
        # The Temporal connection does not depend on the MOODLE_* settings: check it all the same.
        temporal_only = Context(ctx.out, ctx.err, uses_moodle=False, starts=False)
        temporal_only.err = Console(quiet=True)  # its note would repeat the FAIL above
        try:
            temporal_settings = temporal_only.settings()
        except CliError:
            checks.append(Check("Temporal", CheckStatus.SKIP, "needs valid TEMPORAL_* settings"))
        else:
            checks.extend(await _temporal_checks(temporal_only, temporal_settings))
        checks.append(Check("Moodle", CheckStatus.SKIP, "needs valid MOODLE_* settings"))
        return checks
    token = settings.moodle_token.get_secret_value()
    checks.append(Check("Settings", CheckStatus.OK, (
        f"this shell's: MOODLE_ENABLED={settings.moodle_enabled}, MOODLE_URL={settings.moodle_url or '(unset)'}, "
        f"MOODLE_TOKEN={'set' if token else '(unset)'}, MOODLE_USER_AUTH={settings.moodle_user_auth}, "
        f"MOODLE_USER_MATCH_FIELD={settings.moodle_user_match_field}, "
        f"MOODLE_DELETE_COURSE_ON_EVENT_DELETE={settings.moodle_delete_course_on_event_delete}, "
        f"MOODLE_UNENROL_ACTION={settings.moodle_unenrol_action}; "
        f"TEMPORAL_TASK_QUEUE={settings.temporal_task_queue}")))
    checks.extend(await _temporal_checks(ctx, settings))
    checks.append(await _moodle_check(settings))
    return checks


async def _temporal_checks(ctx: Context, settings: Settings) -> list[Check]:
    connection = resolve(settings)  # valid: the settings resolved it when they loaded
    try:
        client = await ctx.client()
        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace), timeout=DOCTOR_RPC_TIMEOUT)
    except CliError as error:
        return [Check("Temporal", CheckStatus.FAIL, str(error),
                      "start the server, or set how to reach it: TEMPORAL_ADDRESS, TEMPORAL_TLS*, TEMPORAL_API_KEY, "
                      "or a profile (TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE)")]
    except RPCError as error:
        return [Check("Temporal", CheckStatus.FAIL,
                      explain(error, address=connection.address, namespace=connection.namespace))]
    # Which way it connected (never the API key itself): address, TLS, credentials, profile and file.
    checks = [Check("Temporal", CheckStatus.OK, f"reachable: {connection.describe()} (namespace "
                                      f"{described.namespace_info.name!r} found)")]
    attribute = EVENT_ID_ATTRIBUTE.name
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace), timeout=DOCTOR_RPC_TIMEOUT)
        if attribute not in listed.custom_attributes:
            checks.append(Check("Search attr", CheckStatus.WARN, f"{attribute} is not registered yet",
                                f"the worker registers it at start-up ({START_WORKER})"))
        else:
            checks.append(Check("Search attr", CheckStatus.OK,
                                f"{attribute} registered (find an event's runs in the UI with {attribute}=\"ID\")"))
        pollers = await task_queue_pollers(client, settings.temporal_task_queue)
    except RPCError as error:
        checks.append(Check("Worker", CheckStatus.WARN, f"could not ask Temporal about workers: {error.message}"))
        return checks
    if pollers:
        checks.append(Check("Worker", CheckStatus.OK, f"task queue {settings.temporal_task_queue!r} polled in the "
                                                      f"last minutes by: {', '.join(pollers)}"))
    else:
        checks.append(Check("Worker", CheckStatus.WARN,
                            f"no worker is polling task queue {settings.temporal_task_queue!r}",
                            f"start one: {START_WORKER} (runs wait for it, nothing is lost)"))
    return checks


TOKEN_FIX = ("set a valid MOODLE_TOKEN here and on the worker, restart the worker, then re-run any deployment "
             "that failed: python -m starter rerun --event-id ID")


async def _moodle_check(settings: Settings) -> Check:
    if not settings.moodle_url or not settings.moodle_token.get_secret_value():
        return Check("Moodle", CheckStatus.SKIP,
                     "not checked: this shell sets no MOODLE_URL/MOODLE_TOKEN. The worker uses its own MOODLE_* "
                     "settings; whether workflows write to Moodle depends on the worker's MOODLE_ENABLED, not on "
                     "this shell's",
                     "to check Moodle, run doctor where the worker runs (same environment or .env)")
    async with client_from_settings(settings) as moodle:
        report = await check_connection(moodle, settings.moodle_unenrol_action)
    if report.error:
        token_problem = "invalidtoken" in report.error
        return Check("Moodle", CheckStatus.FAIL, report.summary(), TOKEN_FIX if token_problem else "")
    if report.missing_functions or report.missing_for_action:
        return Check("Moodle", CheckStatus.FAIL, report.summary(),
                     "add the functions to the token's service; the worker needs no restart, then re-run any "
                     "deployment that failed: python -m starter rerun --event-id ID")
    note = "" if settings.moodle_enabled else (" (this shell's MOODLE_ENABLED is false; the worker's own "
                                               "MOODLE_ENABLED decides whether workflows write to Moodle)")
    return Check("Moodle", CheckStatus.OK, report.summary() + note)


async def cmd_doctor(args: argparse.Namespace, ctx: Context) -> int:
    checks = await run_checks(ctx)
    styles = {CheckStatus.OK: "green", CheckStatus.WARN: "yellow", CheckStatus.FAIL: "bold red",
              CheckStatus.SKIP: "dim"}
    for check in checks:
        ctx.out.print(f"[{styles[check.status]}]{check.status:<4}[/] {check.name:<12} {escape(check.detail)}",
                      highlight=False)
        if check.fix:
            ctx.out.print(f"{'':<4} {'':<12} [dim]fix:[/] {escape(check.fix)}", highlight=False)
    failed = [c for c in checks if c.status == CheckStatus.FAIL]
    if failed:
        ctx.out.print(f"[bold red]{len(failed)} problem(s) found.[/]")
        return EXIT_FAILED
    ctx.out.print("[bold green]All checks passed.[/]")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Context], Awaitable[int]]] = {
    "deploy": cmd_deploy,
    "add": _cmd_change,
    "remove": _cmd_change,
    "archive": _cmd_event_end,
    "delete": _cmd_event_end,
    "progress": cmd_progress,
    "rerun": cmd_rerun,
    "courses": cmd_courses,
    "doctor": cmd_doctor,
    "plan": cmd_plan,
}


#: The commands that only read: Temporal's record of a run, Moodle's courses, the checks of `doctor`.
READ_ONLY = frozenset({"progress", "courses", "doctor"})

#: The commands that read this shell's MOODLE_* settings; the others only talk to Temporal.
USES_MOODLE = frozenset({"courses", "doctor"})


def _consoles() -> tuple[Console, Console]:
    # soft_wrap: long messages (errors naming a field, JSON) are never broken in the middle of a word.
    return Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)


async def run(argv: list[str] | None = None, *, settings: Settings | None = None, client: Client | None = None,
              out: Console | None = None, err: Console | None = None) -> int:
    """Run one command; the exit code is returned (tests inject `settings` and `client`)."""
    args = build_parser().parse_args(argv)
    default_out, default_err = _consoles()
    ctx = Context(out or default_out, err or default_err, settings, client,
                  uses_moodle=args.command in USES_MOODLE, starts=args.command not in READ_ONLY)
    try:
        try:
            return await COMMANDS[args.command](args, ctx)
        except RPCError as error:
            # Temporal failed in the middle of the command (the server went away, a missing namespace...).
            raise ctx.temporal_error(error) from None
    except CliError as error:
        ctx.err.print(Text(f"Error: {error}", style="red"))
        return error.code


def quiet_sdk_runtime() -> None:
    """The SDK's core logs each retried call as a WARN line with its Rust error (``tonic::transport``...);
    the CLI says what went wrong in words instead, so only the core's errors are let through."""
    logging = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=logging)), error_if_already_set=False)


def main(argv: list[str] | None = None) -> int:
    quiet_sdk_runtime()
    try:
        return asyncio.run(run(argv))
    except KeyboardInterrupt:
        print("\nInterrupted. A workflow already started keeps running in Temporal; "
              "follow it with: python -m starter progress --event-id ID", file=sys.stderr)
        return 130

