"""What the CLI answers: a failure's root cause, advice that leads somewhere, the installed names, live
pollers only, an address without a port and a missing namespace said in words, and JSON errors for the
``--json`` commands (same exit codes)."""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, RetryState
from temporalio.testing import WorkflowEnvironment

from fake_moodle import FakeMoodle
from openvle_moodle_sync import names, temporal_client
from openvle_moodle_sync.activities.errors import CONFIGURATION_ERRORS, is_configuration_error_type
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.failures import describe_failure, root_cause
from openvle_moodle_sync.lifecycle import EVENT_FAULTS, OperationKind, again
from openvle_moodle_sync.lifecycle import next_step as lifecycle_next_step
from openvle_moodle_sync.moodle.errors import MoodleConnectionError, MoodleDatabaseError
from openvle_moodle_sync.settings import ConfigError, load_settings
from openvle_moodle_sync.starter import cli
from openvle_moodle_sync.starter.cli import doctor
from openvle_moodle_sync.starter.cli.context import CONNECTION_FIX, Context
from openvle_moodle_sync.temporal_client import NamespaceNotFoundError, connect, live_pollers
from tests.conftest import EXTENDED_TOKEN, TOKEN, make_event, make_settings, running_worker
from tests.proc import ROOT, free_port
from tests.test_cli import cli_env, run_cli, target, write

# --- One helper for a failure's type and message -------------------------------------------------------


def activity_error(cause: BaseException) -> ActivityError:
    error = ActivityError("Activity task failed", scheduled_event_id=5, started_event_id=6, identity="w",
                          activity_type="withdraw_user", activity_id="1", retry_state=RetryState.NON_RETRYABLE_FAILURE)
    error.__cause__ = cause
    return error


def child_error(cause: BaseException) -> ChildWorkflowError:
    error = ChildWorkflowError("Child Workflow execution failed", namespace="default", workflow_id="c", run_id="r",
                               workflow_type="DeployBatch", initiated_event_id=1, started_event_id=2,
                               retry_state=RetryState.NON_RETRYABLE_FAILURE)
    error.__cause__ = cause
    return error


def test_the_root_cause_is_found_past_every_wrapper() -> None:
    cause = ApplicationError("the token's service lacks core_role_unassign_roles", type=ErrorType.MISSING_FUNCTIONS)
    for wrapped in (cause, activity_error(cause), child_error(activity_error(cause)),
                    WorkflowFailureError(cause=activity_error(cause)),
                    WorkflowFailureError(cause=child_error(child_error(activity_error(cause))))):
        assert root_cause(wrapped) is cause
        info = describe_failure(wrapped)
        assert (info.type, info.message) == (ErrorType.MISSING_FUNCTIONS, cause.message)
        assert str(info) == f"[MissingFunctionsError] {cause.message}"
    # An activity that timed out: the SDK's class name; a wrapper with no cause is itself the cause.
    lone = activity_error(ValueError("boom"))
    lone.__cause__ = None
    assert describe_failure(lone).type == "ActivityError"
    assert describe_failure(ApplicationError("untyped")).type == "ApplicationError"
    assert describe_failure(KeyError("k")).type == "KeyError"


