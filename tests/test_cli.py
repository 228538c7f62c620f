"""``python -m starter``: against the session's Temporal dev server, an in-process worker and the simulator.

Most commands run in-process (`starter.cli.run` with the test's client and settings, output captured);
the commands whose point is the environment (``doctor``, ``courses``, an unreachable Temporal, a bad
setting, and one full ``deploy --wait``) run as real ``python -m starter`` subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from fake_moodle import FakeMoodle
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.starter import cli
from openvle_moodle_sync.workflows import ids
from tests.conftest import TOKEN, make_event

ROOT = Path(__file__).resolve().parent.parent
LIMITED_TOKEN = "limited-token-abcdef0123456789"


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


async def run(capsys: pytest.CaptureFixture[str], *argv: str, client: Client | None = None,
              settings: Settings | None = None) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await cli.run(list(argv), client=client, settings=settings)
    out, err = capsys.readouterr()
    return code, out, err


async def not_started(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return True
    return False


# --- deploy, progress, rerun, the other workflows (in-process) -------------------------------------------


async def test_deploy_wait_succeeds(client: Client, fake: FakeMoodle, settings: Settings, worker: Worker,
                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = make_event(fake, participants=5, instructors=1)
    code, out, _ = await run(capsys, "deploy", "--event", write(tmp_path, "event.json", event), "--wait",
                             client=client, settings=settings)
    assert code == 0, out
    assert "completed" in out and "5 of 5 participants" in out
    assert fake.site.user_by_username(event["participants"][0]["username"]) is not None


async def test_deploy_without_wait_prints_the_workflow_id(client: Client, fake: FakeMoodle, settings: Settings,
                                                          worker: Worker, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    event = make_event(fake, participants=2)
    code, out, err = await run(capsys, "deploy", "--event", write(tmp_path, "e.json", event),
                               client=client, settings=settings)
    assert code == 0
    assert out.strip() == ids.deploy_id(event["id"])
    assert "progress --event-id" in err
    await client.get_workflow_handle(out.strip()).result()


async def test_progress_json_has_the_interface_keys(client: Client, fake: FakeMoodle, settings: Settings,
                                                    worker: Worker, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    event = make_event(fake, participants=3)
    assert (await run(capsys, "deploy", "--event", write(tmp_path, "e.json", event), "--wait",
                      client=client, settings=settings))[0] == 0
    code, out, _ = await run(capsys, "progress", "--event-id", event["id"], "--json", client=client,
                             settings=settings)
    assert code == 0
    progress = json.loads(out)
    assert {"state", "total", "done", "failed", "participants"} <= set(progress)
    assert (progress["state"], progress["total"], progress["done"], progress["failed"]) == ("completed", 3, 3, 0)
    assert [p["id"] for p in progress["participants"]] == ["p-0", "p-1", "p-2"]
    assert all({"id", "state", "error"} <= set(p) and p["state"] == "done" for p in progress["participants"])

    code, out, _ = await run(capsys, "progress", "--event-id", event["id"], client=client, settings=settings)
    assert code == 0 and "completed" in out and "3 done" in out


async def test_failed_deployment_names_each_failed_participant(client: Client, fake: FakeMoodle, settings: Settings,
                                                               worker: Worker, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    event = make_event(fake, participants=3)
    # "admin" is another Moodle account (the token's user) with another email: that participant alone fails.
    event["participants"][2] |= {"username": "admin", "email": "not-the-admin@example.com"}
    code, out, err = await run(capsys, "deploy", "--event", write(tmp_path, "e.json", event), "--wait",
                               client=client, settings=settings)
    assert code == 1
    assert ErrorType.DEPLOYMENT_INCOMPLETE in err and "1 of 3 participants" in err
    assert "p-2" in err and "admin" in err  # the table of failed participants, with the error

    code, out, _ = await run(capsys, "progress", "--event-id", event["id"], "--json", client=client,
                             settings=settings)
    progress = json.loads(out)
    assert progress["state"] == "failed" and progress["failed"] == 1
    failed = [p for p in progress["participants"] if p["state"] == "failed"]
    assert [p["id"] for p in failed] == ["p-2"] and failed[0]["error"]

    # The cause persists, so a re-run fails the same way, and says so.
    code, _, err = await run(capsys, "rerun", "--event-id", event["id"], "--wait", client=client, settings=settings)
    assert code == 1 and "p-2" in err


async def test_rerun_and_the_whole_life(client: Client, fake: FakeMoodle, settings: Settings, worker: Worker,
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = make_event(fake, participants=4, instructors=1)
    event_file = write(tmp_path, "e.json", event)
    assert (await run(capsys, "deploy", "--event", event_file, "--wait", client=client, settings=settings))[0] == 0
    code, out, _ = await run(capsys, "rerun", "--event-id", event["id"], "--wait", client=client, settings=settings)
    assert code == 0 and "already there" in out

    newcomer = {"id": "p-new", "username": f"new-{event['id']}", "email": f"new-{event['id']}@example.com",
                "first_name": "Zoë", "last_name": "Müller", "role": "student"}
    person_file = write(tmp_path, "p.json", newcomer)
    code, out, _ = await run(capsys, "add", "--event", event_file, "--participant", person_file, "--wait",
                             client=client, settings=settings)
    assert code == 0 and "enrolled as student" in out
    code, out, _ = await run(capsys, "remove", "--event", event_file, "--participant", person_file, "--wait",
                             client=client, settings=settings)
    assert code == 0 and "unenrolled" in out
    code, out, _ = await run(capsys, "archive", "--event", event_file, "--wait", client=client, settings=settings)
    assert code == 0 and "3 students unenrolled" in out and "hidden" in out
    code, out, _ = await run(capsys, "delete", "--event", event_file, "--wait", client=client, settings=settings)
    assert code == 0 and "kept" in out and "MOODLE_DELETE_COURSE_ON_EVENT_DELETE" in out


async def test_a_failed_change_exits_1_with_the_reason(client: Client, fake: FakeMoodle, settings: Settings,
                                                       worker: Worker, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    event = make_event(fake, participants=2)
    code, _, err = await run(capsys, "add", "--event", write(tmp_path, "e.json", event), "--participant",
                             write(tmp_path, "p.json", event["participants"][0]), "--wait",
                             client=client, settings=settings)
    assert code == 1 and "has no Moodle course yet" in err


async def test_progress_says_why_a_run_waits(client: Client, fake: FakeMoodle, settings: Settings, worker: Worker,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake.faults.outage = "503"  # Moodle down: the run waits, retrying, and progress says so
    event = make_event(fake, participants=2)
    code, out, _ = await run(capsys, "deploy", "--event", write(tmp_path, "e.json", event), client=client,
                             settings=settings)
    assert code == 0
    try:
        deadline = time.monotonic() + 30
        while True:
            code, out, _ = await run(capsys, "progress", "--event-id", event["id"], client=client, settings=settings)
            if "waiting on" in out or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert code == 0 and "running" in out and "waiting on" in out and "503" in out, out
    finally:
        fake.reset_faults()
    code, out, _ = await run(capsys, "rerun", "--event-id", event["id"], "--wait", client=client, settings=settings)
    assert code == 0 and "2 of 2 participants" in out


async def test_unknown_event_progress_and_rerun(client: Client, settings: Settings,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("progress", "rerun"):
        code, _, err = await run(capsys, command, "--event-id", "never-deployed", client=client, settings=settings)
        assert code == 1 and "never-deployed" in err and "deploy" in err


# --- bad input: exit 2, the field named, nothing started ------------------------------------------------


async def test_bad_json_exits_2_and_starts_nothing(client: Client, fake: FakeMoodle, settings: Settings,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "broken.json", '{"id": "ev-broken", "name": "x",')
    code, _, err = await run(capsys, "deploy", "--event", path, client=client, settings=settings)
    assert code == 2
    assert "not valid JSON" in err and "line 1" in err and "Nothing was started" in err
    assert await not_started(client, ids.deploy_id("ev-broken"))

    code, _, err = await run(capsys, "deploy", "--event", write(tmp_path, "list.json", [1]), client=client,
                             settings=settings)
    assert code == 2 and "one JSON object" in err
    code, _, err = await run(capsys, "deploy", "--event", str(tmp_path / "missing.json"), client=client,
                             settings=settings)
    assert code == 2 and "missing.json" in err


async def test_invalid_participant_names_the_field(client: Client, fake: FakeMoodle, settings: Settings,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = make_event(fake, participants=3)
    event["participants"][1]["email"] = "not-an-address"
    code, _, err = await run(capsys, "deploy", "--event", write(tmp_path, "e.json", event), "--wait",
                             client=client, settings=settings)
    assert code == 2
    assert "participants[1]" in err and "email" in err and "not-an-address" in err
    assert await not_started(client, ids.deploy_id(event["id"]))

    good = make_event(fake, participants=1)
    person = {"id": "p-9", "username": "nine", "email": "nine@example.com", "first_name": "Nine",
              "last_name": "Nines", "role": "teacher"}
    code, _, err = await run(capsys, "add", "--event", write(tmp_path, "g.json", good), "--participant",
                             write(tmp_path, "p.json", person), client=client, settings=settings)
    assert code == 2 and "role" in err and "'teacher'" in err
    assert await not_started(client, ids.participant_id(good["id"], "p-9"))

    code, _, err = await run(capsys, "archive", "--event", write(tmp_path, "a.json", {"name": "no id"}),
                             client=client, settings=settings)
    assert code == 2 and "id: is missing" in err


def test_usage_errors_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "starter", "deploy"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env=cli_env())
    assert result.returncode == 2 and "--event" in result.stderr


# --- the environment: subprocesses of python -m starter ---------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOODLE_", "TEMPORAL_", "PAYLOAD_"))}
    env.update({"COLUMNS": "200", "PYTHONUNBUFFERED": "1", **extra})
    return env


async def run_cli(*argv: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """``python -m starter ARGV`` without blocking the event loop (the in-process worker keeps running)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "starter", *argv, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moodle_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``python -m fake_moodle`` subprocess (a real HTTP Moodle for doctor and courses)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("fake_moodle") / "fake_moodle.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fake_moodle", "--port", str(port), "--token", TOKEN,
                                 "--limited-token", LIMITED_TOKEN], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/_fake/state", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def target(temporal_env: WorkflowEnvironment) -> str:
    return temporal_env.client.service_client.config.target_host


