"""``doctor``: this shell's settings, the Temporal connection and its workers, and the Moodle connection,
each checked and shown as one line with its fix."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import timedelta

from rich.console import Console
from rich.markup import escape
from temporalio.service import RPCError

from openvle_moodle_sync import temporal_client
from openvle_moodle_sync.moodle import check_connection, client_from_settings
from openvle_moodle_sync.moodle.check import CheckStatus
from openvle_moodle_sync.names import CLI
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.temporal_client import search_attribute_registered, task_queue_pollers
from openvle_moodle_sync.temporal_config import resolve
from openvle_moodle_sync.workflows.ids import EVENT_ID_ATTRIBUTE

from ..temporal_errors import START_WORKER
from .context import EXIT_FAILED, EXIT_OK, CliError, Context

DOCTOR_RPC_TIMEOUT = timedelta(seconds=10)


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
            checks.extend(await temporal_checks(temporal_only, temporal_settings))
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
    checks.extend(await temporal_checks(ctx, settings))
    checks.append(await _moodle_check(settings))
    return checks


async def temporal_checks(ctx: Context, settings: Settings) -> list[Check]:
    """Temporal reachable (and its namespace there), the search attribute, and the workers polling now."""
    connection = resolve(settings)  # valid: the settings resolved it when they loaded
    try:
        client = await ctx.client()  # connecting checks that the namespace exists
    except CliError as error:
        return [Check("Temporal", CheckStatus.FAIL, str(error), error.next_step or "")]
    # Which way it connected (never the API key itself): address, TLS, credentials, profile and file.
    checks = [Check("Temporal", CheckStatus.OK,
                    f"reachable: {connection.describe()} (namespace {client.namespace!r} found)")]
    attribute = EVENT_ID_ATTRIBUTE.name
    queue = settings.temporal_task_queue
    try:
        if await search_attribute_registered(client, rpc_timeout=DOCTOR_RPC_TIMEOUT):
            checks.append(Check("Search attr", CheckStatus.OK,
                                f"{attribute} registered (find an event's runs in the UI with {attribute}=\"ID\")"))
        else:
            checks.append(Check("Search attr", CheckStatus.WARN, f"{attribute} is not registered yet",
                                f"the worker registers it at start-up ({START_WORKER})"))
        pollers = await task_queue_pollers(client, queue, rpc_timeout=DOCTOR_RPC_TIMEOUT)
    except RPCError as error:
        checks.append(Check("Worker", CheckStatus.WARN, f"could not ask Temporal about workers: {error.message}"))
        return checks
    window = f"{temporal_client.LIVE_POLLER_WINDOW.total_seconds():.0f} s"
    if pollers:
        checks.append(Check("Worker", CheckStatus.OK, f"task queue {queue!r} polled within the last {window} by: "
                                            f"{', '.join(pollers)} (only workers seen that recently are listed)"))
    else:
        checks.append(Check("Worker", CheckStatus.WARN,
                            f"no worker has polled task queue {queue!r} within the last {window} "
                            "(a worker that stopped is not listed)",
                            f"start one: {START_WORKER} (runs wait for it, nothing is lost)"))
    return checks


TOKEN_FIX = ("set a valid MOODLE_TOKEN here and on the worker, restart the worker, then re-run any deployment "
             f"that failed: {CLI} rerun --event-id ID")


async def _moodle_check(settings: Settings) -> Check:
    if not settings.moodle_url or not settings.moodle_token.get_secret_value():
        return Check("Moodle", CheckStatus.SKIP,
                     "not checked: this shell sets no MOODLE_URL/MOODLE_TOKEN. The worker uses "
                     "its own MOODLE_* settings; whether workflows write to Moodle depends on "
                     "the worker's MOODLE_ENABLED, not on this shell's",
                     "to check Moodle, run doctor where the worker runs (same environment or .env)")
    async with client_from_settings(settings) as moodle:
        report = await check_connection(moodle, settings.moodle_unenrol_action)
    if report.error:
        token_problem = "invalidtoken" in report.error
        return Check("Moodle", CheckStatus.FAIL, report.summary(), TOKEN_FIX if token_problem else "")
    if report.missing_functions or report.missing_for_action:
        return Check("Moodle", CheckStatus.FAIL, report.summary(),
                     "add the functions to the token's service; the worker needs no restart, then re-run any "
                     f"deployment that failed: {CLI} rerun --event-id ID")
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


