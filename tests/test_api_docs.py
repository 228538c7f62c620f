"""The documented API example is the API: it compiles, every name it uses exists where it says, and it runs
clean again and again against a worker."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from openvle_moodle_sync import starter
from openvle_moodle_sync.devserver import DEV_SERVER_ARGS, file_storage_args
from openvle_moodle_sync.starter import DeploymentProgress, ParticipantProgress, RunFailure
from tests.proc import PYTHON, processes_in, worker_env

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


def test_the_guides_dev_server_command_has_the_projects_arguments() -> None:
    """An operator who copies the guide's command runs the dev server the demo, tests and benchmarks run."""
    section = GUIDE.read_text(encoding="utf-8").split("### Run it yourself", 1)[1].split("\n### ")[0]
    match = re.search(r"```sh\n(temporal server start-dev .*?)# 1\n", section, re.S)
    assert match, "the guide has no dev server command"
    command = match.group(1).replace("\\\n", " ").split()
    expected = [*file_storage_args("temporal.db"), *DEV_SERVER_ARGS]
    pairs = list(zip(command[3::2], command[4::2], strict=True))
    assert sorted(pairs) == sorted(zip(expected[::2], expected[1::2], strict=True))


EXAMPLE_RUNS = 10
TOKEN = "api-example-token-0123456789"


@pytest.mark.timeout(400)
def test_the_api_example_runs_clean_every_time(tmp_path: Path) -> None:
    """The example as a backend runs it, a short-lived script, 10 times in a row against a dev server, the
    simulator and a worker: each run does the whole life of an event and exits 0, never aborted at exit (the
    SDK's threads at the interpreter's teardown, which `run_script` skips). Each run is a new event, as each
    real one is (the example deletes its event at the end, and a deleted event is not deployed again); the
    people are the same, and Moodle ends with one account each."""
    example = api_example()
    assert example.count('"id": "42"') == 1 and example.count('"slug": "linux-ws-2026-11"') == 1, example
    with processes_in(tmp_path) as procs:
        server = procs.temporal(None)  # in memory
        moodle = procs.fake_moodle(TOKEN, latency_ms=0)
        env = worker_env(moodle_url=moodle.url, token=TOKEN, temporal_address=server.address,
                         task_queue="api-example")
        procs.worker(env)
        for run in range(1, EXAMPLE_RUNS + 1):
            script = tmp_path / f"example{run}.py"
            script.write_text(example.replace('"id": "42"', f'"id": "42-{run}"').replace(
                '"slug": "linux-ws-2026-11"', f'"slug": "linux-ws-2026-11-{run}"'), encoding="utf-8")
            result = subprocess.run([PYTHON, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                                    timeout=120)
            said = f"run {run}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
            assert result.returncode == 0, said
            assert "Fatal Python error" not in result.stderr, said
            lines = result.stdout.splitlines()
            assert re.fullmatch(r"course \d+: 2 of 2 done", lines[0]), said
            assert "never-deployed" in lines[-1], said  # DeploymentNotFound, the example's last call
            assert "enrolled as student" in result.stdout and "kept" in result.stdout, said
        state = moodle.state()
    assert sorted(c["shortname"] for c in state["courses"] if c["shortname"].startswith("linux-ws")) == sorted(
        f"linux-ws-2026-11-{run}" for run in range(1, EXAMPLE_RUNS + 1))
    usernames = [u["username"] for u in state["users"] if u["username"] in {"alice", "bob", "carol"}]
    assert sorted(usernames) == ["alice", "bob", "carol"], usernames
