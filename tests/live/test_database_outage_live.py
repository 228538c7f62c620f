"""Moodle's database stopped for 30 s in the middle of a deployment of 120, with a real worker process:
every participant ends up done, in one course, with one account each and the right role, and nobody gets
a mail twice (issue 11: a database failure must be retried like an outage).

Only on the Moodle lab, since it stops the lab's PostgreSQL (as root, with pg_ctl, as the lab's scripts
do): set MOODLE_TEST_LAB_DIR to the lab's state dir (its MOODLE_LAB_DIR). About a minute.
bench/db_outage.py runs the same several times in a row and prints the figures."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from openvle_moodle_sync.moodle import MoodleDatabaseError
from openvle_moodle_sync.moodle.coalesce import MAILING_STREAMS, mailing_batch
from openvle_moodle_sync.settings import Settings
from tests.live.conftest import LIVE, Live
from tests.live.db_outage import Lab, one_run
from tests.proc import processes_in, worker_env

LAB_DIR = os.environ.get("MOODLE_TEST_LAB_DIR", "").strip()

pytestmark = [*LIVE, pytest.mark.slow,
              pytest.mark.skipif(not LAB_DIR, reason="the database outage test needs MOODLE_TEST_LAB_DIR, the "
                                 "state dir of the Moodle lab whose PostgreSQL it may stop")]


async def test_database_outage_in_the_middle_of_a_deployment(temporal_env: WorkflowEnvironment, live: Live,
                                                             tmp_path: Path) -> None:
    lab = Lab(Path(LAB_DIR))
    assert lab.url.rstrip("/") == live.url, "MOODLE_TEST_LAB_DIR must be the lab at MOODLE_TEST_URL"
    queue = f"dbo-{uuid.uuid4().hex[:8]}"
    with processes_in(tmp_path) as procs:
        procs.worker(worker_env(moodle_url=lab.url, token=lab.token, task_queue=queue,
                                temporal_address=temporal_env.client.service_client.config.target_host,
                                moodle_sync_timeout="60", moodle_retry_max_interval="10"))
        result = await one_run(temporal_env.client, lab, queue, 120, 30.0, 1, prefix=live.prefix)
    assert result["ok"], result
    assert result["retries_by_cause"].get(MoodleDatabaseError.__name__, 0) > 0, result  # the outage was hit
    # Passwords mailed again: at most the accounts of the two mailing calls in flight (docs/workflows.md).
    at_risk = MAILING_STREAMS * mailing_batch(Settings.model_fields["moodle_max_concurrency"].default,
                                              Settings.model_fields["moodle_batch_size"].default)
    assert result["account_mails_twice"] <= at_risk, result
