"""The worker's log, as operators read it: an expected failure of a business rule is one line with its
type and message, not a traceback; a bug keeps its traceback."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.moodle import MoodleClient
from openvle_moodle_sync.settings import Settings
from tests.conftest import make_event, make_settings, running_worker
from tests.proc import Processes, processes_in, worker_env

TOKEN = "log-token"


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    with processes_in(tmp_path) as procs:
        yield procs


async def test_business_failure_is_one_log_line(temporal_env: WorkflowEnvironment, processes: Processes) -> None:
    moodle = processes.fake_moodle(TOKEN, latency_ms=0)
    queue = f"log-{uuid.uuid4().hex[:8]}"
    worker = processes.worker(worker_env(moodle_url=moodle.url, token=TOKEN, task_queue=queue,
                                         temporal_address=temporal_env.client.service_client.config.target_host))
    event_id = f"log-{uuid.uuid4().hex[:6]}"
    async with MoodleClient(moodle.url, TOKEN) as client:  # someone else's course already has the slug
        await client.create_courses([{"fullname": "Not ours", "shortname": f"ws-{event_id}", "categoryid": 1}])
    (template,) = [c for c in moodle.state()["courses"] if c["shortname"] == "tpl-demo"]
    event = {"id": event_id, "name": "Workshop", "slug": f"ws-{event_id}", "moodle_course_id": template["id"],
             "participants": [{"id": "p-1", "username": f"{event_id}-u1", "email": f"{event_id}-u1@example.com",
                               "first_name": "A", "last_name": "B", "role": "student"}]}
    mark = len(worker.output())
    handle = await starter.deploy_event(temporal_env.client, event, settings=make_settings(temporal_task_queue=queue))
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    log = worker.output()[mark:]
    lines = [line for line in log.splitlines() if ErrorType.SLUG_TAKEN in line]
    assert len(lines) == 1, log
    assert "prepare_course failed for good" in lines[0] and "already uses the short name" in lines[0]
    assert "Traceback" not in log and "Completing activity as failed" not in log, log


async def test_a_bug_keeps_its_traceback(client: Client, fake: FakeMoodle, settings: Settings,
                                         caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception in an activity is not one of ours: the SDK logs it with its traceback."""

    async def broken(self: MoodleClient, field: str = "", value: str | int = "") -> list[Any]:
        raise KeyError("a bug")

    monkeypatch.setattr(MoodleClient, "get_courses_by_field", broken)
    caplog.set_level(logging.INFO)
    async with running_worker(client, settings, fake):
        handle = await starter.deploy_event(client, make_event(fake, participants=1), settings=settings)
        for _ in range(100):
            if any(r.getMessage().startswith("Completing activity as failed") for r in caplog.records):
                break
            await asyncio.sleep(0.1)
        await handle.terminate("test: the bug was logged")
    (record, *_) = [r for r in caplog.records if r.getMessage().startswith("Completing activity as failed")]
    assert record.levelno == logging.WARNING and record.exc_info and isinstance(record.exc_info[1], KeyError)
    assert not [r for r in caplog.records if r.name == "activities"]  # not logged as an expected failure
