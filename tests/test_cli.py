"""``python -m starter``: against the session's Temporal dev server, an in-process worker and the simulator.

Most commands run in-process (`starter.cli.run` with the test's client and settings, output captured);
the commands whose point is the environment (``doctor``, ``courses``, an unreachable Temporal, a bad
setting, and one full ``deploy --wait``) run as real ``python -m starter`` subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from fake_moodle import FakeMoodle
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.starter import cli
from openvle_moodle_sync.starter.cli import NOTHING_STARTED
from openvle_moodle_sync.temporal_client import ensure_search_attributes
from openvle_moodle_sync.workflows import ids
from tests.conftest import TOKEN, make_event
from tests.proc import ROOT, free_port, processes_in

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
    assert out.strip().startswith(ids.deploy_id(event["id"], ""))
    assert "progress --event-id" in err
    for _ in range(100):  # the event's life starts the operation's workflow once it takes it up
        if not await not_started(client, out.strip()):
            break
        await asyncio.sleep(0.1)
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
    path = write(tmp_path, "e.json", event)
    code, out, err = await run(capsys, "deploy", "--event", path, "--wait", client=client, settings=settings)
    assert code == 1
    assert ErrorType.DEPLOYMENT_INCOMPLETE in err and "1 of 3 participants" in err
    assert "p-2" in err and "admin" in err  # the table of failed participants, with the error
    # A participant's details clash with another account: a re-run would fail the same way; fix the event.
    assert "Next: Fix the failed participants' details in the event" in err
    (next_line,) = " ".join(err.split()).split("Next: ")[1:]
    assert f"openvle-moodle-sync deploy --event {path} --wait" in next_line and "rerun" not in next_line

    code, out, _ = await run(capsys, "progress", "--event-id", event["id"], "--json", client=client,
                             settings=settings)
    progress = json.loads(out)
    assert code == 1  # progress of a failed run exits non-zero
    assert progress["state"] == "failed" and progress["failed"] == 1
    failed = [p for p in progress["participants"] if p["state"] == "failed"]
    assert [p["id"] for p in failed] == ["p-2"] and "admin" in failed[0]["error"]
    assert progress["failure"]["type"] == "DeploymentIncomplete"
    assert "1 of 3 participants" in progress["failure"]["message"]
    assert "deploy it again" in progress["next_step"] and "openvle-moodle-sync deploy" in progress["next_step"]
    assert progress["worker_polling"] is True
    # "enrolled" read as "not enrolled" for people enrolled before: the field says what it means now.
    assert all("enrolled" not in p and "written_by_this_run" in p for p in progress["participants"])

    code, out, _ = await run(capsys, "progress", "--event-id", event["id"], client=client, settings=settings)
    assert code == 1
    assert "failed" in out and "[DeploymentIncomplete]" in out and "1 of 3 participants" in out
    assert "p-2" in out and "admin" in out and "Next: Fix the failed participants' details" in out

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
    # Refused at the call, in words with the next step, before anything is written (issue 23 point 2).
    assert code == 1 and "is not deployed to Moodle" in err and "Next: Deploy it first" in err
    assert await not_started(client, ids.life_id(event["id"]))


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
    assert await not_started(client, ids.life_id("ev-broken"))

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
    assert await not_started(client, ids.life_id(event["id"]))

    good = make_event(fake, participants=1)
    person = {"id": "p-9", "username": "nine", "email": "nine@example.com", "first_name": "Nine",
              "last_name": "Nines", "role": "teacher"}
    code, _, err = await run(capsys, "add", "--event", write(tmp_path, "g.json", good), "--participant",
                             write(tmp_path, "p.json", person), client=client, settings=settings)
    assert code == 2 and "role" in err and "'teacher'" in err
    assert await not_started(client, ids.life_id(good["id"]))

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


@pytest.fixture(scope="module")
def moodle_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``python -m fake_moodle`` subprocess (a real HTTP Moodle for doctor and courses)."""
    with processes_in(tmp_path_factory.mktemp("fake_moodle")) as procs:
        yield procs.fake_moodle(TOKEN, latency_ms=0, limited_token=LIMITED_TOKEN).url


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
                  TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    code, out = await run_cli("doctor", env=env)
    assert code != 0 and "FAIL Temporal" in out and "TEMPORAL_ADDRESS" in out
    assert "OK   Moodle" in out  # the other checks still run


