"""Stored histories of every workflow replay against today's code: a change that would break running
workflows (a reordered, added or removed command without `workflow.patched`) fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from openvle_moodle_sync.temporal_client import data_converter
from openvle_moodle_sync.worker import workflow_runner
from openvle_moodle_sync.workflows import ALL_WORKFLOWS, DeployBatch
from tests.conftest import make_settings
from tests.record_histories import history_file, patches_of

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_workflow_has_a_stored_history() -> None:
    types = set()
    for path in HISTORIES:
        history = WorkflowHistory.from_json("replay", path.read_text())
        types.add(history.events[0].workflow_execution_started_event_attributes.workflow_type.name)
    assert types == {w.__temporal_workflow_definition.name for w in ALL_WORKFLOWS}  # type: ignore[attr-defined]


def recorded(path: Path) -> WorkflowHistory:
    """The stored history under the workflow id it ran with: a deployment names its batches after its own id,
    and that id is kept in the ids of the batches it started."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    for event in history.events:
        if event.HasField("start_child_workflow_execution_initiated_event_attributes"):
            child = event.start_child_workflow_execution_initiated_event_attributes.workflow_id
            if child.endswith(("-students-0", "-instructors-0")):
                return WorkflowHistory.from_json(child.rsplit("-", 2)[0], path.read_text())
    return history


@pytest.mark.parametrize("history", [recorded(p) for p in HISTORIES], ids=[p.stem for p in HISTORIES])
async def test_history_replays(history: WorkflowHistory) -> None:
    replayer = Replayer(workflows=ALL_WORKFLOWS, data_converter=data_converter(make_settings()),
                        workflow_runner=workflow_runner())
    await replayer.replay_workflow(history)


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_history_file_names_follow_the_rule(path: Path) -> None:
    """``<scenario>.json`` for the base code path, ``<scenario>__<newest patch>.json`` under patches."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    scenario, _, named_patch = path.stem.partition("__")
    patches = patches_of(history)
    kind = history.events[0].workflow_execution_started_event_attributes.workflow_type.name
    if not patches and kind == DeployBatch.__temporal_workflow_definition.name:  # type: ignore[attr-defined]
        patches = {named_patch} if named_patch else set()  # a child is named by its parent's patch
    assert path == history_file(scenario, patches)
