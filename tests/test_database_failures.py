"""A failure of Moodle's database, in every form Moodle 4.5 answers it (recorded on the lab with its
PostgreSQL stopped: tests/data/moodle45_database_failures.json), is an outage: retried, errorcode and
message kept. Errors about the data (a missing record) and other PHP errors stay final."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from openvle_moodle_sync.activities.errors import to_application_error
from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
from openvle_moodle_sync.activities.types import EnrolInput
from openvle_moodle_sync.moodle import MoodleApiError, MoodleClient, MoodleDatabaseError, MoodlePHPError
from openvle_moodle_sync.moodle.errors import is_database_failure
from tests.conftest import make_settings

URL = "https://moodle.example.com"
ENDPOINT = f"{URL}/webservice/rest/server.php"
RECORDED: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "moodle45_database_failures.json").read_text())


@pytest.mark.parametrize("case", RECORDED, ids=[f"{c['function']}-{c['body'].get('errorcode') or 'TypeError'}"
                                                for c in RECORDED])
@respx.mock
async def test_recorded_database_failures_are_retryable(case: dict[str, Any]) -> None:
    body = case["body"]
    respx.post(ENDPOINT).mock(return_value=httpx.Response(200, json=body))
    async with MoodleClient(URL, "tok") as moodle:
        with pytest.raises(MoodleDatabaseError) as caught:
            await moodle.call(case["function"])
    error = caught.value
    assert error.retryable
    assert (error.exception, error.errorcode, error.message) == (body["exception"], body.get("errorcode"),
                                                                 body["message"])
    assert case["function"] in str(error) and "\n" not in str(error) and "<p>" not in str(error)
    assert " ".join(re.sub("<[^>]+>", " ", body["message"]).split()) in str(error)  # one line of plain text
    assert "database" in str(error).lower()  # the fix says what failed
    application_error = to_application_error(error)
    assert not application_error.non_retryable
    assert application_error.type == MoodleDatabaseError.__name__


@pytest.mark.parametrize(("exception", "errorcode", "message"), [
    ("dml_transaction_exception", "dmltransactionexception", "Database transaction aborted"),
    ("dml_sessionwait_exception", "sessionwaiterr", "Timed out while waiting for session lock"),
    ("TypeError", None, "mysqli_num_rows(): Argument #1 ($result) must be of type mysqli_result, bool given"),
    ("Error", None, "PDO::query(): SQLSTATE[HY000]: General error: 2006 MySQL server has gone away"),
])
def test_other_database_failures(exception: str, errorcode: str | None, message: str) -> None:
    assert is_database_failure(exception, errorcode, message)


@pytest.mark.parametrize(("body", "error_type"), [
    ({"exception": "dml_missing_record_exception", "errorcode": "invalidrecord",
      "message": "Can't find data record in database table course."}, MoodleApiError),
    ({"exception": "dml_multiple_records_exception", "errorcode": "multiplerecordsfound",
      "message": "Found more than one record in fetch() !"}, MoodleApiError),
    ({"exception": "TypeError", "message": "core_user::get_name_placeholders(): Argument #1 ($user) must be of "
      "type stdClass, bool given"}, MoodlePHPError),
])
@respx.mock
async def test_data_errors_stay_final(body: dict[str, Any], error_type: type[MoodleApiError]) -> None:
    respx.post(ENDPOINT).mock(return_value=httpx.Response(200, json=body))
    async with MoodleClient(URL, "tok") as moodle:
        with pytest.raises(error_type) as caught:
            await moodle.call("enrol_manual_enrol_users")
    assert type(caught.value) is error_type and not caught.value.retryable
    assert to_application_error(caught.value).non_retryable


@respx.mock
async def test_enrol_during_a_database_failure_is_retried_not_a_missing_user() -> None:
    """The TypeError of a dead database connection is not the TypeError of an unknown user on enrol."""
    (pg_error,) = [c["body"] for c in RECORDED if c["body"]["exception"] == "TypeError"][:1]
    respx.post(ENDPOINT).mock(return_value=httpx.Response(200, json=pg_error))
    async with MoodleClient(URL, "tok") as moodle:
        activities = MoodleSyncActivities(moodle, make_settings())
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(activities.enrol_user, EnrolInput(
                course_id=3, user_id=7, role_id=5, other_role_ids=[], participant_id="p-1"))
    assert caught.value.type == MoodleDatabaseError.__name__ and not caught.value.non_retryable
