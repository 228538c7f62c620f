"""Configuration of openvle-moodle-sync, from the environment and a ``.env`` file.

The ten ``MOODLE_*`` variables are those of the OpenVLE Moodle integration guide, with its meanings and
defaults (the integration is off unless ``MOODLE_ENABLED`` is true). As in the OpenVLE backend, values in
``.env`` are quoted (``MOODLE_ENABLED="True"``); environment variables win over ``.env``.

Everything is validated when the settings are loaded, and each problem names the variable and the fix,
so a worker with a bad configuration stops at start-up instead of failing mid-deployment.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The web-service functions the token's service must hold (the guide's list, in its order).
REQUIRED_FUNCTIONS: tuple[str, ...] = (
    "core_webservice_get_site_info",
    "core_course_get_courses",
    "core_course_search_courses",
    "core_course_get_courses_by_field",
    "core_course_create_courses",
    "core_course_update_courses",
    "core_course_duplicate_course",
    "core_course_delete_courses",
    "core_course_get_categories",
    "core_enrol_get_enrolled_users",
    "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users",
    "core_user_create_users",
    "core_user_get_users_by_field",
)


#: The Temporal connection settings, each read by envconfig under its upper-case name.
TEMPORAL_CONNECTION_FIELDS: tuple[str, ...] = (
    "temporal_address",
    "temporal_namespace",
    "temporal_api_key",
    "temporal_tls",
    "temporal_tls_client_cert_path",
    "temporal_tls_client_key_path",
    "temporal_tls_server_ca_cert_path",
    "temporal_tls_server_name",
    "temporal_profile",
    "temporal_config_file",
)
#: Those that name a file, checked at start-up.
TEMPORAL_FILE_FIELDS: tuple[str, ...] = (
    "temporal_tls_client_cert_path",
    "temporal_tls_client_key_path",
    "temporal_tls_server_ca_cert_path",
    "temporal_config_file",
)

class UnenrolAction(StrEnum):
    """What taking a person away from a course does (MOODLE_UNENROL_ACTION), as Moodle's enrol_database
    plugin's "External unenrol action" offers."""

    UNENROL = "unenrol"
    """enrol_manual_unenrol_users: Moodle deletes the person's grades in the course."""
    KEEP = "keep"
    """Nothing is written."""
    SUSPEND = "suspend"
    """enrol_manual_enrol_users with suspend=1 and the role they hold (Moodle mails on that call)."""
    REMOVE_ROLES = "remove_roles"
    """core_role_unassign_roles: the enrolment stays, the roles go, no mail."""


class MatchField(StrEnum):
    """The account field that matches an OpenVLE participant with a Moodle user (MOODLE_USER_MATCH_FIELD)."""

    EMAIL = "email"
    USERNAME = "username"


#: Optional functions that give a role in place and take it away (no unenrol, nothing lost, no mail).
ROLE_FUNCTIONS: tuple[str, ...] = ("core_role_assign_roles", "core_role_unassign_roles")

#: The optional functions each MOODLE_UNENROL_ACTION cannot work without (beyond the 14).
FUNCTIONS_BY_ACTION: dict[UnenrolAction, tuple[str, ...]] = {UnenrolAction.REMOVE_ROLES: ROLE_FUNCTIONS}

#: The MOODLE_UNENROL_ACTIONs that leave the enrolment in Moodle (the event's roster marks those people withdrawn).
ENROLMENT_KEPT_ACTIONS: frozenset[UnenrolAction] = frozenset({UnenrolAction.SUSPEND, UnenrolAction.REMOVE_ROLES})


def address_problem(address: str) -> str | None:
    """Why ``address`` is no Temporal address (``host:port``), or None. An address with a scheme is let
    through: the CLI says what to write instead (`temporal_errors.scheme_fix`)."""
    if "://" in address:
        return None
    host, colon, port = address.strip().rpartition(":")
    if colon and host and port.isdigit() and 0 < int(port) < 65536:
        return None
    example = (host if colon and host else address.strip()) or "localhost"
    return (f"{address!r} needs host:port (the port of Temporal's frontend, 7233 by default), "
            f'e.g. TEMPORAL_ADDRESS="{example}:7233"')


