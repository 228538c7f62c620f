"""The documented API example is the API: it compiles, and every name it uses exists where it says."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from openvle_moodle_sync import starter
from openvle_moodle_sync.starter import DeploymentProgress, ParticipantProgress, RunFailure

DOCS = Path(__file__).resolve().parent.parent / "docs"
API_DOC = DOCS / "backend-api.md"
GUIDE = DOCS / "operators-guide.md"


def api_example() -> str:
    section = API_DOC.read_text(encoding="utf-8").split("### Python API", 1)[1].split("\n### ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the API section has no Python example"
    return match.group(1)


def test_the_api_example_compiles_and_uses_only_exported_names() -> None:
    tree = ast.parse(api_example())
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "starter"}
    assert {"deploy_event", "get_progress", "InputError", "DeploymentNotFound", "rerun_deployment"} <= used
    assert not used - set(starter.__all__), used - set(starter.__all__)


def test_the_progress_fields_the_docs_name_exist() -> None:
    section = GUIDE.read_text(encoding="utf-8").split("### Read a deployment's progress", 1)[1].split("\n### ")[0]
    documented = set(re.findall(r"^- `(\w+)`", section, re.M)) | set(re.findall(r"; `(\w+)`", section))
    fields = set(DeploymentProgress.__dataclass_fields__) | set(ParticipantProgress.__dataclass_fields__) | set(
        RunFailure.__dataclass_fields__)
    assert {"state", "failure", "next_step", "worker_polling", "participants"} <= documented
    assert documented <= fields, documented - fields
    assert "written_by_this_run" in section and "enrolled`," not in section
