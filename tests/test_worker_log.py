"""The worker's log, as operators read it: an expected failure of a business rule is one line with its
type and message, not a traceback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from openvle_moodle_sync import starter
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.moodle import MoodleClient
from tests.conftest import make_settings
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
