"""Crashes of real processes in the middle of a deployment of a few hundred participants: the worker is
SIGKILLed and started again; the Temporal dev server is killed and restarted on its database file. Each
time the deployment completes, and Moodle (the simulator, over HTTP) ends exactly as without the crash."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from openvle_moodle_sync import starter
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.starter import DeploymentProgress
from openvle_moodle_sync.starter.cli import run as cli_run
from openvle_moodle_sync.starter.progress import NOT_STARTED
from openvle_moodle_sync.temporal_client import data_converter
from openvle_moodle_sync.workflows import DeployEvent
from tests.conftest import make_settings
from tests.proc import Processes, assert_deployed, people, processes_in, start_worker, worker_env

pytestmark = pytest.mark.slow

TOKEN = "crash-token-7c1e0b9d4a"
PARTICIPANTS = 300
INSTRUCTORS = 10


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    with processes_in(tmp_path) as procs:
        yield procs


def big_event(template_id: int, prefix: str) -> dict[str, Any]:
    event_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return {"id": event_id, "name": f"Crash test {event_id}", "slug": f"ws-{event_id}",
            "moodle_course_id": template_id,
            "participants": people(event_id, PARTICIPANTS, instructors=INSTRUCTORS)}


async def wait_until_partly_done(client: Client, event_id: str, *, at_least: int, timeout: float = 60
                                 ) -> DeploymentProgress:
    """Poll progress until ``at_least`` participants are done; fails if the run finished first."""
    deadline = time.monotonic() + timeout
    progress: DeploymentProgress | None = None
    while time.monotonic() < deadline:
        try:
            progress = await starter.get_progress(client, event_id)
        except starter.DeploymentNotFound:
            progress = None
        if progress is not None and progress.state != NOT_STARTED:  # the life has not started it yet
            assert progress.state == "running", f"finished before the crash: {progress.state} {progress.done}"
            if progress.done >= at_least:
                assert progress.done < progress.total
                return progress
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} participants done after {timeout}s: {progress}")


async def connect(address: str, timeout: float = 30) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(address, data_converter=data_converter(make_settings()))
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_worker_killed_mid_deployment_completes_after_restart(
        processes: Processes, temporal_env: WorkflowEnvironment, capsys: pytest.CaptureFixture[str]) -> None:
    client = temporal_env.client
    moodle = processes.fake_moodle(TOKEN, latency_ms=20)
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    worker = processes.worker(worker_env(moodle_url=moodle.url, token=TOKEN, task_queue=queue,
                                         temporal_address=client.service_client.config.target_host))
    event = big_event(moodle.state()["template_course_id"], "killw")
    settings: Settings = make_settings(temporal_task_queue=queue)

    handle = await starter.deploy_event(client, event, settings=settings)
    before = await wait_until_partly_done(client, event["id"], at_least=40)
    worker.kill()
    assert not worker.alive()
    applied_at_kill = len(moodle.state()["enrolments"])
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    # No worker now (the killed one may still be listed as a poller): progress answers from the server's
    # record within 10 s, says so, and shows what was done before the kill.
    started = time.monotonic()
    recorded = await starter.get_progress(client, event["id"])
    assert time.monotonic() - started < 10
    assert recorded.worker_polling is False and recorded.state == "running"
    assert recorded.total == PARTICIPANTS and before.done <= recorded.done < PARTICIPANTS
    assert queue in (recorded.message or "") and "openvle-moodle-sync-worker" in (recorded.next_step or "")
    out_file = io.StringIO()
    started = time.monotonic()
    code = await cli_run(["progress", "--event-id", event["id"], "--json"], client=client, settings=settings,
                         out=Console(file=out_file), err=Console(file=out_file))
    assert time.monotonic() - started < 10 and code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["worker_polling"] is False and shown["task_queue"] == queue and "Traceback" not in out_file.getvalue()

    start_worker(worker)
    result = await asyncio.wait_for(handle.result(), 120)

    assert (result.total, result.done, result.failed) == (PARTICIPANTS, PARTICIPANTS, 0)
    state = moodle.state()
    course_id = assert_deployed(state, event)
    assert result.course_id == course_id
    assert sum(1 for m in state["messages"] if m["kind"] == "newuser") == PARTICIPANTS
    # Moodle welcomes each instructor after the first, once; students get none at deploy.
    assert len([m for m in state["messages"] if m["kind"] == "welcome"]) == INSTRUCTORS - 1
    assert 0 < before.done < PARTICIPANTS and applied_at_kill < PARTICIPANTS  # the kill hit a deployment under way
    assert "=== start 2" in worker.output()


async def test_temporal_server_restarted_mid_deployment(processes: Processes, tmp_path: Path) -> None:
    moodle = processes.fake_moodle(TOKEN, latency_ms=20)
    server = processes.temporal(tmp_path / "t.db")
    client = await connect(server.address)
    queue = f"restart-{uuid.uuid4().hex[:8]}"
    worker = processes.worker(worker_env(moodle_url=moodle.url, token=TOKEN, task_queue=queue,
                                         temporal_address=server.address))
    event = big_event(moodle.state()["template_course_id"], "killt")
    settings = make_settings(temporal_task_queue=queue)

    deploy_id = (await starter.deploy_event(client, event, settings=settings)).id
    await wait_until_partly_done(client, event["id"], at_least=40)
    server.kill()
    enrolled_while_down = len(moodle.state()["enrolments"])
    await asyncio.sleep(3)  # the worker's polls and completions fail meanwhile
    assert worker.alive(), worker.tail()

    server.start()
    server.wait_until_serving(60)
    client = await connect(server.address)
    handle = client.get_workflow_handle_for(DeployEvent.run, deploy_id)
    result = await asyncio.wait_for(handle.result(), 120)

    assert worker.alive() and "=== start 2" not in worker.output()  # the same worker reconnected
    assert (result.total, result.done, result.failed) == (PARTICIPANTS, PARTICIPANTS, 0)
    # The killed server's state was in WAL mode (devserver.SQLITE_PRAGMAS): bytes 18-19 of a SQLite file's
    # header are 2, 2 in WAL mode, 1, 1 with a rollback journal. Read from the header, so the test opens no
    # connection that could checkpoint the WAL.
    assert (tmp_path / "t.db").read_bytes()[18:20] == b"\x02\x02"
    state = moodle.state()
    assert len(state["enrolments"]) > enrolled_while_down
    assert result.course_id == assert_deployed(state, event)
    # Moodle welcomes each instructor after the first, once; students get none at deploy.
    assert len([m for m in state["messages"] if m["kind"] == "welcome"]) == INSTRUCTORS - 1
