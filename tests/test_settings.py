"""Settings: the guide's ten variables with their defaults, quoted .env values, and start-up errors that
name the variable and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from openvle_moodle_sync.settings import ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings variables of the calling shell must not change what these tests see."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults_leave_the_integration_off() -> None:
    s = load_settings(_env_file=None)
    assert s.moodle_enabled is False
    assert (s.moodle_verify_ssl, s.moodle_timeout, s.moodle_sync_timeout) == (True, 30.0, 10.0)
    assert (s.moodle_user_match_field, s.moodle_course_visible, s.moodle_delete_course_on_event_delete) == (
        "email", True, False)
    assert (s.moodle_instructor_role_id, s.moodle_student_role_id) == (3, 5)


def test_quoted_env_file_as_in_the_guide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text('MOODLE_ENABLED="True"\nMOODLE_URL="https://moodle.example.com"\nMOODLE_TOKEN="abc123def456"\n'
                   'MOODLE_VERIFY_SSL="True"\nMOODLE_TIMEOUT="30"\nMOODLE_SYNC_TIMEOUT="10"\n'
                   'MOODLE_USER_AUTH="ldap"\nMOODLE_USER_MATCH_FIELD="email"\nMOODLE_COURSE_VISIBLE="True"\n'
                   'MOODLE_DELETE_COURSE_ON_EVENT_DELETE="False"\n')
    monkeypatch.setenv("MOODLE_USER_AUTH", "oauth2")  # the environment wins over .env
    s = load_settings(_env_file=env)
    assert s.moodle_enabled and s.moodle_url == "https://moodle.example.com" and s.moodle_user_auth == "oauth2"
    assert s.moodle_token.get_secret_value() == "abc123def456"
    assert "abc123def456" not in repr(s) and "abc123def456" not in str(s.model_dump())


@pytest.mark.parametrize(("values", "expected"), [
    ({"moodle_enabled": True}, "MOODLE_ENABLED is true but these are not set: MOODLE_URL"),
    ({"moodle_enabled": True, "moodle_url": "https://m.example.com"}, "MOODLE_TOKEN"),
    ({"moodle_url": "https://m.example.com/"}, 'MOODLE_URL: \'https://m.example.com/\' ends with a slash'),
    ({"moodle_url": "moodle.example.com"}, "MOODLE_URL: 'moodle.example.com' is not an http(s) URL"),
    ({"moodle_url": "https://m.example.com/webservice/rest/server.php"}, "must be the site root"),
    ({"moodle_user_match_field": "id"}, 'MOODLE_USER_MATCH_FIELD: must be "email" or "username"'),
    ({"moodle_enabled": "maybe"}, 'MOODLE_ENABLED: must be "True" or "False"'),
    ({"moodle_timeout": "abc"}, "MOODLE_TIMEOUT: must be a number"),
    ({"moodle_sync_timeout": 0}, "MOODLE_SYNC_TIMEOUT: must be a positive number of seconds"),
    ({"moodle_user_auth": "LDAP plugin"}, "MOODLE_USER_AUTH: 'LDAP plugin' is not a Moodle auth plugin name"),
    ({"moodle_student_role_id": 3}, "MOODLE_INSTRUCTOR_ROLE_ID and MOODLE_STUDENT_ROLE_ID are the same role"),
    ({"moodle_max_concurrency": 0}, "MOODLE_MAX_CONCURRENCY: must be between 1 and 500"),
    ({"payload_encryption_key": "short"}, "PAYLOAD_ENCRYPTION_KEY: "),
])
def test_invalid_values_name_the_variable_and_the_fix(values: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(_env_file=None, **values)
    assert expected in str(error.value), str(error.value)


def test_token_never_in_the_error() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(_env_file=None, moodle_token="tok-SECRET-123", moodle_url="bad")
    assert "tok-SECRET-123" not in str(error.value)
