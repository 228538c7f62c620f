"""MOODLE_UNENROL_ACTION's validation, and the functions each action needs: the connection check (worker
log), ``doctor`` (exit code and wording)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from temporalio.testing import WorkflowEnvironment

from fake_moodle import FakeMoodle
from openvle_moodle_sync.moodle import check_connection
from openvle_moodle_sync.settings import ConfigError
from tests.conftest import EXTENDED_TOKEN, TOKEN, make_settings, moodle_for
from tests.proc import processes_in
from tests.test_cli import moodle_env, run_cli

FIX = "add core_role_assign_roles and core_role_unassign_roles to the service"


def test_action_is_validated_with_the_fix() -> None:
    with pytest.raises(ConfigError) as error:
        make_settings(moodle_unenrol_action="delete")
    assert ('MOODLE_UNENROL_ACTION: must be "unenrol" (the default), "keep", "suspend" or "remove_roles"'
            in str(error.value))
    assert make_settings(moodle_unenrol_action=" Remove_Roles ").moodle_unenrol_action == "remove_roles"
    assert make_settings().moodle_unenrol_action == "unenrol"


@pytest.mark.parametrize(("token", "action", "ok", "missing"), [
    (TOKEN, "unenrol", True, []),
    (TOKEN, "suspend", True, []),
    (TOKEN, "remove_roles", False, ["core_role_assign_roles", "core_role_unassign_roles"]),
    (EXTENDED_TOKEN, "remove_roles", True, []),
])
async def test_connection_check_knows_what_the_action_needs(token: str, action: str, ok: bool,
                                                            missing: list[str]) -> None:
    fake = FakeMoodle(token=TOKEN, extended_token=EXTENDED_TOKEN)
    async with moodle_for(fake, make_settings(moodle_token=token)) as moodle:
        report = await check_connection(moodle, action)
    assert (report.ok, report.missing_for_action, report.missing_functions) == (ok, missing, [])
    assert report.roles_in_place == (token == EXTENDED_TOKEN)
    assert ("which the token's service lacks: " + FIX in report.summary()) == (not ok)
    if ok:
        assert ("swap the role in place" in report.summary()) == (token == EXTENDED_TOKEN)


@pytest.fixture(scope="module")
def moodle_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``python -m fake_moodle`` subprocess with the main and the extended token."""
    with processes_in(tmp_path_factory.mktemp("fake_moodle")) as procs:
        yield procs.fake_moodle(TOKEN, latency_ms=0, extended_token=EXTENDED_TOKEN).url


async def test_doctor_names_the_functions_remove_roles_needs(temporal_env: WorkflowEnvironment,
                                                             moodle_url: str) -> None:
    code, out = await run_cli("doctor", env=moodle_env(temporal_env, moodle_url,
                                                       MOODLE_UNENROL_ACTION="remove_roles"))
    assert code != 0, out
    assert "FAIL Moodle" in out and FIX in out and "MOODLE_UNENROL_ACTION='remove_roles'" in out
    code, out = await run_cli("doctor", env=moodle_env(temporal_env, moodle_url, token=EXTENDED_TOKEN,
                                                       MOODLE_UNENROL_ACTION="remove_roles"))
    assert code == 0, out
    assert "OK   Moodle" in out and "swap the role in place" in out
