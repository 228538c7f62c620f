"""The Moodle client's wire format and error mapping, against answers shaped as Moodle 4.5 gives them."""

from __future__ import annotations

from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from openvle_moodle_sync.moodle import (
    AccessDeniedError,
    InvalidParameterError,
    InvalidTokenError,
    MoodleApiError,
    MoodleClient,
    MoodleConnectionError,
    MoodleError,
    MoodlePHPError,
    MoodleResponseError,
    MoodleTimeoutError,
    check_connection,
)
from openvle_moodle_sync.moodle.protocol import encode_params
from openvle_moodle_sync.settings import REQUIRED_FUNCTIONS

URL = "https://moodle.example.com"
ENDPOINT = f"{URL}/webservice/rest/server.php"
TOKEN = "s3cr3t-token-value"


@pytest.fixture
def moodle() -> MoodleClient:
    return MoodleClient(URL, TOKEN, timeout=2)


def form(request: httpx.Request) -> list[tuple[str, str]]:
    return parse_qsl(request.content.decode(), keep_blank_values=True)


def test_php_form_keys() -> None:
    assert encode_params({"courses": [{"fullname": "A", "visible": False}],
                          "options": {"ids": [2, 3]}, "skip": None, "empty": []}) == [
        ("courses[0][fullname]", "A"), ("courses[0][visible]", "0"), ("options[ids][0]", "2"),
        ("options[ids][1]", "3")]


@respx.mock
async def test_request_is_a_post_form_with_the_token_only_in_the_body(moodle: MoodleClient) -> None:
    route = respx.post(ENDPOINT).mock(return_value=httpx.Response(200, text="null"))
    await moodle.enrol_users([{"roleid": 5, "userid": 7, "courseid": 3}])
    request = route.calls.last.request
    assert request.method == "POST" and str(request.url) == ENDPOINT  # no query string, no token in the URL
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form(request) == [("wstoken", TOKEN), ("wsfunction", "enrol_manual_enrol_users"),
                             ("moodlewsrestformat", "json"), ("enrolments[0][roleid]", "5"),
                             ("enrolments[0][userid]", "7"), ("enrolments[0][courseid]", "3")]


@respx.mock
async def test_duplicate_asks_for_an_empty_copy(moodle: MoodleClient) -> None:
    route = respx.post(ENDPOINT).mock(return_value=httpx.Response(200, json={"id": 9, "shortname": "x"}))
    assert (await moodle.duplicate_course(2, "Name", "x", 1, visible=False))["id"] == 9
    fields = dict(form(route.calls.last.request))
    assert fields["options[0][name]"] == "users" and fields["options[0][value]"] == "0"
    assert fields["visible"] == "0"


@pytest.mark.parametrize(("body", "error_type", "code", "retryable"), [
    ('{"exception":"core\\\\exception\\\\moodle_exception","errorcode":"invalidtoken",'
     '"message":"Invalid token - token not found"}', InvalidTokenError, "invalidtoken", False),
    ('{"exception":"webservice_access_exception","errorcode":"accessexception","message":"Access control exception"}',
     AccessDeniedError, "accessexception", False),
    ('{"exception":"core\\\\exception\\\\invalid_parameter_exception","errorcode":"invalidparameter",'
     '"message":"Invalid parameter value detected","debuginfo":"Email address is invalid"}',
     InvalidParameterError, "invalidparameter", False),
    ('{"exception":"TypeError","message":"core\\\\user::get_name_placeholders(): Argument #1"}',
     MoodlePHPError, None, False),
    ('{"exception":"dml_missing_record_exception","errorcode":"invalidrecord",'
     '"message":"Can\'t find data record in database table course."}', MoodleApiError, "invalidrecord", False),
    ('{"exception":"moodle_exception","errorcode":"sitemaintenance","message":"Site is under maintenance"}',
     MoodleApiError, "sitemaintenance", True),
])
@respx.mock
async def test_moodle_exception_bodies(moodle: MoodleClient, body: str, error_type: type[MoodleApiError],
                                       code: str | None, retryable: bool) -> None:
    respx.post(ENDPOINT).mock(return_value=httpx.Response(200, text=body))
    with pytest.raises(error_type) as caught:
        await moodle.get_site_info()
    error = caught.value
    assert error.errorcode == code and error.retryable is retryable
    assert str(error).startswith(f"Moodle API Error [{code or 'TypeError'}]")
    assert TOKEN not in str(error) and TOKEN not in repr(error)


