"""Where this service's Temporal is and how it proves who it is: the SDK's environment configuration
(`temporalio.envconfig`, what the `temporal` CLI reads), fed from the settings.

The settings read the TEMPORAL_* connection variables like every other variable: from the environment
and from `.env` (quoted values; the environment wins), or from `load_settings(...)` arguments. The ones
that are set, and only those, are handed to envconfig as its whole environment. envconfig applies them
over the TOML profile (`TEMPORAL_PROFILE`, default "default", of `TEMPORAL_CONFIG_FILE`, default the CLI's
own file), exactly as the CLI does. So a value means the same in `.env`, in the environment, for the
worker, the CLI and the backend's `connect`, and for `temporal`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr
from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig

from openvle_moodle_sync.settings import TEMPORAL_CONNECTION_FIELDS, ConfigError

if TYPE_CHECKING:
    from openvle_moodle_sync.settings import Settings

#: What the SDK uses when neither a variable nor a profile says otherwise.
DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_PROFILE = "default"


def envconfig_environ(settings: Settings) -> dict[str, str]:
    """The TEMPORAL_* variables that are set, as envconfig reads them (the API key included: it stays in
    this process and goes only into the connection's `authorization` header)."""
    environ: dict[str, str] = {}
    for name in TEMPORAL_CONNECTION_FIELDS:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        environ[name.upper()] = str(value)
    return environ


def default_config_file() -> Path:
    """The TOML file the `temporal` CLI and envconfig read when TEMPORAL_CONFIG_FILE is unset: the user's
    config directory (as Rust's `dirs::config_dir`) / temporalio / temporal.toml."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    return base / "temporalio" / "temporal.toml"


@dataclass(frozen=True)
class TemporalConnection:
    """How the service connects: what `doctor` and the worker's log show, and the arguments of
    `Client.connect` (kept out of the repr: they hold the API key and the client's private key)."""

    address: str
    namespace: str
    tls: bool
    client_cert: str | None
    """Where the mTLS client certificate comes from (a path, or the config file), None without mTLS."""
    api_key: bool
    """Whether an API key is sent (never the key itself)."""
    server_ca: str | None
    server_name: str | None
    profile: str
    config_file: str | None
    """The TOML file that was read, None when there is none."""
    connect_config: ClientConnectConfig = field(repr=False, compare=False)

    def credentials(self) -> str:
        """How the client proves who it is, in words."""
        if self.client_cert and self.api_key:
            return f"mTLS client certificate {self.client_cert} and API key"
        if self.client_cert:
            return f"mTLS client certificate {self.client_cert}"
        if self.api_key:
            return "API key"
        return "no client credentials"

    def describe(self) -> str:
        """One line: address, namespace, TLS and credentials, and the profile and file they came from."""
        if not self.tls:
            transport = "plaintext (no TLS)"
        else:
            details = [f"CA {self.server_ca}" if self.server_ca else "system CAs"]
            if self.server_name:
                details.append(f"server name {self.server_name}")
            transport = f"TLS ({', '.join(details)})"
        source = (f"profile {self.profile!r} of {self.config_file}" if self.config_file
                  else "environment and .env, no config file")
        return (f"{self.address}, namespace {self.namespace!r}, {transport}, {self.credentials()}; "
                f"from {source}")


def resolve(settings: Settings) -> TemporalConnection:
    """The connection the settings describe, through envconfig; `ConfigError` naming what to fix."""
    environ = envconfig_environ(settings)
    config_file = settings.temporal_config_file
    if config_file is None and default_config_file().is_file():
        config_file = str(default_config_file())
    profile_name = settings.temporal_profile or DEFAULT_PROFILE
    try:
        profile = ClientConfigProfile.load(override_env_vars=environ)
    except RuntimeError as error:  # the SDK's ConfigError: a missing profile, a TOML syntax error
        where = config_file or f"{default_config_file()} (TEMPORAL_CONFIG_FILE is unset, and that file is missing)"
        raise ConfigError(
            f"TEMPORAL_PROFILE / TEMPORAL_CONFIG_FILE: profile {profile_name!r} of {where} cannot be used: "
            f"{error}. Name a profile of that file ([profile.NAME]) in TEMPORAL_PROFILE, fix the file, "
            "or unset TEMPORAL_PROFILE"
        ) from None
    try:
        connect_config = profile.to_client_connect_config()  # reads the TLS files
    except OSError as error:
        raise ConfigError(
            f"TEMPORAL_CONFIG_FILE: profile {profile_name!r} of {config_file} names a TLS file that cannot be "
            f"read ({error.filename}: {error.strerror}); fix the path in the file"
        ) from None
    connect_config.setdefault("target_host", DEFAULT_ADDRESS)
    connect_config.setdefault("namespace", DEFAULT_NAMESPACE)
    tls = profile.tls
    client_cert: str | None = None
    if tls is not None and not tls.disabled and tls.client_cert is not None:
        client_cert = str(tls.client_cert) if isinstance(tls.client_cert, Path) else f"(inline in {config_file})"
    server_ca: str | None = None
    if tls is not None and tls.server_root_ca_cert is not None:
        server_ca = (str(tls.server_root_ca_cert) if isinstance(tls.server_root_ca_cert, Path)
                     else f"(inline in {config_file})")
    return TemporalConnection(
        address=connect_config["target_host"],
        namespace=connect_config["namespace"],
        tls=bool(connect_config.get("tls", False)),
        client_cert=client_cert,
        api_key=bool(profile.api_key),
        server_ca=server_ca,
        server_name=tls.server_name if tls is not None else None,
        profile=profile_name,
        config_file=config_file,
        connect_config=connect_config,
    )
