"""moodle.MoodleClient against a real Moodle: each of the 14 functions, the error shapes, the connection check."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from openvle_moodle_sync.moodle import (
    AccessDeniedError,
    InvalidParameterError,
    InvalidTokenError,
    MoodleApiError,
    MoodleClient,
    MoodleConnectionError,
    MoodlePHPError,
    check_connection,
)
from openvle_moodle_sync.settings import REQUIRED_FUNCTIONS
from tests.live.conftest import LIVE, PASSWORD, Live

pytestmark = LIVE

STUDENT, TEACHER = 5, 3
UNKNOWN_ID = 999999
UNKNOWN_USER_ID = 999999999


@pytest.fixture(scope="module")
async def account(live: Live, moodle: MoodleClient) -> dict[str, Any]:
    """One account for the client tests (with a password: no mail). Accounts cannot be deleted via the API."""
    username = live.name("c1")
    existing = await moodle.get_users_by_field("username", [username])
    if existing:
        return dict(existing[0])
    created = await moodle.create_users([{
        "username": username, "password": PASSWORD, "firstname": "Ovlt", "lastname": "Client",
        "email": live.email("c1"), "auth": "manual",
    }])
    assert len(created) == 1 and created[0]["username"] == username and isinstance(created[0]["id"], int)
    (user,) = await moodle.get_users_by_field("username", [username])
    return dict(user)


@pytest.fixture
async def course(live: Live, moodle: MoodleClient, template: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """A fresh empty course with the session prefix, deleted afterwards."""
    shortname = live.name(f"c-{uuid.uuid4().hex[:6]}")
    (made,) = await moodle.create_courses([{
        "fullname": f"{shortname} live client test", "shortname": shortname,
        "categoryid": template["categoryid"], "visible": 1,
    }])
    live.made_courses.add(made["id"])
    yield {"id": made["id"], "shortname": made["shortname"]}
    if await moodle.get_courses_by_field("id", made["id"]):
        await moodle.delete_courses([made["id"]])


# --- read functions -----------------------------------------------------------------------------------


async def test_site_info(moodle: MoodleClient) -> None:
    info = await moodle.get_site_info()
    assert isinstance(info["sitename"], str) and info["release"] and isinstance(info["userid"], int)
    # No defined order: compare as a set.
    assert set(REQUIRED_FUNCTIONS) <= {f["name"] for f in info["functions"]}


async def test_course_reads(live: Live, moodle: MoodleClient, template: dict[str, Any]) -> None:
    assert template["id"] == live.template_id and template["shortname"]

    everything = await moodle.get_courses()
    assert any(c["format"] == "site" for c in everything)  # the site course comes with no options
    assert live.template_id in {c["id"] for c in everything}

    (by_id,) = await moodle.get_courses_by_field("id", live.template_id)
    assert (by_id["shortname"], by_id["fullname"]) == (template["shortname"], template["fullname"])
    by_shortname = await moodle.get_courses_by_field("shortname", template["shortname"])
    assert [c["id"] for c in by_shortname] == [live.template_id]
    assert await moodle.get_courses_by_field("shortname", live.name("no-such-course")) == []
    assert await moodle.get_courses_by_field("id", UNKNOWN_ID) == []
    assert await moodle.get_courses([UNKNOWN_ID]) == []

    found = await moodle.search_courses(template["shortname"])
    assert found["total"] >= 1 and found["warnings"] == []
    assert live.template_id in {c["id"] for c in found["courses"]}

    (category,) = await moodle.get_categories({"id": str(template["categoryid"])})
    assert category["id"] == template["categoryid"] and isinstance(category["name"], str)
    assert any(c["id"] == template["categoryid"] for c in await moodle.get_categories())


async def test_users_by_field(live: Live, moodle: MoodleClient, account: dict[str, Any]) -> None:
    (by_username,) = await moodle.get_users_by_field("username", [account["username"]])
    assert by_username["id"] == account["id"] and by_username["email"] == live.email("c1")
    assert by_username["auth"] == "manual"
    (by_email,) = await moodle.get_users_by_field("email", [live.email("c1")])
    assert by_email["id"] == account["id"]
    assert await moodle.get_users_by_field("email", [live.email("nobody")]) == []
    # Email matching is exact: the upper-case form finds nobody.
    assert await moodle.get_users_by_field("email", [live.email("c1").upper()]) == []


async def test_create_user_with_taken_username_is_rejected(live: Live, moodle: MoodleClient,
                                                           account: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterError) as error:
        await moodle.create_users([{
            "username": account["username"], "password": PASSWORD, "firstname": "X", "lastname": "Y",
            "email": live.email("c1-other"), "auth": "manual",
        }])
    assert error.value.errorcode == "invalidparameter" and not error.value.retryable
    assert await moodle.get_users_by_field("email", [live.email("c1-other")]) == []


async def test_email_with_long_local_part_is_rejected_by_moodle(live: Live, moodle: MoodleClient) -> None:
    """Moodle validates emails with PHP's filter_var: a local part over 64 characters is refused."""
    email = f"{live.prefix}{'x' * (65 - len(live.prefix))}@example.com"
    with pytest.raises(InvalidParameterError):
        await moodle.create_users([{
            "username": live.name("longmail"), "password": PASSWORD, "firstname": "X", "lastname": "Y",
            "email": email, "auth": "manual",
        }])
    assert await moodle.get_users_by_field("username", [live.name("longmail")]) == []


