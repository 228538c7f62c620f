"""`python worker.py` as operators run it: the start-up check in its log, metrics, graceful stop."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.proc import PYTHON, Processes, free_port, processes_in, worker_env


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    with processes_in(tmp_path) as procs:
        yield procs


def address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


def test_worker_logs_the_moodle_check_serves_metrics_and_stops_gracefully(
        temporal_env: WorkflowEnvironment, processes: Processes) -> None:
    moodle = processes.fake_moodle("worker-token")
    port = free_port()
    worker = processes.worker(worker_env(moodle_url=moodle.url, token="worker-token",
                                         temporal_address=address(temporal_env),
                                         task_queue=f"wp-{uuid.uuid4().hex[:8]}", metrics_port=str(port)))
    log = worker.output()
    # The guide's verification step: `docker logs openvle-backend 2>&1 | grep -i moodle`.
    assert "Moodle connection OK: site 'Lab'" in log and "release 4.5 (Build: 20241007)" in log
    assert "worker-token" not in log
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert metrics.status_code == 200 and "temporal_" in metrics.text

    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert "worker stopped" in worker.output()


def test_disabled_worker_runs_and_says_so_once(temporal_env: WorkflowEnvironment, processes: Processes) -> None:
    env = worker_env(moodle_url="", token="", temporal_address=address(temporal_env),
                     task_queue=f"wp-{uuid.uuid4().hex[:8]}", moodle_enabled="False")
    worker = processes.worker(env)
    assert worker.output().count("Moodle integration is disabled") == 1
    worker.signal(signal.SIGINT)
    assert worker.wait(30) == 0


def test_bad_settings_stop_the_worker_naming_the_variable(processes: Processes) -> None:
    env = worker_env(moodle_url="https://moodle.example.com/", token="t", temporal_address="127.0.0.1:1",
                     task_queue="unused")
    worker = processes.add("bad-worker", [PYTHON, "worker.py"], env=env)
    worker.start()
    assert worker.wait(30) == 2
    assert "MOODLE_URL: 'https://moodle.example.com/' ends with a slash" in worker.output()

