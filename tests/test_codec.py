"""Payload encryption (PAYLOAD_ENCRYPTION_KEY): the codec, a real run whose history holds no personal data in
the clear, and the codec server the Temporal Web UI uses to show it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes
from temporalio.testing import WorkflowEnvironment

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.codec import (
    ENCODING,
    KEY_ID_METADATA,
    CodecChain,
    CompressionCodec,
    DecryptionError,
    EncryptionCodec,
    InvalidKeyError,
    generate_key,
)
from openvle_moodle_sync.settings import ConfigError, Settings
from openvle_moodle_sync.temporal_client import data_converter
from tests.conftest import add_moodle_user, make_settings, running_worker
from tests.proc import PYTHON, Processes, free_port, processes_in
from tests.test_secrets import export_histories, find_secret

KEY = generate_key()
UI_ORIGIN = "http://localhost:8233"


def payload(data: Any, encoding: bytes = b"json/plain", **metadata: bytes) -> Payload:
    return Payload(metadata={"encoding": encoding, **metadata}, data=json.dumps(data).encode())


# -- the codec ------------------------------------------------------------------------------------------

async def test_round_trip_keeps_every_payload_exactly() -> None:
    codec = EncryptionCodec.from_key(KEY)
    originals = [payload({"email": "alice@example.com"}), payload(None, b"binary/null"),
                 Payload(metadata={"encoding": b"binary/plain"}, data=bytes(range(256)) * 40),
                 payload("x", **{"messageType": b"temporal.Thing"})]
    encoded = await codec.encode(originals)
    for original, sealed in zip(originals, encoded, strict=True):
        assert sealed.metadata["encoding"] == ENCODING == b"binary/encrypted"
        assert sealed.metadata[KEY_ID_METADATA] == codec.key_id.encode()
        assert original.data not in sealed.data and b"alice" not in sealed.SerializeToString()
    assert await codec.decode(encoded) == originals
    # A fresh nonce each time: the same value never gives the same ciphertext.
    again = await codec.encode(originals[:1])
    assert again[0].data != encoded[0].data and await codec.decode(again) == originals[:1]


async def test_decode_passes_through_what_is_not_encrypted() -> None:
    codec = EncryptionCodec.from_key(KEY)
    plain = [payload({"a": 1}), payload(None, b"binary/null"), Payload()]
    assert await codec.decode(plain) == plain
    mixed = [plain[0], *(await codec.encode(plain[:1]))]
    assert await codec.decode(mixed) == [plain[0], plain[0]]


async def test_wrong_key_or_altered_data_fails_clearly() -> None:
    sealed = await EncryptionCodec.from_key(KEY).encode([payload("secret")])
    other = EncryptionCodec.from_key(generate_key())
    with pytest.raises(DecryptionError, match="PAYLOAD_ENCRYPTION_KEY"):
        await other.decode(sealed)
    tampered = Payload()
    tampered.CopyFrom(sealed[0])
    tampered.data = tampered.data[:-1] + bytes([tampered.data[-1] ^ 1])
    with pytest.raises(DecryptionError, match="altered"):
        await EncryptionCodec.from_key(KEY).decode([tampered])
    # Key rotation: the new key encrypts, the old one still decrypts what it wrote.
    rotated = EncryptionCodec.from_key(generate_key(), old_keys=[KEY])
    assert (await rotated.decode(sealed))[0].data == b'"secret"'


@pytest.mark.parametrize("value, problem", [
    ("", "is empty"),
    ("not base64!", "is not valid base64"),
    (base64.b64encode(b"k" * 16).decode(), "decodes to 16 bytes, not 32"),
    (base64.b64encode(b"k" * 33).decode(), "decodes to 33 bytes, not 32"),
])
def test_bad_key_names_the_variable_and_how_to_make_one(value: str, problem: str) -> None:
    with pytest.raises(InvalidKeyError) as error:
        EncryptionCodec.from_key(value)
    message = str(error.value)
    assert message.startswith(f"PAYLOAD_ENCRYPTION_KEY {problem}")
    assert 'python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"' in message
    assert isinstance(error.value, ConfigError) and isinstance(error.value, ValueError)
    if value:
        assert value not in message


def test_key_never_shown() -> None:
    codec = EncryptionCodec.from_key(KEY)
    assert KEY not in repr(codec) and KEY not in codec.key_id
    assert EncryptionCodec.from_key(f"  {KEY}\n").key_id == codec.key_id  # as pasted into .env


def test_off_by_default_on_with_the_key() -> None:
    plain = data_converter(make_settings())
    assert isinstance(plain.payload_codec, CompressionCodec)  # only large payloads are touched
    assert plain.failure_converter_class is pydantic_data_converter.failure_converter_class
    converter = data_converter(make_settings(payload_encryption_key=KEY))
    assert isinstance(converter.payload_codec, CodecChain)
    assert [type(c) for c in converter.payload_codec.codecs] == [CompressionCodec, EncryptionCodec]
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class
    assert converter.failure_converter_class is DefaultFailureConverterWithEncodedAttributes  # messages name people
    # A bad key stops the worker at start-up (settings validation, or the converter), naming the fix.
    with pytest.raises(ConfigError, match=r"PAYLOAD_ENCRYPTION_KEY(.|\n)*os\.urandom\(32\)"):
        data_converter(make_settings(payload_encryption_key="short"))


# -- a real run with the encrypting converter ----------------------------------------------------------

@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    with processes_in(tmp_path) as procs:
        yield procs


@pytest.fixture
def encrypted_settings() -> Settings:
    return make_settings(payload_encryption_key=KEY)


@pytest.fixture
async def encrypted_client(temporal_env: WorkflowEnvironment, encrypted_settings: Settings) -> AsyncIterator[Client]:
    config = temporal_env.client.config()
    config["data_converter"] = data_converter(encrypted_settings)
    yield Client(**config)


def personal_event(fake: FakeMoodle) -> dict[str, Any]:
    """An event whose personal data is unmistakable in any byte string."""
    event_id = f"enc-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    people = [{"id": f"p-{i}", "username": f"quill{tag}{i}", "email": f"zebulon.{tag}{i}@privacy.example",
               "first_name": f"Ottoline{tag}{i}", "last_name": f"Featherstonehaugh{tag}{i}",
               "role": "instructor" if i == 0 else "student"} for i in range(5)]
    return {"id": event_id, "name": f"Encrypted {event_id}", "slug": f"ws-{event_id}",
            "moodle_course_id": fake.site.template_course_id, "participants": people}


def personal_data(event: dict[str, Any]) -> list[str]:
    return [p[k] for p in event["participants"] for k in ("username", "email", "first_name", "last_name")]


async def test_history_holds_no_personal_data_and_the_codec_server_reads_it(
        temporal_env: WorkflowEnvironment, encrypted_client: Client, encrypted_settings: Settings,
        fake: FakeMoodle, processes: Processes) -> None:
    event = personal_event(fake)
    rejected, newcomer = event["participants"][3], event["participants"][4]
    event["participants"] = event["participants"][:4]
    # One participant is refused by Moodle, so a failure naming them is recorded too.
    await add_moodle_user(fake, username=rejected["username"], email="someone.else@example.com",
                          firstname="Other", lastname="Person")
    async with running_worker(encrypted_client, encrypted_settings, fake):
        handle = await starter.deploy_event(encrypted_client, event, settings=encrypted_settings)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        progress = await starter.get_progress(encrypted_client, event["id"])
        assert (progress.done, progress.failed) == (3, 1)
        await (await starter.add_participant(encrypted_client, event, newcomer, settings=encrypted_settings)).result()
    users = {u.username for u in fake.site.users.values()}
    assert {p["username"] for p in event["participants"] + [newcomer]} - {rejected["username"]} <= users

    # Read with a client WITHOUT the codec, as the server (and anyone with access to it) stores it.
    plain_client = Client(temporal_env.client.service_client, namespace=temporal_env.client.namespace,
                          data_converter=pydantic_data_converter)
    assert plain_client.data_converter.payload_codec is None
    histories = await export_histories(plain_client, f'OpenVLEEventId = "{event["id"]}"',
                                       expect_ids={handle.id, f"moodle-participant-{event['id']}-{newcomer['id']}",
                                                   f"moodle-roster-{event['id']}"})
    assert len(histories) == 3  # the deployment, the add, and the event's roster
    for h in histories:
        for blob in (h.json, h.raw):
            for value in personal_data(event) + personal_data({"participants": [newcomer]}):
                leak = find_secret(blob, value)
                assert leak is None, f"{value!r} in the clear in the history of {h.workflow_id}: ...{leak}..."
    deploy_history = await plain_client.get_workflow_handle(handle.id).fetch_history()
    started = deploy_history.events[0].workflow_execution_started_event_attributes
    (sealed_input,) = started.input.payloads
    assert sealed_input.metadata["encoding"] == b"binary/encrypted"
    assert sealed_input.metadata[KEY_ID_METADATA] == EncryptionCodec.from_key(KEY).key_id.encode()

    # The activities' summaries (the UI's timeline rows) name the participant: sealed like the inputs, and
    # readable with the key.
    sealed_summaries = [e.user_metadata.summary for e in deploy_history.events
                        if e.HasField("activity_task_scheduled_event_attributes")
                        and e.user_metadata.HasField("summary")]
    assert sealed_summaries and {s.metadata["encoding"] for s in sealed_summaries} == {b"binary/encrypted"}
    shown = set(await encrypted_client.data_converter.decode(sealed_summaries, [str] * len(sealed_summaries)))
    first = event["participants"][1]
    assert {f"create account {first['id']} {first['username']}", f"enrol {first['id']} {first['username']} as student",
            } <= shown

    # The codec server (as the Web UI calls it) turns that payload back into the event.
    port = free_port()
    server = processes.add("codec_server", [PYTHON, "-m", "openvle_moodle_sync.codec_server", "--port", str(port)],
                           env={**_env_without_settings(), "PAYLOAD_ENCRYPTION_KEY": KEY})
    server.start()
    server.wait_for_port(port, 20)
    url = f"http://127.0.0.1:{port}"
    headers = {"Origin": UI_ORIGIN, "X-Namespace": "default", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        preflight = await http.options("/decode", headers={
            "Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace"})
        assert preflight.status_code in (200, 204)
        assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
        assert "x-namespace" in preflight.headers["access-control-allow-headers"].lower()
        assert "POST" in preflight.headers["access-control-allow-methods"]

        body = {"payloads": [json_format.MessageToDict(sealed_input)]}
        decoded = await http.post("/decode", json=body, headers=headers)
        assert decoded.status_code == 200, decoded.text
        assert decoded.headers["access-control-allow-origin"] == UI_ORIGIN
        (plain,) = decoded.json()["payloads"]
        assert base64.b64decode(plain["metadata"]["encoding"]) == b"json/plain"
        data = json.loads(base64.b64decode(plain["data"]))
        assert data["event"]["id"] == event["id"]
        assert [p["email"] for p in data["event"]["participants"]] == [p["email"] for p in event["participants"]]

        # /encode then /decode (under a namespace path, as the CLI's --codec-endpoint template makes it).
        encoded = await http.post("/default/encode", json={"payloads": [plain]}, headers=headers)
        (resealed,) = encoded.json()["payloads"]
        assert base64.b64decode(resealed["metadata"]["encoding"]) == b"binary/encrypted"
        again = await http.post("/default/decode", json={"payloads": [resealed]}, headers=headers)
        assert again.json()["payloads"] == [plain]

        # Unencrypted payloads pass; a foreign origin gets no CORS grant; nonsense is a 400, not a crash.
        assert (await http.post("/decode", json={"payloads": [plain]})).json()["payloads"] == [plain]
        foreign = await http.post("/decode", json=body, headers={**headers, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in foreign.headers
        assert (await http.post("/decode", content=b"{not json", headers=headers)).status_code == 400
        assert (await http.get("/decode")).status_code == 405
        assert (await http.post("/other", json=body)).status_code == 404


def _env_without_settings() -> dict[str, str]:
    names = {name.upper() for name in Settings.model_fields}
    return {k: v for k, v in os.environ.items() if k.upper() not in names}


def test_codec_server_with_a_bad_key_says_what_is_wrong(tmp_path: Path) -> None:
    result = subprocess.run([PYTHON, "-m", "openvle_moodle_sync.codec_server", "--port", str(free_port())],
                            env={**_env_without_settings(), "PAYLOAD_ENCRYPTION_KEY": "abc"}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "PAYLOAD_ENCRYPTION_KEY is not valid base64" in result.stderr and "os.urandom(32)" in result.stderr