# --- write functions --------------------------------------------------------------------------------


async def test_course_write_cycle(live: Live, moodle: MoodleClient, template: dict[str, Any]) -> None:
    shortname = live.name("w1")
    (made,) = await moodle.create_courses([{
        "fullname": f"{shortname} write cycle", "shortname": shortname, "categoryid": template["categoryid"],
        "idnumber": live.name("w1-idn"), "summary": "live test", "visible": 1,
    }])
    live.made_courses.add(made["id"])
    assert made["shortname"] == shortname

    with pytest.raises(MoodleApiError) as taken:
        await moodle.create_courses([{"fullname": "x", "shortname": shortname, "categoryid": template["categoryid"]}])
    assert taken.value.errorcode == "shortnametaken" and not taken.value.retryable

    assert await moodle.update_courses([{"id": made["id"], "visible": 0, "fullname": f"{shortname} hidden"}]) == []
    (after,) = await moodle.get_courses_by_field("id", made["id"])
    assert (after["visible"], after["fullname"], after["idnumber"]) == (0, f"{shortname} hidden", live.name("w1-idn"))
    warnings = await moodle.update_courses([{"id": made["id"], "shortname": template["shortname"]}])
    assert [w.warningcode for w in warnings] == ["shortnametaken"]
    assert (await moodle.get_courses_by_field("id", made["id"]))[0]["shortname"] == shortname

    copy = await moodle.duplicate_course(live.template_id, f"{live.name('w1-copy')} copy", live.name("w1-copy"),
                                         template["categoryid"], visible=False, include_users=False, timeout=600)
    live.made_courses.add(copy["id"])
    assert copy["shortname"] == live.name("w1-copy") and isinstance(copy["id"], int)
    (dup,) = await moodle.get_courses_by_field("id", copy["id"])
    assert (dup["visible"], dup["categoryid"], dup["format"]) == (0, template["categoryid"], template["format"])
    assert await moodle.get_enrolled_users(copy["id"]) == []  # users=0: no participants copied

    assert await moodle.delete_courses([made["id"], copy["id"]], timeout=600) == []
    assert await moodle.get_courses_by_field("id", made["id"]) == []
    assert await moodle.get_courses([copy["id"]]) == []
    again = await moodle.delete_courses([made["id"]])
    assert [w.warningcode for w in again] == ["unknowncourseidnumber"]


async def test_enrolment_cycle(moodle: MoodleClient, account: dict[str, Any], course: dict[str, Any]) -> None:
    user_id, course_id = account["id"], course["id"]
    assert await moodle.get_enrolled_users(course_id) == []
    await moodle.enrol_users([{"roleid": STUDENT, "userid": user_id, "courseid": course_id}])
    await moodle.enrol_users([{"roleid": STUDENT, "userid": user_id, "courseid": course_id}])  # repeat: no error
    (enrolled,) = await moodle.get_enrolled_users(course_id, userfields=["id", "username", "email", "roles"],
                                                  limitfrom=0, limitnumber=1000)
    assert enrolled["id"] == user_id and enrolled["username"] == account["username"]
    assert [r["roleid"] for r in enrolled["roles"]] == [STUDENT]
    active = await moodle.get_enrolled_users(course_id, onlyactive=True)
    assert [u["id"] for u in active] == [user_id]

    # Another role: the user holds both; unenrol removes the enrolment with all its roles.
    await moodle.enrol_users([{"roleid": TEACHER, "userid": user_id, "courseid": course_id}])
    (both,) = await moodle.get_enrolled_users(course_id)
    assert sorted(r["roleid"] for r in both["roles"]) == [TEACHER, STUDENT]
    await moodle.unenrol_users([{"userid": user_id, "courseid": course_id}])
    assert await moodle.get_enrolled_users(course_id) == []
    await moodle.unenrol_users([{"userid": user_id, "courseid": course_id}])  # idempotent


