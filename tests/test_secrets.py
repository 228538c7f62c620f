"""The Moodle token never leaves the worker: a whole lifecycle, with a bad-token phase, lost responses and
an outage so that the error paths run too; then every history of the run and the worker's whole output are
searched for the token (plain, and base64 in any alignment, as history JSON carries payload bytes)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from openvle_moodle_sync import starter
from openvle_moodle_sync.workflows import ids
from tests.conftest import make_settings
from tests.proc import Processes, assert_deployed, people, processes_in, worker_env

pytestmark = pytest.mark.slow

TOKEN = "tok-SECRET-5f3a9c" + uuid.uuid4().hex[:12]


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    with processes_in(tmp_path) as procs:
        yield procs


def secret_forms(secret: str) -> list[bytes]:
    """The secret as it may be stored: raw, or inside base64 (standard or URL-safe) at any of the three
    byte alignments. Characters that depend on neighbouring bytes are left out of each form."""
    raw = secret.encode()
    forms = [raw]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        core = encoded[(shift * 8 + 5) // 6: -4]
        forms += [core, core.replace(b"+", b"-").replace(b"/", b"_")]
    return forms


def find_secret(data: bytes | str, secret: str) -> str | None:
    """Where the secret (in any of its forms) occurs in ``data``, with some context; None if nowhere."""
    blob = data.encode() if isinstance(data, str) else data
    for form in secret_forms(secret):
        at = blob.find(form)
        if at >= 0:
            return blob[max(0, at - 120): at + len(form) + 60].decode("utf-8", "replace")
    return None


@dataclass
class ExportedHistory:
    workflow_id: str
    run_id: str
    json: str
    raw: bytes
    events: int


async def export_histories(client: Client, query: str, *, expect_ids: AbstractSet[str] = frozenset(),
                           timeout: float = 20) -> list[ExportedHistory]:
    """The full history of every run the visibility query finds (all runs of each id, children too: they
    share the task queue), as JSON (payload bytes in base64) and as raw protobuf bytes (payload bytes as is).
    Waits until the query lists every id of ``expect_ids`` (visibility lags a little)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = [wf async for wf in client.list_workflows(query)]
        if expect_ids <= {wf.id for wf in found} or loop.time() > deadline:
            break
        await asyncio.sleep(0.3)
    exported = []
    for wf in found:
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        raw = History(events=history.events).SerializeToString()
        exported.append(ExportedHistory(wf.id, wf.run_id, history.to_json(), raw, len(history.events)))
    return exported


def test_secret_search_finds_what_it_looks_for() -> None:
    """The search can fail: a token inside a payload (base64 in history JSON) or a log line is found."""
    for prefix in ("", "x", "xy", '{"wstoken": "'):
        payload = Payload(metadata={"encoding": b"json/plain"}, data=(prefix + TOKEN + '"}').encode())
        assert find_secret(json_format.MessageToJson(payload), TOKEN), prefix
        assert find_secret(payload.SerializeToString(), TOKEN), prefix
    assert find_secret(f"INFO something wstoken={TOKEN}&x=1", TOKEN)
    assert find_secret(base64.urlsafe_b64encode(b"ab" + TOKEN.encode()).decode(), TOKEN)
    assert not find_secret("tok-SECRET-5f3a9c" + "0" * 12, TOKEN)


async def test_token_is_in_no_history_and_no_log(processes: Processes, temporal_env: WorkflowEnvironment) -> None:
    client = temporal_env.client
    moodle = processes.fake_moodle(TOKEN, latency_ms=5)
    queue = f"secrets-{uuid.uuid4().hex[:8]}"
    worker = processes.worker(worker_env(moodle_url=moodle.url, token=TOKEN, task_queue=queue,
                                         temporal_address=client.service_client.config.target_host))
    settings = make_settings(temporal_task_queue=queue)
    event_id = f"sec-{uuid.uuid4().hex[:8]}"
    everyone = people(event_id, 9, instructors=2)
    event: dict[str, Any] = {"id": event_id, "name": f"Secrets {event_id}", "slug": f"ws-{event_id}",
                             "moodle_course_id": moodle.state()["template_course_id"], "participants": everyone[:8]}
    newcomer, leaver = everyone[8], everyone[7]

    # A revoked token: the deployment fails with Moodle's invalidtoken error (logged, recorded in history).
    moodle.faults(token_valid=False)
    handles: list[starter.OperationHandle[Any]] = [await starter.deploy_event(client, event, settings=settings)]
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handles[0].result(), 60)
    assert "invalidtoken" in str(failure.value.cause)
    moodle.faults(token_valid=True, lose_response_rate=0.3)

    # Token fixed, a third of the write answers lost: re-run, add, remove.
    handles.append(await starter.rerun_deployment(client, event_id, settings=settings))
    deployed = await asyncio.wait_for(handles[-1].result(), 60)
    assert deployed.done == 8
    handles.append(await starter.add_participant(client, event, newcomer, settings=settings))
    await asyncio.wait_for(handles[-1].result(), 60)
    handles.append(await starter.remove_participant(client, event, leaver, settings=settings))
    await asyncio.wait_for(handles[-1].result(), 60)

    # Moodle down for a moment while the event is archived.
    moodle.faults(lose_response_rate=0.0, outage="503")
    handles.append(await starter.archive_event(client, event, settings=settings))
    await asyncio.sleep(1.5)
    moodle.faults(outage=None)
    archived = await asyncio.wait_for(handles[-1].result(), 60)
    handles.append(await starter.delete_event(client, event, settings=settings))
    deleted = await asyncio.wait_for(handles[-1].result(), 60)
    assert archived.hidden and deleted.kept

    # The simulator got the token: it answered the writes only because the token was right.
    state = moodle.state()
    final = [p for p in everyone if p["role"] == "instructor"]
    course_id = assert_deployed(state, {**event, "participants": final})
    assert course_id == deployed.course_id
    calls = state["calls_by_function"]
    assert calls.get("core_user_create_users", 0) >= 1 and calls.get("enrol_manual_unenrol_users", 0) >= 1

    # Every history of the run: the event's life, two deployments (one failed), the participant changes,
    # archive, delete.
    expected = {ids.life_id(event_id), *(h.id for h in handles)}
    histories = await export_histories(client, f'TaskQueue = "{queue}"', expect_ids=expected)
    assert {h.workflow_id for h in histories} >= expected
    assert sum(1 for h in histories if h.workflow_id.startswith(ids.deploy_id(event_id, ""))) == 2
    assert sum(h.events for h in histories) > 100
    joined = "\n".join(h.json for h in histories)
    # What the search reads: failure texts in the clear, payloads (here the newcomer's email) in base64.
    assert "invalidtoken" in joined and find_secret(joined, newcomer["email"])
    for h in histories:
        for blob in (h.json, h.raw):
            leak = find_secret(blob, TOKEN)
            assert leak is None, f"token in the history of {h.workflow_id} (run {h.run_id}): ...{leak}..."

    # The worker's whole output, error paths included.
    worker.stop()
    output = worker.output()
    assert "invalidtoken" in output.lower() and "Moodle connection OK" in output
    leak = find_secret(output, TOKEN)
    assert leak is None, f"token in the worker's output ({worker.log_path}): ...{leak}..."
