"""How the CLI shows things to people: the live progress bar of a deployment, a finished run's result in
words, a failure, and the tables of `progress` and `courses`."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError

from openvle_moodle_sync.failures import describe_failure
from openvle_moodle_sync.lifecycle import OperationKind, again
from openvle_moodle_sync.settings import UnenrolAction
from openvle_moodle_sync.workflows.types import (
    ArchiveResult,
    ChangeResult,
    DeleteResult,
    DeployResult,
    SubtaskState,
)

from .. import api
from ..progress import RUNNING, DeploymentProgress

POLL_SECONDS = 0.5


# --- Following a run ---------------------------------------------------------------------------------


class _DeployBar(Progress):
    """A progress bar with a line below it for why the run is waiting (Moodle calls being retried)."""

    message: str = ""

    def get_renderables(self) -> Any:
        yield self.make_tasks_table(self.tasks)
        if self.message:
            yield Text(f"  {self.message}", style="yellow")


async def progress_or_none(client: Client, event_id: str) -> DeploymentProgress | None:
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
                progress = await progress_or_none(client, event_id)
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


async def wait_plain(handle: WorkflowHandle[Any, Any], console: Console) -> Any:
    with console.status(f"Waiting for {escape(handle.id)} …"):
        return await handle.result()


def failure_message(failure: BaseException) -> str:
    """``[type] message`` of a run's failure: its root cause, past the activity or child that carried it."""
    return str(describe_failure(failure))


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
    """``progress`` for people: the event's life, its latest deployment and that one's participants, why it
    waits or failed, and what to do next."""
    since = f" since {progress.event_state_since[:19].replace('T', ' ')} UTC" if progress.event_state_since else ""
    out.print(f"Event [bold]{escape(progress.event_id)}[/]: {escape(progress.event_state.replace('_', ' '))}"
              f"{escape(since)}", highlight=False)
    if progress.operation is not None or progress.queued or progress.recent:
        out.print(operations_table(progress))
    colour = {"completed": "green", RUNNING: "cyan"}.get(progress.state, "red")
    out.print(f"Deployment of event [bold]{escape(progress.event_id)}[/] ({escape(progress.workflow_id)}): "
              f"[{colour}]{escape(progress.state)}[/]")
    out.print(f"  stage:         {escape(progress.stage)}")
    out.print(f"  Moodle course: {progress.course_id if progress.course_id is not None else '-'}")
    out.print(f"  participants:  {progress.total} — [green]{progress.done} done[/], "
              f"[red]{progress.failed} failed[/], {progress.running} running, {progress.pending} pending"
              + (f", {progress.stopped} not done (run stopped)" if progress.stopped else ""))
    worker = "yes" if progress.worker_polling else "[bold red]no[/] (figures as recorded by the server)"
    out.print(f"  worker:        {worker}, task queue {escape(progress.task_queue)!r}", highlight=False)
    if progress.failure is not None:
        out.print(f"  [bold red]failure:[/]       [{escape(progress.failure.type)}] "
                  f"{escape(progress.failure.message)}", highlight=False)
    if progress.message:
        out.print(f"  [yellow]{escape(progress.message)}[/]")
    if progress.state == RUNNING and progress.pending_activities:
        out.print(pending_activities_table(progress))
    if progress.failed:
        out.print(failed_participants_table(progress))
    if progress.next_step:
        out.print(f"Next: {escape(progress.next_step)}", highlight=False)
    elif progress.failed:
        out.print(f"Fix the cause, then: {escape(again(OperationKind.DEPLOY, progress.event_id))}", highlight=False)


def operations_table(progress: DeploymentProgress) -> Table:
    """The event's operations: the last ones that ended (oldest first), the one in flight, those queued."""
    table = Table(title=f"Operations on event {escape(progress.event_id)}", title_justify="left")
    table.add_column("operation")
    table.add_column("state")
    table.add_column("asked / ended")
    table.add_column("outcome, or why not", overflow="fold")
    rows = [*progress.recent, *([progress.operation] if progress.operation else []), *progress.queued]
    for op in rows:
        when = (op.ended_at or op.asked_at)[:19].replace("T", " ")
        if op.failure:
            why = f"[{op.failure_type}] {op.failure}" if op.failure_type else op.failure
            result = why + (f" Next: {op.next_step}" if op.next_step else "")
        else:
            result = op.outcome or (f"as {op.joined}" if op.joined else "")
        colour = {"completed": "green", "joined": "green", "superseded": "dim", "running": "cyan",
                  "queued": "cyan"}.get(op.state, "red")
        table.add_row(escape(op.what or str(op.kind)), f"[{colour}]{escape(str(op.state))}[/]", when, escape(result))
    if progress.queued_total > len(progress.queued):
        table.add_row(f"… {progress.queued_total - len(progress.queued)} more queued", "", "", "")
    return table


def courses_table(courses: list[dict[str, Any]], search: str) -> Table | str:
    """`courses`: one row per Moodle course, or a sentence when none matched."""
    if not courses:
        return "No courses found."
    title = f"Moodle courses matching {search!r}" if search.strip() else "Moodle courses"
    table = Table(title=escape(title), title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("shortname")
    table.add_column("fullname")
    for course in courses:
        table.add_row(str(course["id"]), escape(course["shortname"]), escape(course["fullname"]))
    return table
