"""Connecting to any Temporal the way the `temporal` CLI does (the SDK's envconfig): TOML profiles,
environment over .env over profile, start-up validation, mTLS end to end through a TLS-terminating proxy
that requires a client certificate, and an API key on the wire as the `authorization` header."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.testing import WorkflowEnvironment

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.settings import ConfigError, Settings, load_settings
from openvle_moodle_sync.temporal_client import connect
from openvle_moodle_sync.temporal_config import resolve
from tests.conftest import make_event, make_settings, running_worker
from tests.test_cli import cli_env, run_cli
from tests.tls_proxy import Pki, TlsProxy, make_pki

API_KEY = "tmprl-test-api-key-5f3a9c0e17"

PROFILES = """
[profile.default]
address = "default.example:7233"
namespace = "ns-default"

[profile.staging]
address = "staging.example:7233"
namespace = "ns-staging"

[profile.cloud]
address = "openvle.a1b2c.tmprl.cloud:7233"
namespace = "openvle.a1b2c"
api_key = "{API_KEY}"
""".replace("{API_KEY}", API_KEY)


@pytest.fixture
def no_temporal_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No TEMPORAL_* variable from the calling environment, no .env, and no CLI config file in the user's
    config directory (XDG_CONFIG_HOME points at an empty directory)."""
    for name in list(os.environ):
        if name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def settings_from_env(**overrides: Any) -> Settings:
    return load_settings(_env_file=None, **overrides)


# --- Where the connection comes from ---------------------------------------------------------------------


def test_nothing_set_is_localhost_default_plaintext(no_temporal_env: pytest.MonkeyPatch) -> None:
    connection = resolve(settings_from_env())
    assert (connection.address, connection.namespace, connection.tls) == ("localhost:7233", "default", False)
    assert connection.credentials() == "no client credentials" and connection.config_file is None
    assert connection.describe() == ("localhost:7233, namespace 'default', plaintext (no TLS), no client "
                                     "credentials; from environment and .env, no config file")


