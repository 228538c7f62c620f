"""`get_progress` and ``progress`` when no worker runs, and for runs that ended badly: an answer within
seconds from what the server recorded, the failure, and what to do next (issues 11.4 and 12.2)."""

from __future__ import annotations

import json
import time

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.starter import cli
from openvle_moodle_sync.starter.progress import NOT_STARTED, _asked, _recorded
from openvle_moodle_sync.workflows import DeployEvent
from tests.conftest import add_moodle_user, eventually, make_event, make_settings, running_worker


async def status_of(handle: WorkflowHandle) -> WorkflowExecutionStatus | None:
    """The run's status; None while the event's life has not started it."""
    try:
        return (await handle.describe()).status
    except RPCError:
        return None


async def progress_cli(capsys: pytest.CaptureFixture[str], client: Client, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = await cli.run(["progress", *argv], client=client, settings=make_settings())
    out, err = capsys.readouterr()
    return code, out + err


async def test_no_worker_answers_within_seconds_from_the_record(client: Client, fake: FakeMoodle,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings()  # a task queue nobody polls yet
    queue = settings.temporal_task_queue
    event = make_event(fake, participants=5)
    handle = await starter.deploy_event(client, event, settings=settings)

    started = time.monotonic()
    progress = await starter.get_progress(client, event["id"])
    assert time.monotonic() - started < 10
    # No worker has taken the deploy up: the event's life holds it, not started.
    assert progress.worker_polling is False and progress.source == "life"
    assert (progress.state, progress.total, progress.done, progress.task_queue) == (NOT_STARTED, 0, 0, queue)
    assert f"No worker polls task queue {queue!r}" in (progress.message or "")
    assert "openvle-moodle-sync-worker" in (progress.next_step or "") and f"TEMPORAL_TASK_QUEUE={queue}" in (
        progress.next_step or "")

    code, out = await progress_cli(capsys, client, "--event-id", event["id"], "--json")
    assert code == 0 and json.loads(out)["worker_polling"] is False
    code, out = await progress_cli(capsys, client, "--event-id", event["id"])
    assert code == 0 and "worker:        no" in out and queue in out and "openvle-moodle-sync-worker" in out

    async with running_worker(client, settings, fake):
        result = await handle.result()
        progress = await starter.get_progress(client, event["id"])
    assert result.done == 5
    assert (progress.state, progress.done, progress.worker_polling, progress.source) == ("completed", 5, True, "worker")
    assert progress.failure is None and progress.next_step is None


async def test_a_terminated_run_says_so_and_exits_1(client: Client, fake: FakeMoodle,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    event = make_event(fake, participants=2)
    settings = make_settings()
    fake.faults.latency_ms = 300
    async with running_worker(client, settings, fake):
        handle = await starter.deploy_event(client, event, settings=settings)
        await eventually(lambda: status_of(handle), lambda status: status == WorkflowExecutionStatus.RUNNING)
        await handle.terminate(reason="operator stopped it")
        with pytest.raises(WorkflowFailureError):
            await handle.result()

    progress = await starter.get_progress(client, event["id"])
    assert progress.state == "terminated" and progress.failure is not None
    assert progress.failure.type == "Terminated" and "operator stopped it" in progress.failure.message
    assert f"rerun --event-id {event['id']}" in (progress.next_step or "")
    code, out = await progress_cli(capsys, client, "--event-id", event["id"])
    assert code == 1 and "terminated" in out and "operator stopped it" in out and "Next:" in out


async def test_a_configuration_failure_says_fix_the_worker_then_rerun(client: Client, fake: FakeMoodle,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(moodle_token="not-the-token-0000")
    event = make_event(fake, participants=2)
    async with running_worker(client, settings, fake):
        handle = await starter.deploy_event(client, event, settings=settings)
        with pytest.raises(Exception):  # noqa: B017 (the run's failure; its words are checked below)
            await handle.result()
    progress = await starter.get_progress(client, event["id"])  # no worker now: from the record
    assert progress.state == "failed" and progress.failure is not None
    assert progress.failure.type == "InvalidTokenError" and "invalidtoken" in progress.failure.message
    step = progress.next_step or ""
    assert "MOODLE_TOKEN on the worker" in step and "restart the worker" in step and "rerun" in step
    assert progress.worker_polling is False
    code, out = await progress_cli(capsys, client, "--event-id", event["id"])
    assert code == 1 and "[InvalidTokenError]" in out and "MOODLE_TOKEN on the worker" in " ".join(out.split())


async def test_the_record_agrees_with_the_worker(client: Client, fake: FakeMoodle) -> None:
    """What `progress` shows without a worker is what the worker itself would say, participant by participant:
    an account made, one found, an enrolment written, and a participant that failed."""
    settings = make_settings()
    event = make_event(fake, participants=4)
    existing = event["participants"][1]
    await add_moodle_user(fake, username=existing["username"], email=existing["email"], firstname="E",
                          lastname="X")
    event["participants"][3] |= {"username": "admin", "email": "not-the-admin@example.com"}  # fails alone
    async with running_worker(client, settings, fake):
        handle = await starter.deploy_event(client, event, settings=settings)
        with pytest.raises(Exception):  # noqa: B017 (DeploymentIncomplete: participant p-3)
            await handle.result()
        typed = client.get_workflow_handle_for(DeployEvent.run, handle.id)
        live = await _asked(client, typed, event["id"])
    recorded = await _recorded(client, typed, event["id"])
    assert live is not None

    def rows(progress: starter.DeploymentProgress) -> list[tuple[object, ...]]:
        return [(p.id, p.state, p.moodle_user_id, p.user_created, p.written_by_this_run, p.error is None)
                for p in progress.participants]

    assert rows(recorded) == rows(live)
    assert [p.user_created for p in live.participants] == [True, False, True, False]
    assert recorded.course_id == live.course_id is not None
