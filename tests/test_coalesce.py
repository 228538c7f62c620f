"""The coalescer: per-item Moodle calls made at about the same moment go to Moodle as one, each caller
getting its own answer; against the simulator, which rolls a batch back whole as Moodle does."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, cast

import pytest

from fake_moodle import FakeMoodle
from openvle_moodle_sync.moodle import InvalidParameterError, InvalidTokenError, MoodleClient, MoodlePHPError
from openvle_moodle_sync.moodle.client import NewUser
from openvle_moodle_sync.moodle.coalesce import (
    CREATE_USERS,
    ENROL_USERS,
    GET_USERS_BY_FIELD,
    MAILING_STREAMS,
    mailing_batch,
    moodle_accepts_email,
)
from openvle_moodle_sync.moodle.gate import call_priority
from openvle_moodle_sync.settings import ConfigError
from openvle_moodle_sync.worker import activities_client

from .conftest import make_settings, moodle_for

STUDENT = 5


def person(name: str, *, mailed: bool = False, **extra: Any) -> NewUser:
    account: dict[str, Any] = {"username": name, "firstname": name.capitalize(), "lastname": "Person",
                               "email": f"{name}@example.com", "auth": "manual"}
    account.update({"createpassword": 1} if mailed else {"password": "Passw0rd-1!"})
    return cast(NewUser, {**account, **extra})


def calls(fake: FakeMoodle, function: str) -> list[dict[str, Any]]:
    return [c.params for c in fake.calls if c.function == function]


def mails_per_address(fake: FakeMoodle) -> Counter[str]:
    return Counter(m.address for m in fake.site.messages if m.kind == "newuser")


@pytest.fixture
async def direct(fake: FakeMoodle) -> Any:
    async with moodle_for(fake, make_settings()) as moodle:
        yield moodle


def coalescing(direct: MoodleClient, batch_size: int = 100, **options: Any) -> MoodleClient:
    return direct.coalescing(batch_size, **options)


async def a_course(direct: MoodleClient, fake: FakeMoodle, name: str = "c") -> int:
    copy = await direct.duplicate_course(fake.site.template_course_id, name, name, 1)
    return int(copy["id"])


async def test_calls_made_together_go_as_one_and_each_caller_gets_its_own_answer(
        fake: FakeMoodle, direct: MoodleClient) -> None:
    moodle = coalescing(direct)
    names = [f"u{i}" for i in range(12)]
    answers = await asyncio.gather(*(moodle.create_users([person(n)]) for n in names))
    assert [a[0]["username"] for a in answers] == names
    assert {fake.site.users[a[0]["id"]].username for a in answers} == set(names)
    assert len(calls(fake, CREATE_USERS)) == 1

    course = await a_course(direct, fake)
    await asyncio.gather(*(moodle.enrol_users([{"roleid": STUDENT, "userid": a[0]["id"], "courseid": course}])
                           for a in answers))
    assert len(calls(fake, ENROL_USERS)) == 1 and len(fake.site.enrolled(course)) == 12

    found = await asyncio.gather(*(moodle.get_users_by_field("username", [n, "nobody"]) for n in names[:5]))
    assert [[u["username"] for u in f] for f in found] == [[n] for n in names[:5]]
    assert len(calls(fake, GET_USERS_BY_FIELD)) == 1


async def test_batches_hold_at_most_the_batch_size(fake: FakeMoodle, direct: MoodleClient) -> None:
    moodle = coalescing(direct, batch_size=5)
    await asyncio.gather(*(moodle.create_users([person(f"u{i}")]) for i in range(12)))
    assert sorted(len(c["users"]) for c in calls(fake, CREATE_USERS)) == [2, 5, 5]


async def test_enrolments_of_different_courses_go_in_different_calls(fake: FakeMoodle, direct: MoodleClient) -> None:
    moodle = coalescing(direct)
    (user,) = await direct.create_users([person("ann")])
    courses = [await a_course(direct, fake, f"c{i}") for i in range(3)]
    await asyncio.gather(*(moodle.enrol_users([{"roleid": STUDENT, "userid": user["id"], "courseid": c}])
                           for c in courses))
    assert sorted(int(c["enrolments"][0]["courseid"]) for c in calls(fake, ENROL_USERS)) == courses


async def test_a_lone_call_waits_only_the_window_and_later_ones_join_the_next_call(
        fake: FakeMoodle, direct: MoodleClient) -> None:
    moodle = coalescing(direct, window_s=0.005)
    started = time.perf_counter()
    await moodle.get_users_by_field("username", ["admin"])
    assert time.perf_counter() - started < 0.25  # the window, not a long wait for company

    slow = coalescing(direct, window_s=0.3)
    first = asyncio.create_task(slow.create_users([person("early")]))
    await asyncio.sleep(0.1)  # within the window: joins
    second = asyncio.create_task(slow.create_users([person("within")]))
    await asyncio.sleep(0.4)  # the first call has gone: the next one carries it
    third = asyncio.create_task(slow.create_users([person("late")]))
    await asyncio.gather(first, second, third)
    assert [[u["username"] for u in c["users"]] for c in calls(fake, CREATE_USERS)] == [["early", "within"], ["late"]]


async def test_calls_that_keep_coming_wait_for_each_other_a_while(fake: FakeMoodle, direct: MoodleClient) -> None:
    moodle = coalescing(direct, window_s=0.005, quiet_s=0.1, linger_s=0.6)
    course = await a_course(direct, fake)
    users = [u["id"] for u in await direct.create_users([person(f"s{i}") for i in range(6)])]

    async def enrol(user_id: int, after_s: float) -> None:
        await asyncio.sleep(after_s)
        await moodle.enrol_users([{"roleid": STUDENT, "userid": user_id, "courseid": course}])

    # One every 40 ms, as a deployment's enrolments reach a worker: the first goes alone (nothing came before
    # it), the others wait for each other up to the linger.
    await asyncio.gather(*(enrol(u, i * 0.04) for i, u in enumerate(users)))
    assert [len(c["enrolments"]) for c in calls(fake, ENROL_USERS)] == [1, 5]


async def test_a_bad_item_fails_alone_and_the_others_are_written(fake: FakeMoodle, direct: MoodleClient) -> None:
    moodle = coalescing(direct)
    course = await a_course(direct, fake)
    users = [u["id"] for u in await direct.create_users([person(f"s{i}") for i in range(7)])]
    ids = [*users[:3], 999_999, *users[3:]]  # one account that does not exist (deleted meanwhile)
    results = await asyncio.gather(
        *(moodle.enrol_users([{"roleid": STUDENT, "userid": u, "courseid": course}]) for u in ids),
        return_exceptions=True)
    assert [type(r) for r in results] == [type(None)] * 3 + [MoodlePHPError] + [type(None)] * 4
    assert set(fake.site.enrolled(course)) == set(users)
    assert len(calls(fake, ENROL_USERS)) > 1  # the whole call failed first, then the bad item was found


async def test_an_account_moodle_holds_already_is_sent_alone_and_nobody_is_mailed_twice(
        fake: FakeMoodle, direct: MoodleClient) -> None:
    await direct.create_users([person("taken", email="someone@example.com")])
    moodle = coalescing(direct)
    wanted: list[NewUser] = [person(f"m{i}", mailed=True) for i in range(5)]
    wanted.insert(2, person("taken", mailed=True))  # created meanwhile, by a parallel run say
    wanted.insert(4, person("oddcase", mailed=True, email="SOMEONE@example.com"))  # address held in another case
    wanted.insert(5, person("noname", mailed=True, firstname=" "))
    results = await asyncio.gather(*(moodle.create_users([w]) for w in wanted), return_exceptions=True)
    refused = [w["username"] for w, r in zip(wanted, results, strict=True) if isinstance(r, InvalidParameterError)]
    assert sorted(refused) == ["noname", "oddcase", "taken"]
    created = {u.username for u in fake.site.users.values()}
    assert {f"m{i}" for i in range(5)} <= created
    assert set(mails_per_address(fake).values()) == {1}  # each new account mailed once, the refused ones never
    assert mails_per_address(fake).keys() == {f"m{i}@example.com" for i in range(5)}


async def test_the_same_account_twice_never_shares_a_call(fake: FakeMoodle, direct: MoodleClient) -> None:
    moodle = coalescing(direct)
    results = await asyncio.gather(moodle.create_users([person("twin", mailed=True)]),
                                   moodle.create_users([person("other", mailed=True)]),
                                   moodle.create_users([person("twin", mailed=True)]), return_exceptions=True)
    assert [type(r) for r in results] == [list, list, InvalidParameterError]
    assert mails_per_address(fake) == Counter({"twin@example.com": 1, "other@example.com": 1})


async def test_accounts_moodle_mails_are_screened_once_and_created_a_few_a_call(
        fake: FakeMoodle, direct: MoodleClient) -> None:
    """A call that fails midway has mailed the accounts before the failure: such calls stay small."""
    moodle = coalescing(direct)
    assert moodle.coalescer is not None
    per_call = moodle.coalescer.mailing_batch
    assert per_call == 5  # make_settings: 20 connections, two mailing calls in flight of a quarter each
    await asyncio.gather(*(moodle.create_users([person(f"m{i:02d}", mailed=True)]) for i in range(25)))
    sizes = sorted(len(c["users"]) for c in calls(fake, CREATE_USERS))
    assert sizes == [per_call] * 5
    assert [c["field"] for c in calls(fake, GET_USERS_BY_FIELD)] == ["username", "email"]  # one screening
    assert set(mails_per_address(fake).values()) == {1} and len(mails_per_address(fake)) == 25


@pytest.mark.parametrize("connections", [1, 2, 3, 4, 5, 20, 21, 400])
def test_mailing_calls_in_flight_risk_half_the_accounts_one_account_calls_could(connections: int) -> None:
    per_call = mailing_batch(connections, batch_size=100)
    assert 1 <= per_call <= 100
    assert 2 * MAILING_STREAMS * per_call <= max(connections, 2 * MAILING_STREAMS)  # half the connections at most
    assert 2 * MAILING_STREAMS * (per_call + 1) > connections or per_call == 100  # and no smaller than that


def test_moodles_email_check() -> None:
    assert moodle_accepts_email("anna.smith+x@example.co.uk")
    assert not moodle_accepts_email("not-an-email") and not moodle_accepts_email("a b@example.com")


async def test_an_error_of_the_whole_call_goes_to_every_caller_once(fake: FakeMoodle, direct: MoodleClient) -> None:
    moodle = coalescing(direct)
    fake.faults.token_valid = False
    results = await asyncio.gather(*(moodle.create_users([person(f"u{i}")]) for i in range(4)),
                                   return_exceptions=True)
    assert all(isinstance(r, InvalidTokenError) for r in results)
    assert len(calls(fake, CREATE_USERS)) == 1  # not split: no item is to blame


async def test_batches_are_formed_in_priority_order(fake: FakeMoodle, direct: MoodleClient) -> None:
    moodle = coalescing(direct, batch_size=2, sending_per_lane=1)
    course = await a_course(direct, fake)
    users = [u["id"] for u in await direct.create_users([person(f"s{i}") for i in range(6)])]

    async def enrol(user_id: int, priority: int) -> None:
        call_priority.set(priority)  # as the worker sets each activity's task priority
        await moodle.enrol_users([{"roleid": STUDENT, "userid": user_id, "courseid": course}])

    first = asyncio.create_task(enrol(users[0], 5))  # keeps the lane's only call busy a moment
    fake.faults.latency_ms = 100
    await asyncio.sleep(0.05)
    large = [asyncio.create_task(enrol(u, 5)) for u in users[1:4]]  # a large event's, first come
    await asyncio.sleep(0.01)
    small = [asyncio.create_task(enrol(u, 1)) for u in users[4:]]  # a small event's, later but first served
    await asyncio.gather(first, *large, *small)
    batches = [[int(e["userid"]) for e in c["enrolments"]] for c in calls(fake, ENROL_USERS)]
    assert batches == [[users[0]], users[4:], users[1:3], [users[3]]]


async def test_a_caller_cancelled_while_waiting_leaves_the_others_their_call(
        fake: FakeMoodle, direct: MoodleClient) -> None:
    moodle = coalescing(direct, window_s=0.2)
    tasks = {n: asyncio.create_task(moodle.create_users([person(n)])) for n in ("a", "b", "c")}
    await asyncio.sleep(0.05)
    tasks["b"].cancel()  # its activity timed out, say
    assert [r[0]["username"] for r in await asyncio.gather(tasks["a"], tasks["c"])] == ["a", "c"]
    assert tasks["b"].cancelled()
    assert [[u["username"] for u in c["users"]] for c in calls(fake, CREATE_USERS)] == [["a", "c"]]


async def test_without_coalescing_each_call_goes_alone(fake: FakeMoodle, direct: MoodleClient) -> None:
    await asyncio.gather(*(direct.create_users([person(f"u{i}")]) for i in range(3)))
    assert len(calls(fake, CREATE_USERS)) == 3


def test_batch_size_is_validated_in_words() -> None:
    assert make_settings().moodle_batch_size == 100
    with pytest.raises(ConfigError, match=r"MOODLE_BATCH_SIZE.*max_input_vars"):
        make_settings(moodle_batch_size=0)


async def test_simulator_mails_passwords_of_a_batch_it_rolls_back_but_no_welcome(
        fake: FakeMoodle, direct: MoodleClient) -> None:
    """As Moodle 4.5 on the lab: the password mail goes out as each account is made, the welcome only
    when the enrolment call commits."""
    await direct.create_users([person("taken")])
    with pytest.raises(InvalidParameterError):
        await direct.create_users([person("first", mailed=True), person("taken", mailed=True, email="t2@example.com")])
    assert "first" not in {u.username for u in fake.site.users.values()}
    assert mails_per_address(fake) == Counter({"first@example.com": 1})

    course = await a_course(direct, fake)
    teacher, student = (u["id"] for u in await direct.create_users([person("teacher"), person("student")]))
    await direct.enrol_users([{"roleid": 3, "userid": teacher, "courseid": course}])
    with pytest.raises(MoodlePHPError):
        await direct.enrol_users([{"roleid": STUDENT, "userid": student, "courseid": course},
                                  {"roleid": STUDENT, "userid": 999_999, "courseid": course}])
    assert not [m for m in fake.site.messages if m.kind == "welcome"] and student not in fake.site.enrolled(course)


@pytest.mark.parametrize(("batch_size", "coalesced"), [(1, False), (2, True), (100, True)])
async def test_a_batch_size_of_one_turns_coalescing_off(direct: MoodleClient, batch_size: int,
                                                        coalesced: bool) -> None:
    moodle = activities_client(direct, make_settings(moodle_batch_size=batch_size))
    assert (moodle.coalescer is not None) is coalesced
    if coalesced:
        assert moodle.coalescer is not None and moodle.coalescer.batch_size == batch_size