def test_toml_profile_selects_address_and_namespace(no_temporal_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(PROFILES, encoding="utf-8")
    no_temporal_env.setenv("TEMPORAL_CONFIG_FILE", str(config))
    connection = resolve(settings_from_env())
    assert (connection.address, connection.namespace, connection.profile) == (
        "default.example:7233", "ns-default", "default")

    no_temporal_env.setenv("TEMPORAL_PROFILE", "staging")
    connection = resolve(settings_from_env())
    assert (connection.address, connection.namespace) == ("staging.example:7233", "ns-staging")
    assert connection.describe().endswith(f"from profile 'staging' of {config}")

    # A profile with an API key: TLS on, as for Temporal Cloud; the key is sent but never shown.
    no_temporal_env.setenv("TEMPORAL_PROFILE", "cloud")
    connection = resolve(settings_from_env())
    assert (connection.address, connection.namespace) == ("openvle.a1b2c.tmprl.cloud:7233", "openvle.a1b2c")
    assert connection.tls and connection.api_key and connection.credentials() == "API key"
    assert connection.connect_config["api_key"] == API_KEY
    assert API_KEY not in connection.describe() and API_KEY not in repr(connection)


def test_environment_wins_over_dotenv_which_wins_over_the_profile(no_temporal_env: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """.env values (quoted, as in the OpenVLE backend) reach envconfig like environment variables."""
    config = tmp_path / "temporal.toml"
    config.write_text(PROFILES, encoding="utf-8")
    (tmp_path / ".env").write_text(f'TEMPORAL_CONFIG_FILE="{config}"\nTEMPORAL_PROFILE="staging"\n'
                                   'TEMPORAL_NAMESPACE="from-dotenv"\n', encoding="utf-8")
    connection = resolve(load_settings())
    assert (connection.address, connection.namespace) == ("staging.example:7233", "from-dotenv")

    no_temporal_env.setenv("TEMPORAL_NAMESPACE", "from-env")
    no_temporal_env.setenv("TEMPORAL_ADDRESS", "127.0.0.1:7999")
    connection = resolve(load_settings())
    assert (connection.address, connection.namespace, connection.profile) == ("127.0.0.1:7999", "from-env", "staging")


def test_home_in_a_path_is_expanded(no_temporal_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    no_temporal_env.setenv("HOME", str(tmp_path))
    connection = resolve(settings_from_env(temporal_tls_server_ca_cert_path="~/ca.pem"))
    assert connection.server_ca == str(pki.ca_cert) and connection.tls


def test_the_clis_default_config_file_is_read(no_temporal_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    default = tmp_path / "xdg" / "temporalio" / "temporal.toml"
    default.parent.mkdir(parents=True)
    default.write_text(PROFILES, encoding="utf-8")
    connection = resolve(settings_from_env())
    assert connection.address == "default.example:7233" and connection.config_file == str(default)


def test_tls_settings_become_the_clients_tls_config(no_temporal_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    settings = settings_from_env(temporal_tls_client_cert_path=str(pki.client_cert),
                                 temporal_tls_client_key_path=str(pki.client_key),
                                 temporal_tls_server_ca_cert_path=str(pki.ca_cert),
                                 temporal_tls_server_name="localhost")
    connection = resolve(settings)
    tls = connection.connect_config["tls"]
    assert not isinstance(tls, bool)
    assert tls.client_cert == pki.client_cert.read_bytes() and tls.client_private_key == pki.client_key.read_bytes()
    assert tls.server_root_ca_cert == pki.ca_cert.read_bytes() and tls.domain == "localhost"
    assert connection.credentials() == f"mTLS client certificate {pki.client_cert}"
    assert f"TLS (CA {pki.ca_cert}, server name localhost)" in connection.describe()
    # TEMPORAL_TLS="False" turns a profile's TLS off (as for the CLI).
    assert resolve(settings_from_env(temporal_api_key=API_KEY, temporal_tls=False)).tls is False


# --- Start-up validation names the variable and the fix ---------------------------------------------------


@pytest.mark.parametrize(("variables", "expected"), [
    ({"TEMPORAL_TLS_CLIENT_CERT_PATH": "{client_cert}"},
     ["TEMPORAL_TLS_CLIENT_CERT_PATH is set but TEMPORAL_TLS_CLIENT_KEY_PATH is not", "needs both"]),
    ({"TEMPORAL_TLS_CLIENT_KEY_PATH": "{client_key}"},
     ["TEMPORAL_TLS_CLIENT_KEY_PATH is set but TEMPORAL_TLS_CLIENT_CERT_PATH is not"]),
    ({"TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/nonexistent/ca.pem"},
     ["TEMPORAL_TLS_SERVER_CA_CERT_PATH: there is no file at '/nonexistent/ca.pem'"]),
    ({"TEMPORAL_CONFIG_FILE": "/nonexistent/temporal.toml"},
     ["TEMPORAL_CONFIG_FILE: there is no file at '/nonexistent/temporal.toml'"]),
    ({"TEMPORAL_CONFIG_FILE": "{config}", "TEMPORAL_PROFILE": "prod"},
     ["TEMPORAL_PROFILE", "profile 'prod' of", "not found"]),
    ({"TEMPORAL_PROFILE": "prod"}, ["TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE is unset"]),
    ({"TEMPORAL_TLS": "False", "TEMPORAL_TLS_CLIENT_CERT_PATH": "{client_cert}",
      "TEMPORAL_TLS_CLIENT_KEY_PATH": "{client_key}"}, ['TEMPORAL_TLS is "False" but a client certificate is set']),
    ({"TEMPORAL_TLS": "maybe"}, ['TEMPORAL_TLS: must be "True" or "False"']),
])
def test_bad_temporal_settings_name_the_variable(no_temporal_env: pytest.MonkeyPatch, tmp_path: Path,
                                                 variables: dict[str, str], expected: list[str]) -> None:
    pki = make_pki(tmp_path)
    config = tmp_path / "temporal.toml"
    config.write_text(PROFILES, encoding="utf-8")
    paths = {"client_cert": pki.client_cert, "client_key": pki.client_key, "config": config}
    no_temporal_env.setenv("TEMPORAL_API_KEY", API_KEY)
    for name, value in variables.items():
        no_temporal_env.setenv(name, value.format(**paths))
    with pytest.raises(ConfigError) as raised:
        settings_from_env()
    message = str(raised.value)
    for part in expected:
        assert part in message, message
    assert API_KEY not in message


def test_a_profile_naming_a_missing_tls_file_names_the_config_file(no_temporal_env: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text('[profile.default]\naddress = "x:7233"\n[profile.default.tls]\n'
                      'client_cert_path = "/nonexistent/c.pem"\nclient_key_path = "/nonexistent/c.key"\n',
                      encoding="utf-8")
    no_temporal_env.setenv("TEMPORAL_CONFIG_FILE", str(config))
    with pytest.raises(ConfigError, match=r"TEMPORAL_CONFIG_FILE: profile 'default' of .*temporal.toml names "
                                          r"a TLS file .*/nonexistent/c.pem"):
        settings_from_env()


async def test_the_cli_stops_on_a_bad_temporal_setting(tmp_path: Path) -> None:
    env = cli_env(XDG_CONFIG_HOME=str(tmp_path), TEMPORAL_TLS_CLIENT_CERT_PATH=str(tmp_path / "missing.pem"))
    code, out = await run_cli("doctor", env=env)
    assert code == 1 and "FAIL Settings" in out and "TEMPORAL_TLS_CLIENT_CERT_PATH: there is no file" in out
    assert "Traceback" not in out


# --- mTLS end to end: a TLS-terminating proxy with a test CA that requires a client certificate -----------


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
async def mtls_proxy(temporal_env: WorkflowEnvironment, pki: Pki) -> AsyncIterator[TlsProxy]:
    upstream = temporal_env.client.service_client.config.target_host
    async with TlsProxy(upstream, pki, require_client_cert=True).running() as proxy:
        yield proxy


def mtls_env(proxy: TlsProxy, pki: Pki, tmp_path: Path, *, client_cert: bool = True) -> dict[str, str]:
    env = {"TEMPORAL_ADDRESS": proxy.address, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca_cert),
           "TEMPORAL_TLS_SERVER_NAME": "localhost", "XDG_CONFIG_HOME": str(tmp_path)}
    if client_cert:
        env |= {"TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.client_cert),
                "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.client_key)}
    else:
        env["TEMPORAL_TLS"] = "True"
    return cli_env(**env)


async def test_mtls_doctor_connects_with_the_client_certificate(mtls_proxy: TlsProxy, pki: Pki,
                                                                tmp_path: Path) -> None:
    code, out = await run_cli("doctor", env=mtls_env(mtls_proxy, pki, tmp_path))
    assert code == 0, out
    assert f"OK Temporal reachable: {mtls_proxy.address}, namespace 'default', TLS (CA {pki.ca_cert}, " \
           f"server name localhost), mTLS client certificate {pki.client_cert}" in " ".join(out.split())
    assert any(r[":path"].endswith("/DescribeNamespace") for r in mtls_proxy.requests), "doctor bypassed the proxy"


async def test_doctor_connects_through_a_toml_profile(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """TEMPORAL_CONFIG_FILE + TEMPORAL_PROFILE alone lead the CLI to the server (no TEMPORAL_ADDRESS)."""
    config = tmp_path / "temporal.toml"
    address = temporal_env.client.service_client.config.target_host
    config.write_text(PROFILES + f'\n[profile.local]\naddress = "{address}"\nnamespace = "default"\n', encoding="utf-8")
    env = cli_env(TEMPORAL_CONFIG_FILE=str(config), TEMPORAL_PROFILE="local", XDG_CONFIG_HOME=str(tmp_path))
    code, out = await run_cli("doctor", env=env)
    assert code == 0, out
    assert (f"OK Temporal reachable: {address}, namespace 'default', plaintext (no TLS), no client credentials; "
            f"from profile 'local' of {config}") in " ".join(out.split())
    code, out = await run_cli("doctor", env=env | {"TEMPORAL_PROFILE": "staging"})
    assert code == 1 and "Failed to connect to Temporal at staging.example:7233 (namespace 'ns-staging'" in out


async def test_mtls_without_the_client_certificate_fails_in_words(mtls_proxy: TlsProxy, pki: Pki,
                                                                  tmp_path: Path) -> None:
    env = mtls_env(mtls_proxy, pki, tmp_path, client_cert=False)
    code, out = await run_cli("doctor", env=env)
    assert code == 1 and "FAIL Temporal" in out, out
    flat = " ".join(out.split())
    assert f"Failed to connect to Temporal at {mtls_proxy.address}" in flat and "TLS, no client credentials" in flat
    assert "set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH" in flat
    code, out = await run_cli("progress", "--event-id", "42", env=env)
    assert code == 1 and "TEMPORAL_TLS_CLIENT_CERT_PATH" in out
    assert "Traceback" not in out and mtls_proxy.requests == []


async def test_mtls_deploy_through_a_worker_connected_via_the_proxy(mtls_proxy: TlsProxy, pki: Pki,
                                                                     fake: FakeMoodle) -> None:
    settings = make_settings(temporal_address=mtls_proxy.address,
                             temporal_tls_client_cert_path=str(pki.client_cert),
                             temporal_tls_client_key_path=str(pki.client_key),
                             temporal_tls_server_ca_cert_path=str(pki.ca_cert))
    client = await connect(settings)
    event = make_event(fake, participants=5, instructors=1)
    async with running_worker(client, settings, fake):
        handle = await starter.deploy_event(client, event, settings=settings)
        result = await handle.result()
    assert len(result.participants) == 5
    assert result.course_id is not None and len(fake.site.enrolled(result.course_id)) == 5
    paths = {r[":path"].rsplit("/", 1)[-1] for r in mtls_proxy.requests}
    # The deploy reached the event's life through the proxy (signal-with-start), and so did the worker's polls.
    assert {"SignalWithStartWorkflowExecution", "PollWorkflowTaskQueue", "PollActivityTaskQueue"} <= paths


# --- An API key travels as the `authorization` header ----------------------------------------------------


async def test_api_key_reaches_the_server_as_authorization_header(temporal_env: WorkflowEnvironment, pki: Pki,
                                                                  tmp_path: Path) -> None:
    upstream = temporal_env.client.service_client.config.target_host
    async with TlsProxy(upstream, pki, require_client_cert=False).running() as proxy:
        # Control: without a key, no authorization header (so the assertion below can fail).
        plain = await connect(make_settings(temporal_address=proxy.address,
                                            temporal_tls_server_ca_cert_path=str(pki.ca_cert)))
        await plain.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
        assert proxy.requests and all("authorization" not in r for r in proxy.requests)
        proxy.requests.clear()

        # An API key alone turns TLS on (as for Temporal Cloud); here the server's CA is the test CA.
        settings = make_settings(temporal_address=proxy.address, temporal_api_key=API_KEY,
                                 temporal_tls_server_ca_cert_path=str(pki.ca_cert))
        client = await connect(settings)
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
        assert proxy.requests
        assert {r["authorization"] for r in proxy.requests} == {f"Bearer {API_KEY}"}

        env = cli_env(TEMPORAL_ADDRESS=proxy.address, TEMPORAL_API_KEY=API_KEY, XDG_CONFIG_HOME=str(tmp_path),
                      TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(pki.ca_cert))
        code, out = await run_cli("doctor", env=env)
        assert code == 0, out
        assert "API key" in out and API_KEY not in out


async def test_the_api_key_is_in_no_connection_error(tmp_path: Path) -> None:
    from tests.proc import free_port

    settings = make_settings(temporal_address=f"127.0.0.1:{free_port()}", temporal_api_key=API_KEY)
    with pytest.raises(ConnectionError) as raised:
        await connect(settings)
    assert API_KEY not in str(raised.value) and "TEMPORAL_ADDRESS" in str(raised.value)
    code, out = await run_cli("progress", "--event-id", "42", env=cli_env(
        TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}", TEMPORAL_API_KEY=API_KEY, XDG_CONFIG_HOME=str(tmp_path)))
    assert code == 1 and "API key" in out and API_KEY not in out and "Traceback" not in out


async def test_an_untrusted_server_certificate_names_the_ca_setting(mtls_proxy: TlsProxy, pki: Pki) -> None:
    settings = make_settings(temporal_address=mtls_proxy.address,
                             temporal_tls_server_ca_cert_path=str(pki.other_ca_cert),
                             temporal_tls_client_cert_path=str(pki.client_cert),
                             temporal_tls_client_key_path=str(pki.client_key))
    with pytest.raises(ConnectionError) as raised:
        await connect(settings)
    message = str(raised.value)
    assert "the server's certificate is not valid (UnknownIssuer)" in message
    assert "set TEMPORAL_TLS_SERVER_CA_CERT_PATH to that CA" in message and "tonic" not in message