def moodle_env(temporal_env: WorkflowEnvironment, moodle_url: str, token: str = TOKEN, **extra: str) -> dict[str, str]:
    return cli_env(MOODLE_ENABLED="True", MOODLE_URL=moodle_url, MOODLE_TOKEN=token,
                   TEMPORAL_ADDRESS=target(temporal_env), **extra)


async def test_doctor_all_good(temporal_env: WorkflowEnvironment, moodle_url: str) -> None:
    code, out = await run_cli("doctor", env=moodle_env(temporal_env, moodle_url))
    assert code == 0, out
    assert "OK   Settings" in out and "OK   Temporal" in out and "OK   Moodle" in out
    assert "release 4.5" in out and "All checks passed" in out
    assert TOKEN not in out


async def test_doctor_wrong_token_names_the_token(temporal_env: WorkflowEnvironment, moodle_url: str) -> None:
    code, out = await run_cli("doctor", env=moodle_env(temporal_env, moodle_url, token="wrong-token-0000"))
    assert code != 0
    assert "FAIL Moodle" in out and "invalidtoken" in out and "MOODLE_TOKEN" in out
    assert "wrong-token-0000" not in out


async def test_doctor_limited_token_lists_missing_functions(temporal_env: WorkflowEnvironment,
                                                            moodle_url: str) -> None:
    code, out = await run_cli("doctor", env=moodle_env(temporal_env, moodle_url, token=LIMITED_TOKEN))
    assert code != 0
    assert "FAIL Moodle" in out and "enrol_manual_enrol_users" in out and "External services" in out