async def test_remove_wait_names_the_missing_function(client: Client, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 24 point 4: the guide's 14-function token under remove_roles. The run's failure reaches the
    CLI as ActivityError ("Activity task failed"); the CLI shows the missing function and what to do."""
    fake = FakeMoodle(token=TOKEN, extended_token=EXTENDED_TOKEN)
    settings = make_settings(moodle_unenrol_action="remove_roles", moodle_token=TOKEN)
    event = make_event(fake, participants=3)
    files = ["--event", write(tmp_path, "e.json", event),
             "--participant", write(tmp_path, "p.json", event["participants"][1])]
    async with running_worker(client, settings, fake):
        assert await cli.run(["deploy", "--event", files[1], "--wait"], client=client, settings=settings) == 0
        capsys.readouterr()
        code = await cli.run(["remove", *files, "--wait"], client=client, settings=settings)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1
    assert "[MissingFunctionsError]" in err and "core_role_unassign_roles" in err, err
    assert "ActivityError" not in err and "Activity task failed" not in err
    (step,) = err.split("Next: ")[1:]
    assert "token's service" in step and f"openvle-moodle-sync remove {' '.join(files)} --wait" in step


# --- Advice that leads somewhere ---------------------------------------------------------------------


def next_step(kind: str | None, **options: Any) -> str:
    """The next step after a deployment of event 42 failed with ``kind``."""
    return lifecycle_next_step(kind, OperationKind.DEPLOY, "42",
                               configuration_error=is_configuration_error_type(kind), **options)


RERUN = again(OperationKind.DEPLOY, "42")


def test_a_fault_of_the_event_says_fix_it_and_deploy_again() -> None:
    for kind in [*EVENT_FAULTS, ErrorType.MASS_REMOVAL_BLOCKED]:
        step = next_step(kind, event_file="ev.json")
        assert "openvle-moodle-sync deploy --event ev.json" in step, (kind, step)
        assert "rerun" not in step, (kind, step)  # a re-run uses the same event: it would fail the same way
    assert "--allow-mass-removal" in next_step(ErrorType.MASS_REMOVAL_BLOCKED)
    assert "plan --event" in next_step(ErrorType.MASS_REMOVAL_BLOCKED)
    assert "slug" in next_step(ErrorType.SLUG_TAKEN)
    assert "courses" in next_step(ErrorType.TEMPLATE_NOT_FOUND)


def test_a_fault_of_the_environment_says_fix_it_and_rerun() -> None:
    kinds = [*(c.__name__ for c in CONFIGURATION_ERRORS), ErrorType.MISSING_FUNCTIONS,
             ErrorType.MOODLE_USER_MISSING, ErrorType.ROSTER_REFUSED, MoodleConnectionError.__name__,
             MoodleDatabaseError.__name__, "TimeoutError", "SomethingNew", None]
    for kind in kinds:
        step = next_step(kind)
        assert RERUN in step, (kind, step)
        assert "deploy" not in step, (kind, step)
    token = next_step("InvalidTokenError")
    assert "MOODLE_TOKEN on the worker" in token and "restart the worker" in token
    # Another operation is given again as it was typed.
    typed = "openvle-moodle-sync archive --event e.json --wait"
    step = lifecycle_next_step("InvalidTokenError", OperationKind.ARCHIVE, "42", configuration_error=True,
                               command=typed)
    assert step.endswith(typed)


def test_every_error_type_has_a_way_out() -> None:
    for kind in ErrorType:
        step = next_step(kind)
        assert ("deploy --event" in step) or (RERUN in step), (kind, step)


def test_an_incomplete_deployment_follows_its_participants() -> None:
    kind = ErrorType.DEPLOYMENT_INCOMPLETE
    only_outage = next_step(kind, participant_types=["MoodleDatabaseError"])
    assert RERUN in only_outage and "deploy --event" not in only_outage
    mixed = next_step(kind, participant_types=["MoodleDatabaseError", ErrorType.USER_CONFLICT])
    assert "openvle-moodle-sync deploy --event EVENT.json" in mixed and "rerun" not in mixed
    unknown = next_step(kind)  # the participants' errors not at hand: both ways, each with its case
    assert RERUN in unknown and "deploy --event" in unknown


# --- Installed names ---------------------------------------------------------------------------------


def test_the_names_are_the_installed_scripts() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert {names.CLI, names.WORKER, names.CODEC_SERVER} == set(scripts)
    assert scripts[names.CLI] == "openvle_moodle_sync.starter.__main__:cli"
    assert cli.build_parser().prog == names.CLI
    assert cli.build_parser().format_usage().startswith(f"usage: {names.CLI} ")


#: The repository's aliases, said where they are explained.
ALIAS_FILES = {"openvle_moodle_sync/names.py", "openvle_moodle_sync/worker.py", "starter/__init__.py",
               "starter/__main__.py", "worker.py", "openvle_moodle_sync/starter/__main__.py"}

#: Files of other parts of the code that still name the aliases in their words (remove each when fixed).
NOT_YET = {"openvle_moodle_sync/activities/brake.py", "openvle_moodle_sync/activities/plan_types.py"}


def alias_mentions() -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    paths = [ROOT / "worker.py", *(p for folder in ("openvle_moodle_sync", "fake_moodle", "demo", "starter")
                                   for p in sorted((ROOT / folder).rglob("*.py")))]
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"python -m starter|python worker\.py", line):
                found.setdefault(path.relative_to(ROOT).as_posix(), []).append(number)
    return found


def test_hints_name_the_installed_commands() -> None:
    mentions = alias_mentions()
    unexpected = {path: lines for path, lines in mentions.items() if path not in ALIAS_FILES | NOT_YET}
    assert not unexpected, f"say {names.CLI} / {names.WORKER}: {unexpected}"


async def test_help_says_the_installed_name() -> None:
    code, out = await run_cli("--help", env=cli_env())
    assert code == 0 and out.startswith("usage: openvle-moodle-sync "), out


# --- Live pollers ---------------------------------------------------------------------------------------


def poller(identity: str, seconds_ago: float, now: datetime) -> PollerInfo:
    seen = Timestamp()
    seen.FromDatetime(now - timedelta(seconds=seconds_ago))
    return PollerInfo(identity=identity, last_access_time=seen)


def test_only_pollers_seen_within_a_minute_are_live() -> None:
    now = datetime.now(UTC)
    listed = [poller("idle-but-alive", 55, now), poller("just-polled", 0.5, now), poller("exited", 180, now)]
    assert timedelta(minutes=1) == temporal_client.LIVE_POLLER_WINDOW
    assert live_pollers(listed, now=now) == ["idle-but-alive", "just-polled"]
    assert live_pollers([PollerInfo(identity="never")], now=now) == []


async def test_doctor_lists_a_worker_that_stopped_no_more(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the window shortened to 5 s: a running worker is listed; once it stopped, the server still
    lists it, doctor does not."""
    monkeypatch.setattr(temporal_client, "LIVE_POLLER_WINDOW", timedelta(seconds=5))
    settings = make_settings()
    queue = settings.temporal_task_queue
    ctx = Context(Console(quiet=True), Console(quiet=True), settings, client)
    async with running_worker(client, settings, FakeMoodle(token=TOKEN)) as worker:
        await asyncio.sleep(0.5)
        (check,) = [c for c in await doctor.temporal_checks(ctx, settings) if c.name == "Worker"]
        assert check.status == "OK" and worker.client.identity in check.detail, check
        assert "within the last 5 s" in check.detail
    await asyncio.sleep(6)
    described = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
    assert [p.identity for p in described.pollers] == [worker.client.identity]  # the server still lists it
    (check,) = [c for c in await doctor.temporal_checks(ctx, settings) if c.name == "Worker"]
    assert check.status == "WARN" and "no worker has polled" in check.detail and "within the last 5 s" in check.detail
    assert worker.client.identity not in check.detail


# --- Connecting: an address without a port, a missing namespace ----------------------------------------


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:", "temporal.example:port"])
def test_an_address_without_a_port_is_refused_in_words(address: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, temporal_address=address)
    assert f"TEMPORAL_ADDRESS: {address!r} needs host:port" in str(raised.value)
    assert ":7233" in str(raised.value)


def test_a_profile_address_without_a_port_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text('[profile.default]\naddress = "temporal.example"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, temporal_config_file=str(config))
    message = str(raised.value)
    assert "'temporal.example' needs host:port" in message and str(config) in message


async def test_the_cli_refuses_an_address_without_a_port(tmp_path: Path) -> None:
    code, out = await run_cli("progress", "--event-id", "42", env=cli_env(TEMPORAL_ADDRESS="127.0.0.1",
                                                                          XDG_CONFIG_HOME=str(tmp_path)))
    assert code == 1 and "TEMPORAL_ADDRESS: '127.0.0.1' needs host:port" in out, out
    assert "Connection refused" not in out and "Traceback" not in out


async def test_connect_to_a_missing_namespace_says_so_at_once(temporal_env: WorkflowEnvironment) -> None:
    settings = make_settings(temporal_address=target(temporal_env), temporal_namespace="no-such-namespace")
    with pytest.raises(NamespaceNotFoundError) as raised:
        await connect(settings)
    message = str(raised.value)
    assert "has no namespace 'no-such-namespace'" in message and "TEMPORAL_NAMESPACE" in message
    assert isinstance(raised.value, ConnectionError)  # callers that catch ConnectionError still do
    assert (await connect(make_settings(temporal_address=target(temporal_env)))).namespace == "default"


# --- JSON errors ----------------------------------------------------------------------------------------


def json_answer(out: str) -> dict[str, Any]:
    answer = json.loads(out)
    assert set(answer) == {"error", "next_step"}, answer
    return answer


async def test_json_errors_in_process(client: Client, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    settings = make_settings()
    capsys.readouterr()
    assert await cli.run(["progress", "--event-id", "never-deployed", "--json"], client=client,
                         settings=settings) == 1
    answer = json_answer(capsys.readouterr().out)
    assert "never-deployed has no deployment" in answer["error"]
    assert answer["next_step"] == "openvle-moodle-sync deploy --event EVENT.json"

    bad = write(tmp_path, "bad.json", {"id": "x", "name": "n", "slug": "s", "moodle_course_id": 2,
                                       "participants": [{"id": "p", "role": "guest"}]})
    assert await cli.run(["plan", "--event", bad, "--json"], client=client, settings=settings) == 2
    answer = json_answer(capsys.readouterr().out)
    assert "participant" in answer["error"] and answer["next_step"]

    with pytest.raises(SystemExit) as usage:
        await cli.run(["progress", "--json"], client=client, settings=settings)
    assert usage.value.code == 2
    answer = json_answer(capsys.readouterr().out)
    assert "--event-id" in answer["error"] and "openvle-moodle-sync" in answer["next_step"]

    # Without --json the same error stays in words, on stderr.
    assert await cli.run(["progress", "--event-id", "never-deployed"], client=client, settings=settings) == 1
    out, err = capsys.readouterr()
    assert out == "" and "Error: event never-deployed has no deployment" in err


async def test_json_errors_of_the_environment(tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"
    cases = [
        (cli_env(TEMPORAL_ADDRESS=closed, XDG_CONFIG_HOME=str(tmp_path)), ["Failed to connect", closed], 1),
        (cli_env(TEMPORAL_TLS="maybe", XDG_CONFIG_HOME=str(tmp_path)), ["TEMPORAL_TLS"], 1),
    ]
    for env, expected, exit_code in cases:
        code, out = await run_cli("progress", "--event-id", "42", "--json", env=env)
        answer = json_answer(out)
        assert code == exit_code, out
        assert all(text in answer["error"] for text in expected), answer
        assert answer["next_step"]
    code, out = await run_cli("progress", "--event-id", "42", "--json", env=cases[0][0])
    assert json_answer(out)["next_step"] == CONNECTION_FIX
    code, out = await run_cli("courses", "--json", env=cli_env(XDG_CONFIG_HOME=str(tmp_path)))
    assert code == 1 and "MOODLE_URL" in json_answer(out)["error"]


# --- progress shows the event's life ---------------------------------------------------------------------


async def test_progress_shows_the_events_life(client: Client, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeMoodle(token=TOKEN)
    settings = make_settings()
    event = make_event(fake, participants=2)
    path = write(tmp_path, "e.json", event)
    async with running_worker(client, settings, fake):
        assert await cli.run(["deploy", "--event", path, "--wait"], client=client, settings=settings) == 0
        assert await cli.run(["archive", "--event", path, "--wait"], client=client, settings=settings) == 0
        capsys.readouterr()
        assert await cli.run(["progress", "--event-id", event["id"]], client=client, settings=settings) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"Event {event['id']}: archived since " in out, out
    assert f"Operations on event {event['id']}" in out
    table = out.split(f"Operations on event {event['id']}")[1]
    assert table.index("deploy") < table.index("archive") and table.count("completed") >= 2, table
