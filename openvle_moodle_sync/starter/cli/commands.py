"""The commands of the CLI: its arguments, what each command does, and `run`/`main`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shlex
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.text import Text
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError

from openvle_moodle_sync.activities.errors import is_configuration_error_type
from openvle_moodle_sync.failures import describe_failure
from openvle_moodle_sync.lifecycle import OperationKind, next_step
from openvle_moodle_sync.models import check_event_id, parse_event, parse_participant
from openvle_moodle_sync.moodle import MoodleError
from openvle_moodle_sync.names import CLI
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.temporal_client import task_queue_pollers
from openvle_moodle_sync.workflows.types import SubtaskState

from .. import api
from ..plan_view import plan_json, plan_table
from ..temporal_errors import START_WORKER
from .context import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Context,
    json_error,
    read_json,
    valid,
)
from .doctor import cmd_doctor
from .render import (
    courses_table,
    describe_result,
    failed_participants_table,
    failure_message,
    progress_or_none,
    show_progress,
    wait_plain,
    watch_deployment,
)


def event_id_arg(value: str) -> str:
    """``--event-id``, checked like the event's ``id`` before anything asks Temporal (argparse: exit 2)."""
    try:
        return check_event_id(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# --- Arguments ---------------------------------------------------------------------------------------


def build_parser(*, json_errors: bool = False) -> argparse.ArgumentParser:
    """The CLI's arguments. With ``json_errors`` a usage error is printed as ``{"error": …, "next_step": …}``
    on stdout (exit 2, as argparse), for the ``--json`` commands."""

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            if not json_errors:
                super().error(message)
            print(json_error(f"{self.prog}: {message}", f"see: {self.prog} --help"))
            sys.exit(EXIT_USAGE)

    parser = Parser(
        prog=CLI,
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
    p.add_argument("--reopen", action="store_true",
                   help="deploy an archived or deleted event: its life starts again (the course shown again, or "
                        "copied anew)")
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



async def _warn_if_no_worker(ctx: Context, client: Client) -> None:
    queue = ctx.settings().temporal_task_queue
    try:
        pollers = await task_queue_pollers(client, queue)
    except RPCError:
        return
    if not pollers:
        ctx.err.print(f"[yellow]Note:[/] no worker is polling task queue {queue!r} right now; the run waits "
                      f"until one does (start it with: {START_WORKER}).")


async def _start(ctx: Context, args: argparse.Namespace, handle: WorkflowHandle[Any, Any], *, event_id: str,
                 is_deploy: bool = False) -> int:
    if not args.wait:
        ctx.out.print(escape(handle.id), highlight=False)
        hint = f"{CLI} progress --event-id {event_id}" if is_deploy else "the Temporal UI"
        ctx.err.print(f"Started; follow it with {hint} (or run the command with --wait).", highlight=False)
        return EXIT_OK
    client = await ctx.client()
    await _warn_if_no_worker(ctx, client)
    try:
        if is_deploy:
            result = await watch_deployment(client, handle, event_id, ctx.out)
        else:
            result = await wait_plain(handle, ctx.out)
    except WorkflowFailureError as failure:
        ctx.err.print(f"[bold red]✗ {escape(handle.id)} failed:[/] {escape(failure_message(failure))}")
        failed_types: list[str | None] | None = None
        if is_deploy:
            progress = await progress_or_none(client, event_id)
            if progress is not None and progress.failed:
                ctx.err.print(failed_participants_table(progress))
                failed_types = [p.error_type for p in progress.participants if p.state == SubtaskState.FAILED]
        step = _next_step(args, describe_failure(failure).type, event_id, participant_types=failed_types)
        ctx.err.print(f"Next: {escape(step)}", highlight=False)
        return EXIT_FAILED
    ctx.out.print(f"[bold green]✓[/] {escape(handle.id)} completed: {escape(describe_result(result))}")
    return EXIT_OK


# --- Commands ----------------------------------------------------------------------------------------


async def cmd_deploy(args: argparse.Namespace, ctx: Context) -> int:
    event = valid(parse_event, read_json(args.event, "event"))
    client = await ctx.client()
    handle = await api.deploy_event(client, event, settings=ctx.settings(),
                                    allow_mass_removal=args.allow_mass_removal, reopen=args.reopen)
    return await _start(ctx, args, handle, event_id=event.id, is_deploy=True)


def _next_step(args: argparse.Namespace, error_type: str, event_id: str, *,
               participant_types: list[str | None] | None = None) -> str:
    """`lifecycle.next_step` for the command in ``args``: a deployment is repeated by ``rerun``, any other
    command (a plan too) as the operator typed it; the event's file is the one given."""
    kind = OperationKind.DEPLOY if args.command in ("deploy", "rerun", "plan") else OperationKind(args.command)
    deployment = args.command in ("deploy", "rerun")
    return next_step(error_type, kind, event_id, configuration_error=is_configuration_error_type(error_type),
                     participant_types=participant_types, event_file=getattr(args, "event", None) or "EVENT.json",
                     command=None if deployment else shlex.join([CLI, *args.argv]))


async def cmd_plan(args: argparse.Namespace, ctx: Context) -> int:
    event = valid(parse_event, read_json(args.event, "event"))
    client = await ctx.client()
    try:
        plan = await api.plan_event(client, event, settings=ctx.settings())
    except WorkflowFailureError as failure:
        step = _next_step(args, describe_failure(failure).type, event.id)
        raise CliError(f"The plan of event {event.id} failed: {failure_message(failure)}", EXIT_FAILED,
                       next_step=step) from None
    if args.json:
        print(plan_json(plan))
    else:
        ctx.out.print(plan_table(plan))
    if not plan.problems:
        return EXIT_OK
    # What a deploy's first steps check would stop it: say so, with the fix, and exit 1.
    for problem in plan.problems:
        ctx.err.print(f"[bold red]✗ a deploy would fail:[/] [{problem.type}] {escape(problem.message)}")
    ctx.err.print(f"Next: {escape(_next_step(args, plan.problems[0].type, event.id))}", highlight=False)
    return EXIT_FAILED


async def _cmd_change(args: argparse.Namespace, ctx: Context) -> int:
    event = valid(parse_event, read_json(args.event, "event"))
    participant = valid(parse_participant, read_json(args.participant, "participant"))
    client = await ctx.client()
    start = api.add_participant if args.command == "add" else api.remove_participant
    handle = await start(client, event, participant, settings=ctx.settings())
    return await _start(ctx, args, handle, event_id=event.id)


async def _cmd_event_end(args: argparse.Namespace, ctx: Context) -> int:
    data = read_json(args.event, "event")
    # Archive and delete need only the id and the course mapping (as in the API): validate just that.
    event_id, _ = valid(api.event_ref, data)
    client = await ctx.client()
    start = api.archive_event if args.command == "archive" else api.delete_event
    handle = await start(client, data, settings=ctx.settings())
    return await _start(ctx, args, handle, event_id=event_id)


async def cmd_rerun(args: argparse.Namespace, ctx: Context) -> int:
    client = await ctx.client()
    try:
        handle = await api.rerun_deployment(client, args.event_id, settings=ctx.settings())
    except api.DeploymentNotFound as error:
        raise CliError(str(error), EXIT_FAILED, next_step=f"{CLI} deploy --event EVENT.json") from None
    return await _start(ctx, args, handle, event_id=args.event_id, is_deploy=True)


async def cmd_progress(args: argparse.Namespace, ctx: Context) -> int:
    client = await ctx.client()
    try:
        progress = await api.get_progress(client, args.event_id)
    except api.DeploymentNotFound as error:
        raise CliError(str(error), EXIT_FAILED, next_step=f"{CLI} deploy --event EVENT.json") from None
    code = EXIT_FAILED if progress.ended_badly else EXIT_OK
    if args.json:
        print(json.dumps(dataclasses.asdict(progress), ensure_ascii=False, indent=2))
        return code
    show_progress(ctx.out, progress)
    return code


async def cmd_courses(args: argparse.Namespace, ctx: Context) -> int:
    settings = ctx.settings()
    if not settings.moodle_url or not settings.moodle_token.get_secret_value():
        raise CliError('MOODLE_URL and MOODLE_TOKEN must be set in this shell (or .env) to list Moodle courses '
                       '(e.g. MOODLE_URL="https://moodle.example.com"); `courses` asks Moodle directly, not '
                       'through the worker.', EXIT_FAILED, next_step="set MOODLE_URL and MOODLE_TOKEN")
    try:
        courses = await api.search_courses(args.search, settings=settings)
    except MoodleError as error:
        raise CliError(str(error), EXIT_FAILED, next_step=error.fix) from None
    if args.json:
        print(json.dumps(courses, ensure_ascii=False, indent=2))
        return EXIT_OK
    ctx.out.print(courses_table(courses, args.search))
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
    """Run one command; the exit code is returned (tests inject `settings` and `client`). The errors of a
    ``--json`` command are JSON too (`CliError.as_json`), with the same exit codes."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(json_errors="--json" in argv).parse_args(argv)
    args.argv = argv
    default_out, default_err = _consoles()
    ctx = Context(out or default_out, err or default_err, settings, client,
                  uses_moodle=args.command in USES_MOODLE, starts=args.command not in READ_ONLY)
    try:
        try:
            return await COMMANDS[args.command](args, ctx)
        except RPCError as error:
            # Temporal failed in the middle of the command (the server went away, a missing namespace...).
            raise ctx.temporal_error(error) from None
        except (api.EventStateError, api.EventBusy) as error:  # refused before anything was written
            raise CliError(str(error), EXIT_FAILED, next_step=error.next_step) from None
    except CliError as error:
        if getattr(args, "json", False):
            print(error.as_json())
        else:
            ctx.err.print(Text(f"Error: {error}", style="red"))
            if error.next_step and error.next_step not in str(error):
                ctx.err.print(Text(f"Next: {error.next_step}"))
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
              f"follow it with: {CLI} progress --event-id ID", file=sys.stderr)
        return 130