async def test_doctor_without_temporal(moodle_url: str) -> None:
    env = cli_env(MOODLE_ENABLED="True", MOODLE_URL=moodle_url, MOODLE_TOKEN=TOKEN,
                  TEMPORAL_ADDRESS=f"127.0.0.1:{_free_port()}")
    code, out = await run_cli("doctor", env=env)
    assert code != 0 and "FAIL Temporal" in out and "TEMPORAL_ADDRESS" in out
    assert "OK   Moodle" in out  # the other checks still run


async def test_temporal_unreachable_exits_1_naming_the_address(tmp_path: Path) -> None:
    port = _free_port()
    code, out = await run_cli("progress", "--event-id", "42", env=cli_env(TEMPORAL_ADDRESS=f"127.0.0.1:{port}"))
    assert code == 1 and "TEMPORAL_ADDRESS" in out and str(port) in out


async def test_config_error_exits_2_naming_the_variable() -> None:
    code, out = await run_cli("progress", "--event-id", "42", env=cli_env(MOODLE_USER_MATCH_FIELD="phone"))
    assert code == 2 and "MOODLE_USER_MATCH_FIELD" in out and "email" in out
    code, out = await run_cli("doctor", env=cli_env(MOODLE_ENABLED="True"))
    assert code == 2 and "FAIL Settings" in out and "MOODLE_URL" in out


async def test_courses(temporal_env: WorkflowEnvironment, moodle_url: str) -> None:
    env = moodle_env(temporal_env, moodle_url)
    code, out = await run_cli("courses", "--json", env=env)
    assert code == 0, out
    courses = json.loads(out)
    assert [set(c) for c in courses] == [{"id", "shortname", "fullname"}] * len(courses)
    assert "tpl-demo" in {c["shortname"] for c in courses}
    code, out = await run_cli("courses", "--search", "Demo", "--json", env=env)
    assert code == 0 and [c["shortname"] for c in json.loads(out)] == ["tpl-demo"]
    code, out = await run_cli("courses", "--search", "Demo", env=env)
    assert code == 0 and "tpl-demo" in out and "Demo Template" in out
    code, out = await run_cli("courses", env=moodle_env(temporal_env, moodle_url, token="wrong-token-0000"))
    assert code == 1 and "invalidtoken" in out


async def test_deploy_wait_as_a_subprocess(temporal_env: WorkflowEnvironment, client: Client, fake: FakeMoodle,
                                           settings: Settings, worker: Worker, tmp_path: Path) -> None:
    """The real command line: TEMPORAL_ADDRESS and the task queue from the environment."""
    event = make_event(fake, participants=6, instructors=2)
    env = cli_env(TEMPORAL_ADDRESS=target(temporal_env), TEMPORAL_TASK_QUEUE=settings.temporal_task_queue)
    code, out = await run_cli("deploy", "--event", write(tmp_path, "e.json", event), "--wait", env=env)
    assert code == 0, out
    assert "6/6" in out and "6 of 6 participants" in out
    code, out = await run_cli("progress", "--event-id", event["id"], "--json", env=env)
    assert code == 0 and json.loads(out)["done"] == 6