# --- error shapes -----------------------------------------------------------------------------------


async def test_wrong_token(live: Live) -> None:
    async with live.client(token="0" * 32) as wrong:
        with pytest.raises(InvalidTokenError) as error:
            await wrong.get_site_info()
    assert error.value.errorcode == "invalidtoken" and not error.value.retryable
    assert "0" * 32 not in str(error.value)


async def test_limited_token_is_denied_write_functions(live: Live) -> None:
    if not live.limited_token:
        pytest.skip("MOODLE_TEST_LIMITED_TOKEN is not set")
    async with live.client(token=live.limited_token) as limited:
        assert (await limited.get_site_info())["release"]
        with pytest.raises(AccessDeniedError) as error:
            await limited.create_courses([{"fullname": "never", "shortname": live.name("never"), "categoryid": 1}])
    assert error.value.errorcode == "accessexception" and not error.value.retryable


async def test_bad_parameter(moodle: MoodleClient) -> None:
    with pytest.raises(InvalidParameterError) as error:
        await moodle.call("core_course_search_courses", {"criterianame": "nonsense", "criteriavalue": "x"})
    assert error.value.errorcode == "invalidparameter" and not error.value.retryable


async def test_unknown_course_and_user(moodle: MoodleClient, account: dict[str, Any], course: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterError) as enrol_unknown_course:
        await moodle.enrol_users([{"roleid": STUDENT, "userid": account["id"], "courseid": UNKNOWN_ID}])
    assert enrol_unknown_course.value.errorcode == "invalidparameter"

    with pytest.raises(MoodleApiError) as list_unknown_course:
        await moodle.get_enrolled_users(UNKNOWN_ID)
    assert list_unknown_course.value.errorcode == "invalidrecord"

    with pytest.raises(MoodlePHPError) as enrol_unknown_user:
        await moodle.enrol_users([{"roleid": STUDENT, "userid": UNKNOWN_USER_ID, "courseid": course["id"]}])
    assert enrol_unknown_user.value.errorcode is None and enrol_unknown_user.value.exception == "TypeError"
    assert await moodle.get_enrolled_users(course["id"]) == []

    with pytest.raises(MoodleApiError) as dup_unknown:
        await moodle.duplicate_course(UNKNOWN_ID, "x", "x", 1)
    assert dup_unknown.value.errorcode == "invalidcourseid"

    for error in (enrol_unknown_course, list_unknown_course, enrol_unknown_user, dup_unknown):
        assert not error.value.retryable


async def test_connection_error_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port is closed now: nothing listens there.
    async with MoodleClient(f"http://127.0.0.1:{port}", "secret-token-123", timeout=5) as closed:
        with pytest.raises(MoodleConnectionError) as error:
            await closed.get_site_info()
    assert error.value.retryable and "secret-token-123" not in str(error.value)


# --- the connection check ---------------------------------------------------------------------------


async def test_connection_check(moodle: MoodleClient) -> None:
    report = await check_connection(moodle)
    info = await moodle.get_site_info()
    assert report.ok and report.missing_functions == [] and report.error is None
    assert report.release == info["release"] and report.release
    assert report.release in report.summary()


async def test_connection_check_names_missing_functions(live: Live) -> None:
    if not live.limited_token:
        pytest.skip("MOODLE_TEST_LIMITED_TOKEN is not set")
    async with live.client(token=live.limited_token) as limited:
        report = await check_connection(limited)
    expected = [f for f in REQUIRED_FUNCTIONS if f not in ("core_webservice_get_site_info", "core_course_get_courses")]
    assert not report.ok and report.release
    assert report.missing_functions == expected and len(expected) == 12
    assert all(name in report.summary() for name in expected)


async def test_wrong_token_in_connection_check(live: Live) -> None:
    async with live.client(token="0" * 32) as wrong:
        report = await check_connection(wrong)
    assert not report.ok and report.error and "invalidtoken" in report.error
