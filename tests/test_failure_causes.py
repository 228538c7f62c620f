"""Every workflow's failure shows its root cause (issue 24, point 4): with the token revoked, the run's own
failure (the first line the Temporal UI shows), the CLI's ``--wait`` output and `get_progress` (the event's
life) all name ``InvalidTokenError`` with Moodle's words, never "Activity task failed"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.lifecycle import OperationKind, OperationState
from openvle_moodle_sync.moodle.errors import InvalidTokenError
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.starter import cli
from tests.conftest import make_event, make_person

MOODLE_WORDS = "Invalid token - token not found"
"""What Moodle (and the simulator) answers for a revoked token."""

# The operation, its workflow type, and the CLI's words for it (the event's file and, if any, the person's).
CASES = {
    OperationKind.DEPLOY: ("DeployEvent", ["deploy", "--event", "{event}"]),
    OperationKind.ADD: ("ChangeParticipant", ["add", "--event", "{event}", "--participant", "{newcomer}"]),
    OperationKind.REMOVE: ("ChangeParticipant", ["remove", "--event", "{event}", "--participant", "{member}"]),
    OperationKind.ARCHIVE: ("ArchiveEvent", ["archive", "--event", "{event}"]),
    OperationKind.DELETE: ("DeleteEvent", ["delete", "--event", "{event}"]),
}


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("kind", list(CASES))
async def test_a_failure_shows_its_root_cause_everywhere(
        client: Client, fake: FakeMoodle, settings: Settings, worker: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], kind: OperationKind) -> None:
    workflow_type, argv = CASES[kind]
    event = make_event(fake, participants=3)
    files = {"event": write(tmp_path, "event.json", event),
             "newcomer": write(tmp_path, "newcomer.json", make_person(event, "newcomer")),
             "member": write(tmp_path, "member.json", event["participants"][1])}
    if kind != OperationKind.DEPLOY:
        await (await starter.deploy_event(client, event, settings=settings)).result()
    fake.faults.token_valid = False  # revoked in Moodle

    capsys.readouterr()
    code = await cli.run([a.format(**files) for a in argv] + ["--wait"], client=client, settings=settings)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1
    assert f"[{InvalidTokenError.__name__}]" in err and MOODLE_WORDS in err, err
    assert "ActivityError" not in err and "Activity task failed" not in err, err

    progress = await starter.get_progress(client, event["id"])
    ended = progress.recent[-1]
    assert (ended.kind, ended.state) == (kind, OperationState.FAILED)
    assert ended.failure_type == InvalidTokenError.__name__ and MOODLE_WORDS in (ended.failure or "")

    run = client.get_workflow_handle(ended.workflow_id)
    assert (await run.describe()).workflow_type == workflow_type
    with pytest.raises(WorkflowFailureError) as failed:
        await run.result()
    cause = failed.value.cause  # the run's own failure: the first line the UI shows
    assert isinstance(cause, ApplicationError) and cause.type == InvalidTokenError.__name__
    assert MOODLE_WORDS in cause.message and "Activity task failed" not in cause.message
