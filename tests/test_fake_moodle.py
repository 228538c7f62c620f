"""The Moodle simulator's state, behaviour and fault injection (the transcript replay is test_contract.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from fake_moodle import FakeMoodle
from fake_moodle.forms import parse_form
from tests.proc import ROOT, free_port

REST = "/webservice/rest/server.php"


class Client:
    """A thin Moodle REST client over any httpx transport."""

    def __init__(self, http: httpx.AsyncClient, token: str = "T") -> None:
        self.http = http
        self.token = token

    async def raw(self, function: str, token: str | None = None, /, **params: Any) -> httpx.Response:
        data = {"wstoken": token or self.token, "wsfunction": function, "moodlewsrestformat": "json"}
        data.update({k: str(v) for k, v in params.items()})
        return await self.http.post(REST, data=data)

    async def __call__(self, function: str, token: str | None = None, /, **params: Any) -> Any:
        response = await self.raw(function, token, **params)
        assert response.status_code == 200
        return response.json()


def form(prefix: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {f"{prefix}[{i}][{k}]": v for i, item in enumerate(items) for k, v in item.items()}


@pytest.fixture
def fake() -> FakeMoodle:
    return FakeMoodle(token="T", limited_token="L")


@pytest.fixture
async def moodle(fake: FakeMoodle) -> AsyncIterator[Client]:
    transport = httpx.ASGITransport(app=fake)
    async with httpx.AsyncClient(transport=transport, base_url="http://moodle.test") as http:
        yield Client(http)


async def create_user(moodle: Client, name: str) -> int:
    user = {
        "username": name,
        "firstname": name.title(),
        "lastname": "Lab",
        "email": f"{name}@example.com",
        "password": "Passw0rd!x",
    }
    answer = await moodle("core_user_create_users", **form("users", [user]))
    return answer[0]["id"]


async def create_course(moodle: Client, shortname: str) -> int:
    course = {"fullname": shortname.upper(), "shortname": shortname, "categoryid": 1}
    answer = await moodle("core_course_create_courses", **form("courses", [course]))
    return answer[0]["id"]


async def enrol(moodle: Client, course_id: int, user_id: int, role: int = 5, **extra: Any) -> Any:
    return await moodle(
        "enrol_manual_enrol_users",
        **form("enrolments", [{"roleid": role, "userid": user_id, "courseid": course_id, **extra}]),
    )


# -- the starting site ---------------------------------------------------------------------------------


def test_starting_site(fake: FakeMoodle) -> None:
    site = fake.site
    template = site.courses[site.template_course_id]
    assert (template.id, template.shortname, template.fullname, template.idnumber) == (
        2,
        "tpl-demo",
        "Demo Template",
        "tpl-demo",
    )
    assert template.category_id == 2 and template.visible == 1 and template.numsections == 4
    assert site.course_by_shortname("tpl-demo") is template
    assert site.categories[2].name == "Templates" and site.categories[2].idnumber == "templates"
    assert site.courses[1].format == "site"
    admin, guest = site.user_by_username("admin"), site.user_by_username("guest")
    assert admin is not None and admin.id == 2
    assert guest is not None and guest.id == 1
    assert site.enrolled(2) == {}
    assert (site.next_course_id, site.next_user_id) == (3, 3)


def test_template_can_be_named() -> None:
    fake = FakeMoodle(template_shortname="tpl-linux-101", template_fullname="Linux 101 Template")
    template = fake.site.course_by_shortname("tpl-linux-101")
    assert template is not None and template.fullname == "Linux 101 Template"


def test_php_form_keys() -> None:
    pairs = [
        ("a[0][b]", "x"),
        ("a[0][c]", "y"),
        ("a[1][b]", "z"),
        ("o[ids][0]", "2"),
        ("s", "v"),
        ("l[]", "1"),
    ]
    assert parse_form(pairs) == {
        "a": [{"b": "x", "c": "y"}, {"b": "z"}],
        "o": {"ids": ["2"]},
        "s": "v",
        "l": ["1"],
    }


# -- protocol ------------------------------------------------------------------------------------------


async def test_tokens_and_services(moodle: Client) -> None:
    info = await moodle("core_webservice_get_site_info")
    assert len(info["functions"]) == 14 and info["release"] == "4.5 (Build: 20241007)"
    limited = await moodle("core_webservice_get_site_info", "L")
    assert {f["name"] for f in limited["functions"]} == {
        "core_webservice_get_site_info",
        "core_course_get_courses",
    }
    assert (await moodle("core_course_create_courses", "L"))["errorcode"] == "accessexception"
    assert (await moodle("core_webservice_get_site_info", "nope"))["errorcode"] == "invalidtoken"
    assert (await moodle("core_user_delete_users"))["errorcode"] == "accessexception"
    assert (await moodle("core_course_no_such_function"))["errorcode"] == "invalidrecord"
    unexpected = await moodle("core_course_get_courses_by_field", field="id", value="2", extra="1")
    assert unexpected["errorcode"] == "invalidparameter"


async def test_xml_without_format(moodle: Client) -> None:
    response = await moodle.http.post(
        REST, data={"wstoken": "T", "wsfunction": "core_webservice_get_site_info"}
    )
    assert response.text.startswith('<?xml version="1.0" encoding="UTF-8" ?>\n<RESPONSE>\n<SINGLE>')
    assert '<KEY name="userhomepageurl"><VALUE null="null"/>' in response.text
    bad = await moodle.http.post(REST, data={"wstoken": "x", "wsfunction": "core_webservice_get_site_info"})
    assert "<ERRORCODE>invalidtoken</ERRORCODE>" in bad.text


async def test_debug_adds_debuginfo() -> None:
    fake = FakeMoodle(token="T", debug=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake), base_url="http://m") as http:
        answer = await Client(http)(
            "core_user_get_users_by_field", field="username", **{"values[0]": "ADMIN"}
        )
    assert answer["debuginfo"] == "The field 'username' value is invalid: ADMIN(cleaned value: admin)"


# -- courses -------------------------------------------------------------------------------------------


async def test_course_lifecycle(moodle: Client, fake: FakeMoodle) -> None:
    course_id = await create_course(moodle, "c-one")
    created = fake.site.course_by_shortname("c-one")
    assert created is not None and created.id == course_id == 3
    taken = await moodle(
        "core_course_create_courses",
        **form("courses", [{"fullname": "x", "shortname": "c-one", "categoryid": 1}]),
    )
    assert taken["errorcode"] == "shortnametaken"
    upper = await create_course(moodle, "C-ONE")  # letter case makes a different shortname
    assert upper != course_id
    update = await moodle(
        "core_course_update_courses",
        **form("courses", [{"id": course_id, "visible": 0}, {"id": 999, "fullname": "g"}]),
    )
    assert [w["warningcode"] for w in update["warnings"]] == ["invalidrecord"]
    assert fake.site.courses[course_id].visible == 0
    found = await moodle("core_course_search_courses", criterianame="search", criteriavalue="C-ONE")
    assert found["total"] == 2
    deleted = await moodle("core_course_delete_courses", **{"courseids[0]": course_id, "courseids[1]": 999})
    assert [w["warningcode"] for w in deleted["warnings"]] == ["unknowncourseidnumber"]
    assert course_id not in fake.site.courses


async def test_course_batch_is_atomic(moodle: Client, fake: FakeMoodle) -> None:
    courses = [
        {"fullname": "A", "shortname": "batch-a", "categoryid": 1},
        {"fullname": "B", "shortname": "tpl-demo", "categoryid": 1},
    ]
    answer = await moodle("core_course_create_courses", **form("courses", courses))
    assert answer["errorcode"] == "shortnametaken"
    assert fake.site.course_by_shortname("batch-a") is None


async def test_duplicate_copies_participants_unless_users_0(moodle: Client, fake: FakeMoodle) -> None:
    source = await create_course(moodle, "src")
    active, suspended = await create_user(moodle, "gina"), await create_user(moodle, "hank")
    await enrol(moodle, source, active)
    await enrol(moodle, source, suspended, suspend=1)
    base = {"courseid": source, "fullname": "Copy", "categoryid": 2}
    copy = await moodle("core_course_duplicate_course", shortname="copy-all", **base)
    empty = await moodle(
        "core_course_duplicate_course",
        shortname="copy-none",
        visible=0,
        **base,
        **{"options[0][name]": "users", "options[0][value]": "0"},
    )
    assert fake.site.enrolled(copy["id"]) == fake.site.enrolled(source)
    assert fake.site.enrolled(copy["id"])[suspended].suspended
    assert fake.site.enrolled(empty["id"]) == {}
    assert fake.site.courses[empty["id"]].visible == 0 and fake.site.courses[copy["id"]].idnumber == ""
    assert fake.site.courses[copy["id"]].manual_enrol
    assert fake.site.messages == []
    taken = await moodle("core_course_duplicate_course", shortname="tpl-demo", **base)
    assert taken["message"] == "Short name is already used for another course (Demo Template)"


# -- users ---------------------------------------------------------------------------------------------


async def test_create_user_checks(moodle: Client, fake: FakeMoodle) -> None:
    await create_user(moodle, "alice")

    async def attempt(**user: Any) -> Any:
        base = {"username": "zed", "firstname": "Z", "lastname": "Z", "email": "zed@example.com"}
        return await moodle("core_user_create_users", **form("users", [{**base, **user}]))

    for bad in (
        {"email": "not-an-email", "password": "Passw0rd!x"},
        {"username": "alice", "password": "Passw0rd!x"},
        {"email": "ALICE@example.com", "password": "Passw0rd!x"},
        {"username": "Zed", "password": "Passw0rd!x"},
        {"auth": "nosuchauth", "password": "Passw0rd!x"},
        {"auth": "manual"},
    ):
        assert (await attempt(**bad))["errorcode"] == "invalidparameter", bad
    weak = await attempt(password="abc")
    assert weak["errorcode"].startswith("<div>Passwords must be at least 8 characters long.</div>")
    assert (await attempt(auth="ldap"))[0]["username"] == "zed"
    assert fake.site.messages == []
    carol = await moodle(
        "core_user_create_users",
        **form(
            "users",
            [
                {
                    "username": "carol",
                    "firstname": "C",
                    "lastname": "L",
                    "email": "c@x.org",
                    "createpassword": 1,
                }
            ],
        ),
    )
    assert [(m.kind, m.user_id) for m in fake.site.messages] == [("newuser", carol[0]["id"])]


async def test_get_users_by_field(moodle: Client) -> None:
    await create_user(moodle, "bob")
    assert (
        len(await moodle("core_user_get_users_by_field", field="email", **{"values[0]": "bob@example.com"}))
        == 1
    )
    assert (
        await moodle("core_user_get_users_by_field", field="email", **{"values[0]": "BOB@EXAMPLE.COM"}) == []
    )
    upper = await moodle("core_user_get_users_by_field", field="username", **{"values[0]": "BOB"})
    assert upper["errorcode"] == "invalidparameter"
    other = await moodle("core_user_get_users_by_field", field="firstname", **{"values[0]": "Bob"})
    assert other["errorcode"] == "codingerror"


# -- enrolments ----------------------------------------------------------------------------------------


async def test_enrolment_semantics(moodle: Client, fake: FakeMoodle) -> None:
    course = await create_course(moodle, "enrol-c")
    alice, bob = await create_user(moodle, "alice"), await create_user(moodle, "bob")
    assert await enrol(moodle, course, alice) is None
    await enrol(moodle, course, alice)  # same role again: no change
    await enrol(moodle, course, alice, role=4)  # other role: added
    assert fake.site.enrolled(course)[alice].roles == {4, 5}
    await enrol(moodle, course, bob, suspend=1)
    assert fake.site.enrolled(course)[bob].suspended
    active = await moodle(
        "core_enrol_get_enrolled_users",
        courseid=course,
        **{"options[0][name]": "onlyactive", "options[0][value]": 1},
    )
    assert [u["id"] for u in active] == [alice]
    await enrol(moodle, course, bob)  # leaving out suspend re-activates
    assert not fake.site.enrolled(course)[bob].suspended
    assert (await enrol(moodle, course, bob, role=7))["errorcode"] == "wsusercannotassign"
    assert (await enrol(moodle, 999, bob))["errorcode"] == "invalidparameter"
    assert (await enrol(moodle, 1, bob))["errorcode"] == "wsnoinstance"
    ghost = await moodle(
        "enrol_manual_enrol_users",
        **form(
            "enrolments",
            [{"roleid": 5, "userid": bob, "courseid": 2}, {"roleid": 5, "userid": 999, "courseid": 2}],
        ),
    )
    assert ghost["exception"] == "TypeError" and "errorcode" not in ghost
    assert fake.site.enrolled(2) == {}  # the batch was rolled back
    unenrol = form("enrolments", [{"userid": alice, "courseid": course, "roleid": 4}])
    assert await moodle("enrol_manual_unenrol_users", **unenrol) is None
    assert await moodle("enrol_manual_unenrol_users", **unenrol) is None  # idempotent
    assert alice not in fake.site.enrolled(course)


async def test_welcome_messages(moodle: Client, fake: FakeMoodle) -> None:
    course = await create_course(moodle, "welcome-c")
    student, teacher = await create_user(moodle, "stu"), await create_user(moodle, "tea")
    await enrol(moodle, course, student)
    assert fake.site.messages == []  # no teacher yet
    await enrol(moodle, course, teacher, role=3)
    assert fake.site.messages == []  # teachers get none
    await enrol(moodle, course, student)
    await enrol(moodle, course, student, suspend=1)
    await enrol(moodle, course, student)
    assert [(m.kind, m.user_id, m.course_id) for m in fake.site.messages] == [
        ("welcome", student, course)
    ] * 3
    assert fake.site.messages[0].subject == "Welcome to WELCOME-C"


async def test_get_enrolled_users_options(moodle: Client) -> None:
    course = await create_course(moodle, "opts")
    ids = [await create_user(moodle, f"user{i}") for i in range(4)]
    for uid in ids:
        await enrol(moodle, course, uid)
    options = {
        "options[0][name]": "limitfrom",
        "options[0][value]": 1,
        "options[1][name]": "limitnumber",
        "options[1][value]": 2,
        "options[2][name]": "userfields",
        "options[2][value]": "id,username",
    }
    page = await moodle("core_enrol_get_enrolled_users", courseid=course, **options)
    assert page == [
        {"id": ids[1], "username": "user1", "fullname": "User1 Lab"},
        {"id": ids[2], "username": "user2", "fullname": "User2 Lab"},
    ]
    both = {
        "options[0][name]": "onlyactive",
        "options[0][value]": 1,
        "options[1][name]": "onlysuspended",
        "options[1][value]": 1,
    }
    assert (await moodle("core_enrol_get_enrolled_users", courseid=course, **both))[
        "errorcode"
    ] == "codingerror"


async def test_ten_thousand_users_in_one_course_stay_fast(moodle: Client, fake: FakeMoodle) -> None:
    course = await create_course(moodle, "big")
    started = time.perf_counter()
    for batch in range(100):  # 100 a call: within PHP's max_input_vars, which the simulator applies
        users = [
            {
                "username": f"u{batch}-{i}",
                "firstname": "U",
                "lastname": "L",
                "email": f"u{batch}-{i}@x.org",
                "password": "Passw0rd!x",
            }
            for i in range(100)
        ]
        created = await moodle("core_user_create_users", **form("users", users))
        enrolments = [{"roleid": 5, "userid": u["id"], "courseid": course} for u in created]
        assert await moodle("enrol_manual_enrol_users", **form("enrolments", enrolments)) is None
    assert len(fake.site.enrolled(course)) == 10_000
    probe = time.perf_counter()
    for _ in range(20):
        page = await moodle(
            "core_enrol_get_enrolled_users",
            courseid=course,
            **{"options[0][name]": "limitnumber", "options[0][value]": 50},
        )
        assert len(page) == 50
        assert (
            len(await moodle("core_user_get_users_by_field", field="username", **{"values[0]": "u99-99"}))
            == 1
        )
    assert time.perf_counter() - probe < 5
    assert time.perf_counter() - started < 60


# -- fault injection -----------------------------------------------------------------------------------


async def test_lost_response_is_applied(moodle: Client, fake: FakeMoodle) -> None:
    fake.faults.lose_next["core_course_create_courses"] = 1
    with pytest.raises(httpx.RemoteProtocolError):
        await create_course(moodle, "lost-one")
    assert fake.site.course_by_shortname("lost-one") is not None
    assert fake.calls[-1].lost and fake.calls[-1].ok
    assert fake.faults.lose_next["core_course_create_courses"] == 0
    await create_course(moodle, "kept")  # the next call answers again
    fake.faults.lose_response_rate = 1.0
    await moodle("core_course_get_courses")  # reads are never lost
    with pytest.raises(httpx.TransportError):
        await create_user(moodle, "lostuser")
    assert fake.site.user_by_username("lostuser") is not None


async def test_outages(moodle: Client, fake: FakeMoodle) -> None:
    fake.faults.outage = "503"
    assert (await moodle.raw("core_webservice_get_site_info")).status_code == 503
    fake.faults.outage = "refuse"
    with pytest.raises(httpx.ConnectError):
        await create_course(moodle, "refused")
    assert fake.site.course_by_shortname("refused") is None
    fake.faults.outage = None
    fake.faults.fail_rate = 1.0
    with pytest.raises(httpx.TransportError):
        for _ in range(20):  # each failure is a 503 or a dropped connection
            assert (await moodle.raw("core_course_create_courses")).status_code == 503
    assert fake.site.next_course_id == 3
    fake.reset_faults()
    assert (await moodle("core_webservice_get_site_info"))["username"] == "admin"
    assert {c.outage for c in fake.calls if c.outage} <= {"503", "refuse", "drop"}


async def test_token_revocation_and_removed_functions(moodle: Client, fake: FakeMoodle) -> None:
    fake.faults.revoked_functions.add("core_course_create_courses")
    assert (await moodle("core_course_create_courses"))["errorcode"] == "accessexception"
    info = await moodle("core_webservice_get_site_info")
    assert len(info["functions"]) == 13
    fake.faults.token_valid = False
    assert (await moodle("core_webservice_get_site_info"))["errorcode"] == "invalidtoken"
    fake.reset_faults()
    assert len((await moodle("core_webservice_get_site_info"))["functions"]) == 14


async def test_latency_and_concurrency(moodle: Client, fake: FakeMoodle) -> None:
    fake.faults.latency_ms = 100
    started = time.perf_counter()
    await asyncio.gather(*(moodle("core_webservice_get_site_info") for _ in range(10)))
    assert 0.1 <= time.perf_counter() - started < 0.5  # concurrent, each delayed
    assert fake.peak_in_flight == 10 and fake.in_flight == 0
    assert fake.calls_by_function() == {"core_webservice_get_site_info": 10}


async def test_calls_are_recorded(moodle: Client, fake: FakeMoodle) -> None:
    await moodle("core_course_get_courses_by_field", field="shortname", value="tpl-demo")
    await moodle(
        "core_course_create_courses", **form("courses", [{"fullname": "x", "shortname": "", "categoryid": 1}])
    )
    first, second = fake.calls
    assert first.function == "core_course_get_courses_by_field" and first.ok and first.errorcode is None
    assert first.params == {"field": "shortname", "value": "tpl-demo"}
    assert not second.ok and second.errorcode == "errorinvalidparam"
    assert second.params["courses"][0]["shortname"] == ""


async def test_control_endpoints(moodle: Client, fake: FakeMoodle) -> None:
    course = await create_course(moodle, "ctl")
    user = await create_user(moodle, "ctl-user")
    await enrol(moodle, course, user, suspend=1)
    state = (await moodle.http.get("/_fake/state")).json()
    assert {
        "courses",
        "users",
        "enrolments",
        "messages",
        "calls_by_function",
        "peak_in_flight",
        "call_count",
    } <= set(state)
    assert state["enrolments"] == [{"courseid": course, "userid": user, "roles": [5], "suspended": True}]
    assert state["call_count"] == 3
    changed = await moodle.http.post(
        "/_fake/faults", json={"outage": "503", "revoked_functions": ["core_course_get_courses"]}
    )
    assert changed.status_code == 200 and fake.faults.outage == "503"
    assert fake.faults.revoked_functions == {"core_course_get_courses"}
    assert (await moodle.raw("core_webservice_get_site_info")).status_code == 503
    assert (await moodle.http.post("/_fake/faults", json={"nonsense": 1})).status_code == 400
    assert (await moodle.http.post("/_fake/reset_faults")).status_code == 200
    assert fake.faults.outage is None and fake.faults.revoked_functions == set()


# -- over real HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "fake_moodle", "--port", str(port), "--token", "T", "--limited-token", "L"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == f"fake Moodle listening on http://127.0.0.1:{port}", line
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_cli_serves_over_http(served: str) -> None:
    async with httpx.AsyncClient(base_url=served, timeout=10) as http:
        moodle = Client(http)
        info = await moodle("core_webservice_get_site_info")
        assert info["username"] == "admin" and info["siteurl"] == served
        limited = await moodle("core_webservice_get_site_info", "L")
        assert len(limited["functions"]) == 2
        course = await create_course(moodle, "http-course")
        assert (
            await http.post("/_fake/faults", json={"lose_next": {"core_course_delete_courses": 1}})
        ).status_code == 200
        with pytest.raises(httpx.TransportError):
            await moodle("core_course_delete_courses", **{"courseids[0]": course})
        state = (await http.get("/_fake/state")).json()
        assert "http-course" not in {c["shortname"] for c in state["courses"]}
        await http.post("/_fake/faults", json={"outage": "refuse"})
        with pytest.raises(httpx.TransportError):
            await moodle("core_webservice_get_site_info")
        await http.post("/_fake/faults", json={"outage": "503"})
        assert (await moodle.raw("core_webservice_get_site_info")).status_code == 503
        await http.post("/_fake/reset_faults")
        assert (await moodle("core_webservice_get_site_info"))["sitename"] == "Lab"
