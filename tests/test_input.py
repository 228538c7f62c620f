"""Bad input is refused before anything starts, with an error naming the field and the participant;
unusual input is accepted."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from openvle_moodle_sync import starter
from openvle_moodle_sync.models import Event, InputError, parse_event, parse_participant
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.workflows import ids

GOOD: dict[str, Any] = {
    "id": "42", "name": "Linux Workshop November 2026", "slug": "linux-ws-2026-11", "moodle_course_id": 17,
    "participants": [
        {"id": "p-1", "username": "alice", "email": "alice@example.com", "first_name": "Alice",
         "last_name": "Smith", "role": "student"},
        {"id": "p-2", "username": "bob", "email": "bob@example.com", "first_name": "Bob",
         "last_name": "Jones", "role": "instructor"},
    ],
}


def with_(path: str, value: Any) -> dict[str, Any]:
    """GOOD with one field replaced (``participants.1.email``) or removed (value ``...``)."""
    event = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target: Any = event
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    key: Any = int(last) if last.isdigit() else last
    if value is ...:
        del target[key]
    else:
        target[key] = value
    return event


BAD = {
    "event is not an object": ("[1, 2]", "input"),
    "missing event id": (with_("id", ...), "id: is missing"),
    "event id with a slash": (with_("id", "42/7"), "id: '42/7' is not usable"),
    "missing name": (with_("name", ...), "name: is missing"),
    "empty name": (with_("name", "   "), "name: is empty"),
    "overlong name": (with_("name", "x" * 255), "name: String should have at most 254"),
    "empty slug": (with_("slug", ""), "slug: is empty"),
    "overlong slug": (with_("slug", "s" * 256), "slug: String should have at most 255"),
    "template id zero": (with_("moodle_course_id", 0), "moodle_course_id: Input should be greater than 0"),
    "template id not a number": (with_("moodle_course_id", "abc"), "moodle_course_id"),
    "participants not a list": (with_("participants", "alice"), "participants"),
    "participant missing username": (with_("participants.0.username", ...),
                                     "participants[0] (id 'p-1', username None).username: is missing"),
    "participant missing id": (with_("participants.1.id", ...), "participants[1]"),
    "empty email": (with_("participants.1.email", ""), "participants[1] (id 'p-2', username 'bob').email: is empty"),
    "invalid email": (with_("participants.0.email", "alice@"), "'alice@' is not a valid email address"),
    "email with a space": (with_("participants.0.email", "a lice@example.com"), "is not a valid email address"),
    "overlong email": (with_("participants.0.email", "a" * 95 + "@example.com"), "longer than Moodle's 100"),
    "username Moodle cannot hold": (with_("participants.0.username", "alice smith"),
                                    "has characters a Moodle username cannot hold"),
    "overlong username": (with_("participants.0.username", "a" * 101), "longer than Moodle's 100"),
    "empty first name": (with_("participants.0.first_name", " "), "participants[0] (id 'p-1', username 'alice')"
                                                                  ".first_name: is empty"),
    "overlong last name": (with_("participants.1.last_name", "L" * 101), "last_name: String should have at most 100"),
    "unknown role": (with_("participants.1.role", "teacher"), "role: must be 'student' or 'instructor', not 'teacher'"),
    "same person twice (id)": (with_("participants.1.id", "p-1"),
                               "participants[0] (id 'p-1') and participants[1] (id 'p-1') have the same id 'p-1'"),
    "same username twice": (with_("participants.1.username", "ALICE"),
                            "participants[0] (id 'p-1') and participants[1] (id 'p-2') have the same username "
                            "'alice'"),
    "same email twice, other case": (with_("participants.1.email", "Alice@Example.com"),
                                     "have the same email 'alice@example.com'"),
    # Strict input (issue 11.2): an unknown or misspelt key is refused, never ignored.
    "misspelt participants": (with_("participants", ...) | {"particpants": GOOD["participants"]},
                              "particpants: is not a field of event; did you mean 'participants'?"),
    "missing participants": (with_("participants", ...), "participants: is missing; give the list of participants "
                                                         "([] for an event with nobody yet)"),
    "missing template id": (with_("moodle_course_id", ...), "moodle_course_id: is missing; give the template course "
                                                            "id, or null for an event with no Moodle mapping"),
    "unknown event key": (with_("environment", "lab"), "environment: is not a field of event (known: id, name"),
    "unknown participant key": (with_("participants.1.emial", "b@example.com"),
                                "participants[1] (id 'p-2', username 'bob').emial: is not a field of participant; "
                                "did you mean 'email'?"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_event_is_refused_naming_the_field(case: str) -> None:
    data, expected = BAD[case]
    with pytest.raises(InputError) as error:
        parse_event(data)
    assert expected in str(error.value), str(error.value)


def test_bad_participant_is_refused() -> None:
    with pytest.raises(InputError, match=r"email: 'nope' is not a valid email address"):
        parse_participant({**GOOD["participants"][0], "email": "nope"})
    with pytest.raises(InputError, match=r"rol: is not a field of participant; did you mean 'role'\?"):
        parse_participant({**GOOD["participants"][0], "rol": "student"})


def test_every_problem_is_named_at_once() -> None:
    data = with_("participants.0.email", "nope") | {"particpants": []}
    with pytest.raises(InputError) as error:
        parse_event(data)
    lines = str(error.value).splitlines()
    assert lines[0] == "Invalid event:" and len(lines) == 3, lines
    assert "particpants" in lines[1] and "participants[0] (id 'p-1', username 'alice').email" in lines[2]


def test_the_models_stay_lenient_for_recorded_histories() -> None:
    """Histories hold events serialised by older versions: the data converter's path (the model itself)
    must keep decoding them; only the API's entry (`parse_event`) is strict."""
    assert Event.model_validate(with_("environment", "old field")).id == "42"


def test_unusual_input_is_accepted() -> None:
    event = parse_event(with_("participants", [
        {"id": 7, "username": "Zoë.M".replace("ë", "e"), "email": "Zoe.M@Example.COM", "first_name": "Zoë",
         "last_name": "Müller-Łukasiewicz", "role": "student"},
        {"id": "p-2", "username": "li.wei", "email": "li@example.com", "first_name": "伟", "last_name": "李",
         "role": "instructor"},
    ]))
    assert event.participants[0].username == "zoe.m" and event.participants[0].id == "7"
    assert parse_event(with_("participants", [])).participants == []
    assert parse_event(with_("moodle_course_id", None)).moodle_course_id is None


async def test_starter_starts_nothing_on_bad_input(client: Client, settings: Settings) -> None:
    data = with_("participants.1.role", "guest")
    data["id"] = "bad-input-event"
    with pytest.raises(InputError):
        await starter.deploy_event(client, data, settings=settings)
    with pytest.raises(RPCError):
        await client.get_workflow_handle(ids.life_id("bad-input-event")).describe()
