"""A rolling restart: two worker processes on one task queue, one of them stopped with SIGTERM (as Docker,
Kubernetes or systemd stop it to roll out a new version) in the middle of a deployment of 300. The other
worker finishes the deployment, and Moodle ends with no duplicate and no second mail."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from openvle_moodle_sync import starter
from tests.conftest import make_settings
from tests.proc import Processes, assert_deployed, processes_in, worker_env
from tests.test_crash_recovery import INSTRUCTORS, PARTICIPANTS, TOKEN, big_event, wait_until_partly_done

pytestmark = pytest.mark.slow

SYNC_TIMEOUT_S = 3.0
"""MOODLE_SYNC_TIMEOUT of the workers (tests.proc.worker_env): a stopped worker gets this + 5 s."""


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    with processes_in(tmp_path) as procs:
        yield procs


async def test_sigterm_to_one_of_two_workers_mid_deployment(processes: Processes,
                                                           temporal_env: WorkflowEnvironment) -> None:
    client = temporal_env.client
    moodle = processes.fake_moodle(TOKEN, latency_ms=20)
    queue = f"rolling-{uuid.uuid4().hex[:8]}"
    env = worker_env(moodle_url=moodle.url, token=TOKEN, task_queue=queue,
                     temporal_address=client.service_client.config.target_host,
                     moodle_sync_timeout=str(SYNC_TIMEOUT_S))
    old, new = processes.worker(env, name="worker-old"), processes.worker(env, name="worker-new")
    event = big_event(moodle.state()["template_course_id"], "roll")

    handle = await starter.deploy_event(client, event, settings=make_settings(temporal_task_queue=queue))
    before = await wait_until_partly_done(client, event["id"], at_least=40)
    stopped_at = time.monotonic()
    old.signal(signal.SIGTERM)
    # It stops polling, lets the activities in flight finish (MOODLE_SYNC_TIMEOUT + 5 s at most) and exits 0.
    exit_code = await asyncio.to_thread(old.wait, SYNC_TIMEOUT_S + 5 + 10)
    assert exit_code == 0, old.tail()
    assert time.monotonic() - stopped_at < SYNC_TIMEOUT_S + 5 + 5
    assert "shutting down: finishing the activities in flight" in old.output()
    assert "worker stopped" in old.output()
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING, "finished before the stop"

    result = await asyncio.wait_for(handle.result(), 120)

    assert new.alive(), new.tail()
    assert (result.total, result.done, result.failed) == (PARTICIPANTS, PARTICIPANTS, 0)
    assert 0 < before.done < PARTICIPANTS
    state = moodle.state()
    assert result.course_id == assert_deployed(state, event)  # one course, account, enrolment each
    assert sum(1 for m in state["messages"] if m["kind"] == "newuser") == PARTICIPANTS
    # Moodle welcomes each instructor after the first, once; students get none at deploy.
    assert len([m for m in state["messages"] if m["kind"] == "welcome"]) == INSTRUCTORS - 1

    # Both workers ran the deployment's activities: the old one until the stop, the new one to the end.
    history = await handle.fetch_history()
    by_worker = Counter(e.activity_task_started_event_attributes.identity.split("@")[0] for e in history.events
                        if e.HasField("activity_task_started_event_attributes"))
    assert set(by_worker) == {str(old.pid), str(new.pid)}, by_worker
    last_started = next(e for e in reversed(history.events) if e.HasField("activity_task_started_event_attributes"))
    assert last_started.activity_task_started_event_attributes.identity.startswith(f"{new.pid}@")