async def test_temporal_unreachable_exits_1_naming_the_address(tmp_path: Path) -> None:
    port = free_port()
    code, out = await run_cli("progress", "--event-id", "42", env=cli_env(TEMPORAL_ADDRESS=f"127.0.0.1:{port}"))
    assert_in_words(code, out, "TEMPORAL_ADDRESS", str(port))


def assert_in_words(code: int, out: str, *expected: str) -> None:
    """Exit 1, the fix in words, nothing of the SDK's internals."""
    assert code == 1, out
    for internal in ("Traceback", "RPCError", "tonic::", "UserWarning", "Fatal Python error"):
        assert internal not in out, out
    for text in expected:
        assert text in out, out


async def test_settings_errors_exit_1_naming_the_variable() -> None:
    code, out = await run_cli("progress", "--event-id", "42", env=cli_env(TEMPORAL_TLS="maybe"))
    assert_in_words(code, out, "TEMPORAL_TLS", '"True" or "False"')
    assert NOTHING_STARTED not in out  # progress only reads: there was nothing to start
    code, out = await run_cli("rerun", "--event-id", "42", env=cli_env(TEMPORAL_TLS="maybe"))
    assert_in_words(code, out, "TEMPORAL_TLS", NOTHING_STARTED)
    code, out = await run_cli("courses", env=cli_env(MOODLE_USER_MATCH_FIELD="phone"))
    assert_in_words(code, out, "MOODLE_USER_MATCH_FIELD", "email")


async def test_doctor_checks_temporal_even_with_bad_moodle_settings(temporal_env: WorkflowEnvironment) -> None:
    code, out = await run_cli("doctor", env=cli_env(MOODLE_ENABLED="True", TEMPORAL_ADDRESS=target(temporal_env)))
    assert_in_words(code, out, "FAIL Settings", "MOODLE_URL", "OK   Temporal", "SKIP Moodle")


async def test_doctor_without_moodle_settings_says_what_it_checked(temporal_env: WorkflowEnvironment) -> None:
    code, out = await run_cli("doctor", env=cli_env(TEMPORAL_ADDRESS=target(temporal_env)))
    assert code == 0, out
    assert "SKIP Moodle" in out and "not checked" in out and "The worker uses its own MOODLE_* settings" in out
    assert "without touching Moodle" not in out  # a worker elsewhere may well be enabled


async def test_a_moodle_typo_in_the_cli_does_not_block_deploy(temporal_env: WorkflowEnvironment, client: Client,
                                                              fake: FakeMoodle, settings: Settings, worker: Worker,
                                                              tmp_path: Path) -> None:
    """`deploy` uses only TEMPORAL_*: the worker writes to Moodle with its own settings."""
    event = make_event(fake, participants=2)
    env = cli_env(TEMPORAL_ADDRESS=target(temporal_env), TEMPORAL_TASK_QUEUE=settings.temporal_task_queue,
                  MOODLE_URL="https://moodle.example.com/", MOODLE_ENABLED="True")
    code, out = await run_cli("deploy", "--event", write(tmp_path, "e.json", event), "--wait", env=env)
    assert code == 0, out
    assert "2 of 2 participants" in out
    assert "MOODLE_URL" in out and "ends with a slash" in out and "The worker uses its own MOODLE_* settings" in out


@pytest.fixture
def event_files(tmp_path: Path) -> dict[str, str]:
    event = {"id": "ev-words", "name": "Words", "slug": "ws-words", "moodle_course_id": 2, "participants": []}
    person = {"id": "p-1", "username": "alice", "email": "alice@example.com", "first_name": "Alice",
              "last_name": "Smith", "role": "student"}
    return {"event": write(tmp_path, "e.json", event), "participant": write(tmp_path, "p.json", person)}