@respx.mock
async def test_guide_wording_and_fix(moodle: MoodleClient) -> None:
    respx.post(ENDPOINT).mock(return_value=httpx.Response(200, json={
        "exception": "webservice_access_exception", "errorcode": "accessexception",
        "message": "Access control exception"}))
    with pytest.raises(AccessDeniedError) as caught:
        await moodle.create_courses([{"fullname": "A", "shortname": "a", "categoryid": 1}])
    expected = ("Moodle API Error [accessexception]: Access control exception in core_course_create_courses. "
                "The token does not have all required Web Service Functions. Check service configuration")
    assert expected in str(caught.value)


@respx.mock
async def test_token_echoed_by_moodle_is_scrubbed(moodle: MoodleClient) -> None:
    respx.post(ENDPOINT).mock(return_value=httpx.Response(200, json={
        "exception": "moodle_exception", "errorcode": "x", "message": f"bad token {TOKEN}",
        "debuginfo": f"token={TOKEN}"}))
    with pytest.raises(MoodleApiError) as caught:
        await moodle.get_site_info()
    assert TOKEN not in str(caught.value) and TOKEN not in caught.value.message


@respx.mock
async def test_warnings_in_success_bodies(moodle: MoodleClient) -> None:
    respx.post(ENDPOINT).mock(return_value=httpx.Response(200, json={"warnings": [
        {"item": "course", "itemid": 7, "warningcode": "shortnametaken", "message": "Short name is already used"}]}))
    (warning,) = await moodle.update_courses([{"id": 7, "shortname": "taken"}])
    assert (warning.warningcode, warning.itemid) == ("shortnametaken", 7)


@respx.mock
async def test_null_body_is_success(moodle: MoodleClient) -> None:
    respx.post(ENDPOINT).mock(return_value=httpx.Response(200, text="null"))
    await moodle.unenrol_users([{"userid": 1, "courseid": 2}])  # raises on anything but a success body


@pytest.mark.parametrize(("response", "error_type", "retryable"), [
    (httpx.Response(503, text="Service Unavailable"), MoodleConnectionError, True),
    (httpx.Response(429, text="Too Many Requests"), MoodleConnectionError, True),
    (httpx.Response(404, text="<html>Not found</html>"), MoodleResponseError, False),
    (httpx.Response(200, text="<html><body>Login</body></html>"), MoodleResponseError, False),
    (httpx.ConnectError("Connection refused"), MoodleConnectionError, True),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), MoodleConnectionError, True),
    (httpx.ReadTimeout("timed out"), MoodleTimeoutError, True),
])
@respx.mock
async def test_transport_and_http_failures(moodle: MoodleClient, response: object, error_type: type[MoodleError],
                                           retryable: bool) -> None:
    if isinstance(response, Exception):
        respx.post(ENDPOINT).mock(side_effect=response)
    else:
        respx.post(ENDPOINT).mock(return_value=response)
    with pytest.raises(error_type) as caught:
        await moodle.get_site_info()
    assert caught.value.retryable is retryable
    assert str(caught.value).startswith("Failed to connect to Moodle at https://moodle.example.com")
    assert TOKEN not in str(caught.value)


@respx.mock
async def test_connection_check_names_missing_functions(moodle: MoodleClient) -> None:
    respx.post(ENDPOINT).mock(return_value=httpx.Response(200, json={
        "sitename": "Lab", "username": "admin", "release": "4.5 (Build: 20241007)",
        "functions": [{"name": "core_course_get_courses"}, {"name": "core_webservice_get_site_info"}]}))
    report = await check_connection(moodle)
    assert not report.ok and report.release == "4.5 (Build: 20241007)"
    assert report.missing_functions == [f for f in REQUIRED_FUNCTIONS
                                        if f not in ("core_course_get_courses", "core_webservice_get_site_info")]
    assert "lacks 12 required function(s)" in report.summary()
    assert "Moodle" in report.summary()


def test_repr_hides_the_token(moodle: MoodleClient) -> None:
    assert TOKEN not in repr(moodle)