class ConfigError(Exception):
    """The configuration is unusable; the message lists each variable and how to fix it."""


FIELDS_PER_ITEM = 7
"""Form fields of the widest coalesced item: an account (username, firstname, lastname, email, auth,
createpassword or password, idnumber); an enrolment has 3 to 6, a role assignment 4, a look-up value 1."""

BATCH_SIZE_DEFAULT = 100
"""MOODLE_BATCH_SIZE's default: 100 accounts are 700 form fields plus the call's 3, within PHP's default
max_input_vars of 1,000 (past it PHP drops fields without a word)."""

BATCH_SIZE_MAX = 1000


class Settings(BaseSettings):
    """All settings of the worker, the starter and the CLI."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    # --- The OpenVLE Moodle integration (the guide's ten variables) ---------------------------------
    moodle_enabled: bool = Field(False, description="Enable Moodle integration")
    moodle_url: str = Field("", description="URL of the Moodle instance (without trailing slash)")
    moodle_token: SecretStr = Field(SecretStr(""), description="Web Services API token")
    moodle_verify_ssl: bool = Field(True, description="Verify the SSL certificate of MOODLE_URL")
    moodle_timeout: float = Field(30.0, description="Timeout for one API request, in seconds")
    moodle_sync_timeout: float = Field(10.0, description="Timeout for one synchronization task, in seconds")
    moodle_user_auth: str = Field("manual", description="Auth plugin of newly created Moodle users")
    moodle_user_match_field: MatchField = Field(
        MatchField.EMAIL, description="Field that matches OpenVLE and Moodle users"
    )
    moodle_course_visible: bool = Field(True, description="Visibility of duplicated Moodle courses")
    moodle_delete_course_on_event_delete: bool = Field(
        False, description="Delete the Moodle course when the event is deleted"
    )

    # --- Extensions of this service ------------------------------------------------------------------
    moodle_instructor_role_id: int = Field(3, description="Moodle role of instructors (Editing Teacher)")
    moodle_student_role_id: int = Field(5, description="Moodle role of students (Student)")
    moodle_max_concurrency: int = Field(
        20, description="Moodle calls one worker keeps in flight at most (its concurrent activities)"
    )
    moodle_batch_size: int = Field(
        BATCH_SIZE_DEFAULT,
        description="Items (accounts, enrolments, look-up values) per coalesced Moodle call (1: no coalescing)",
    )
    moodle_course_timeout: float = Field(
        600.0, description="Timeout for duplicating or deleting one course, in seconds (large courses are slow)"
    )

    moodle_max_removal_percent: float = Field(
        25.0, description="Most of the people this service enrolled in a course that one deploy may take away, in %"
    )

    moodle_retry_max_interval: float = Field(
        60.0, description="Longest wait between two retries of a Moodle call that failed transiently, in seconds"
    )
    moodle_unenrol_action: UnenrolAction = Field(
        UnenrolAction.UNENROL, description="What removing a participant, archiving students and a re-deploy's drops do"
    )

    # --- Temporal ----------------------------------------------------------------------------------
    # The connection variables are those of the `temporal` CLI and the SDK's environment configuration
    # (temporalio.envconfig), with its meanings: unset ones come from the TOML profile, if there is one,
    # else from the SDK's defaults (localhost:7233, namespace "default", plaintext). See temporal_config.py.
    temporal_address: str | None = Field(None, description="host:port of the Temporal frontend")
    temporal_namespace: str | None = Field(None, description="Temporal namespace")
    temporal_task_queue: str = Field("openvle-moodle-sync", description="Task queue of the worker")
    temporal_api_key: SecretStr | None = Field(None, description="API key (Temporal Cloud); turns TLS on")
    temporal_tls: bool | None = Field(None, description="Connect to Temporal with TLS")
    temporal_tls_client_cert_path: str | None = Field(None, description="PEM client certificate (mTLS)")
    temporal_tls_client_key_path: str | None = Field(None, description="PEM private key of the client certificate")
    temporal_tls_server_ca_cert_path: str | None = Field(None, description="PEM CA that signed the server's cert")
    temporal_tls_server_name: str | None = Field(None, description="Server name expected in the server's cert")
    temporal_profile: str | None = Field(None, description="Profile of the TOML config file")
    temporal_config_file: str | None = Field(None, description="TOML config file of the temporal CLI")
    metrics_port: int | None = Field(None, description="Port of the worker's Prometheus metrics (off if unset)")
    payload_encryption_key: SecretStr | None = Field(
        None, description="Base64 key (32 bytes) that encrypts workflow payloads; off if unset"
    )

    @field_validator("moodle_url")
    @classmethod
    def _url_is_a_site_root(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        if value.endswith("/"):
            raise ValueError(
                f"{value!r} ends with a slash; write the site root without it, "
                f"e.g. MOODLE_URL=\"{value.rstrip('/')}\""
            )
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"{value!r} is not an http(s) URL; write the site root, "
                'e.g. MOODLE_URL="https://moodle.example.com"'
            )
        if parts.query or parts.fragment or "server.php" in parts.path:
            raise ValueError(
                f"{value!r} must be the site root, not a page or the web-service endpoint; "
                'e.g. MOODLE_URL="https://moodle.example.com"'
            )
        return value

    @field_validator("moodle_user_auth")
    @classmethod
    def _auth_is_a_plugin_name(cls, value: str) -> str:
        value = value.strip()
        if not value or not value.replace("_", "").isalnum() or value != value.lower():
            raise ValueError(
                f"{value!r} is not a Moodle auth plugin name; use the plugin's folder name, "
                'e.g. MOODLE_USER_AUTH="ldap", "oauth2" or "manual"'
            )
        return value

    @field_validator("moodle_user_match_field", "moodle_unenrol_action", mode="before")
    @classmethod
    def _choice_lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("moodle_timeout", "moodle_sync_timeout", "moodle_course_timeout", "moodle_retry_max_interval")
    @classmethod
    def _positive_seconds(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be a positive number of seconds, e.g. \"30\"")
        return value

    @field_validator("moodle_max_concurrency")
    @classmethod
    def _positive_concurrency(cls, value: int) -> int:
        if not 1 <= value <= 500:
            raise ValueError("must be between 1 and 500, e.g. \"20\"")
        return value

    @field_validator("moodle_batch_size")
    @classmethod
    def _batch_size(cls, value: int) -> int:
        if not 1 <= value <= BATCH_SIZE_MAX:
            raise ValueError(
                f"must be between 1 and {BATCH_SIZE_MAX} items per Moodle call, e.g. \"{BATCH_SIZE_DEFAULT}\"; "
                f"an account takes up to {FIELDS_PER_ITEM} form fields, and PHP drops the fields past its "
                f"max_input_vars (1,000 unless Moodle's php.ini raises it): above "
                f"{(1000 - 3) // FIELDS_PER_ITEM}, raise max_input_vars first")
        return value

    @field_validator("moodle_max_removal_percent")
    @classmethod
    def _percent(cls, value: float) -> float:
        if not 0 <= value <= 100:
            raise ValueError('must be a percentage between 0 and 100, e.g. "25"')
        return value

    @field_validator("moodle_instructor_role_id", "moodle_student_role_id")
    @classmethod
    def _role_id(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be a Moodle role id (a positive number)")
        return value

    @field_validator("payload_encryption_key")
    @classmethod
    def _encryption_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from openvle_moodle_sync.codec import parse_key  # here, not at the top: codec imports this module

            try:
                parse_key(value.get_secret_value())
            except ValueError as error:
                raise ValueError(str(error).removeprefix("PAYLOAD_ENCRYPTION_KEY ")) from None
        return value

    @field_validator(*TEMPORAL_CONNECTION_FIELDS, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `TEMPORAL_API_KEY=""` in .env means "not set", as an unset variable does for the temporal CLI.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("temporal_address")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is not None and (problem := address_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator(*TEMPORAL_FILE_FIELDS)
    @classmethod
    def _file_exists(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()  # `~/...` in .env, where no shell expands it
        if not path.is_file():
            raise ValueError(f"there is no file at {value!r}; give the path of an existing file "
                             "(relative paths start at the directory the process runs in)")
        return str(path)

    @model_validator(mode="after")
    def _temporal_connection(self) -> Settings:
        from openvle_moodle_sync.temporal_config import resolve  # here: it imports this module

        cert, key = self.temporal_tls_client_cert_path, self.temporal_tls_client_key_path
        if (cert is None) != (key is None):
            given, missing = (("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH") if key is None
                              else ("TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_CLIENT_CERT_PATH"))
            raise ValueError(f"{given} is set but {missing} is not; mTLS needs both, the client certificate "
                             "and its private key (PEM files)")
        if self.temporal_tls is False and cert is not None:
            raise ValueError('TEMPORAL_TLS is "False" but a client certificate is set '
                             '(TEMPORAL_TLS_CLIENT_CERT_PATH); set TEMPORAL_TLS="True" or leave it unset for mTLS')
        try:
            connection = resolve(self)
        except ConfigError as error:
            raise ValueError(str(error)) from None
        if self.temporal_address is None and (problem := address_problem(connection.address)):
            raise ValueError(f"TEMPORAL_PROFILE / TEMPORAL_CONFIG_FILE: the address of profile {connection.profile!r} "
                             f"of {connection.config_file}: {problem}; fix it in the file or set TEMPORAL_ADDRESS")
        return self

    @model_validator(mode="after")
    def _enabled_needs_connection(self) -> Settings:
        if self.moodle_enabled:
            missing = []
            if not self.moodle_url:
                missing.append('MOODLE_URL (the site root, e.g. "https://moodle.example.com")')
            if not self.moodle_token.get_secret_value().strip():
                missing.append("MOODLE_TOKEN (a web-service token; see docs/configuration.md, 'Connect a real Moodle')")
            if missing:
                raise ValueError(
                    "MOODLE_ENABLED is true but these are not set: " + "; ".join(missing)
                    + '. Set them, or set MOODLE_ENABLED="False"'
                )
        if self.moodle_instructor_role_id == self.moodle_student_role_id:
            raise ValueError(
                "MOODLE_INSTRUCTOR_ROLE_ID and MOODLE_STUDENT_ROLE_ID are the same role; "
                "instructors are Editing Teachers (3) and students Students (5) on a standard Moodle"
            )
        return self


def _choices(choices: type[StrEnum], example: str = "") -> str:
    """'must be "a" (the default), "b" or "c"', the first choice being the default (named with an example)."""
    quoted = [f'"{c}"' for c in choices]
    quoted[0] += " (the default)" if example else ""
    words = f"must be {', '.join(quoted[:-1])} or {quoted[-1]}"
    return f"{words}, e.g. {example}" if example else words


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        variable = "_".join(str(part) for part in item["loc"]).upper() or "configuration"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "bool_parsing":
            message = 'must be "True" or "False"'
        elif item["type"] == "enum" and variable == "MOODLE_USER_MATCH_FIELD":
            message = _choices(MatchField)
        elif item["type"] == "enum" and variable == "MOODLE_UNENROL_ACTION":
            message = _choices(UnenrolAction, example=f'{variable}="{UnenrolAction.REMOVE_ROLES}"')
        elif item["type"] in ("float_parsing", "int_parsing"):
            message = "must be a number"
        prefix = "" if variable == "configuration" else f"{variable}: "
        lines.append(f"  - {prefix}{message}")
    return "Invalid configuration (environment or .env):\n" + "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Load and validate the settings; raise `ConfigError` naming each bad variable and its fix."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (loaded once)."""
    return load_settings()