def every_temporal_command(files: dict[str, str]) -> list[list[str]]:
    event, person = ["--event", files["event"]], ["--participant", files["participant"]]
    return [["deploy", *event], ["deploy", *event, "--wait"], ["add", *event, *person], ["remove", *event, *person],
            ["archive", *event], ["delete", *event, "--wait"], ["progress", "--event-id", "ev-words"],
            ["progress", "--event-id", "ev-words", "--json"], ["rerun", "--event-id", "ev-words"]]


async def test_a_wrong_namespace_is_said_by_every_command(temporal_env: WorkflowEnvironment,
                                                          event_files: dict[str, str]) -> None:
    env = cli_env(TEMPORAL_ADDRESS=target(temporal_env), TEMPORAL_NAMESPACE="nope")
    commands = every_temporal_command(event_files)
    results = await asyncio.gather(*(run_cli(*argv, env=env) for argv in commands))
    for argv, (code, out) in zip(commands, results, strict=True):
        assert_in_words(code, out, "has no namespace 'nope'", "TEMPORAL_NAMESPACE")
        assert "no deployment" not in out, (argv, out)  # never mistaken for an event not deployed
    code, out = await run_cli("doctor", env=env)
    assert_in_words(code, out, "FAIL Temporal", "has no namespace 'nope'")


async def test_connection_errors_are_said_with_the_fix(temporal_env: WorkflowEnvironment,
                                                       event_files: dict[str, str]) -> None:
    address = target(temporal_env)
    closed = f"127.0.0.1:{free_port()}"
    cases = [
        (cli_env(TEMPORAL_ADDRESS=f"http://{address}"), ["has a scheme", f"TEMPORAL_ADDRESS={address}"]),
        (cli_env(TEMPORAL_ADDRESS=address, TEMPORAL_TLS="true"), ["TLS", "plain text", 'TEMPORAL_TLS="False"']),
        (cli_env(TEMPORAL_ADDRESS=closed), ["Failed to connect", closed, "Connection refused", "TEMPORAL_ADDRESS"]),
    ]
    runs = [(env, argv, expected) for env, expected in cases
            for argv in (["progress", "--event-id", "ev-words"], ["deploy", "--event", event_files["event"]])]
    results = await asyncio.gather(*(run_cli(*argv, env=env) for env, argv, _ in runs))
    for (_, argv, expected), (code, out) in zip(runs, results, strict=True):
        assert_in_words(code, out, *expected)
        assert (NOTHING_STARTED in out) == (argv[0] == "deploy"), out  # said only where a run would start


async def test_tls_off_against_a_tls_server_is_said(tmp_path: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*self_signed(tmp_path))

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read(100)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        code, out = await run_cli("progress", "--event-id", "42", env=cli_env(TEMPORAL_ADDRESS=f"127.0.0.1:{port}"))
    assert_in_words(code, out, 'TEMPORAL_TLS="True"')


def self_signed(directory: Path) -> tuple[str, str]:
    """A throw-away certificate and key for a TLS server on 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


async def test_the_server_going_away_during_wait_is_said(tmp_path: Path, event_files: dict[str, str]) -> None:
    with processes_in(tmp_path) as processes:
        server = processes.temporal(tmp_path / "t.db")
        await ensure_search_attributes(await Client.connect(server.address))
        env = cli_env(TEMPORAL_ADDRESS=server.address, TEMPORAL_TASK_QUEUE="nobody-polls-this")
        waiting = asyncio.ensure_future(run_cli("deploy", "--event", event_files["event"], "--wait", env=env,
                                                timeout=120))
        await asyncio.sleep(4)  # started, and waiting for a worker
        assert not waiting.done()
        server.kill()
        code, out = await waiting
    assert_in_words(code, out, "stopped answering", "TEMPORAL_ADDRESS", "keeps running in Temporal")


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
