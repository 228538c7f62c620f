"""Stored histories of every workflow replay against today's code: a change that would break running
workflows (a reordered, added or removed command without `workflow.patched`) fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from openvle_moodle_sync.temporal_client import data_converter
from openvle_moodle_sync.workflows import ALL_WORKFLOWS
from tests.conftest import make_settings

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_workflow_has_a_stored_history() -> None:
    types = set()
    for path in HISTORIES:
        history = WorkflowHistory.from_json("replay", path.read_text())
        types.add(history.events[0].workflow_execution_started_event_attributes.workflow_type.name)
    assert types == {w.__temporal_workflow_definition.name for w in ALL_WORKFLOWS}  # type: ignore[attr-defined]


@pytest.mark.parametrize("history", [WorkflowHistory.from_json(p.stem, p.read_text()) for p in HISTORIES],
                         ids=[p.stem for p in HISTORIES])
async def test_history_replays(history: WorkflowHistory) -> None:
    replayer = Replayer(workflows=ALL_WORKFLOWS, data_converter=data_converter(make_settings()))
    await replayer.replay_workflow(history)
