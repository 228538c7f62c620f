"""The OpenVLE event and its participants, as the backend sends them (see docs/workflows.md, "Event JSON").

Validation happens here, before any workflow starts, so bad input never leaves half-done state in
Moodle: every error names the field and, for a participant, which one.

`parse_event` and `parse_participant` are the strict entry (API and CLI): they also refuse unknown keys
(a misspelt ``particpants`` would otherwise deploy an empty course) and require ``participants`` and
``moodle_course_id`` to be given. The models themselves stay lenient about unknown keys, because the data
converter decodes them from workflow histories, which must keep replaying whatever this file becomes.
"""

from __future__ import annotations

import re
from difflib import get_close_matches
from enum import StrEnum
from typing import Annotated, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

# Moodle's limits (lib/db/install.xml: user.username/firstname/lastname/email 100, course.fullname 254,
# course.shortname 255, course.idnumber 100).
USERNAME_MAX = 100
NAME_MAX = 100
EMAIL_MAX = 100
COURSE_FULLNAME_MAX = 254
COURSE_SHORTNAME_MAX = 255

# PARAM_USERNAME without $CFG->extendedusernamechars: lower-case letters, digits and _ - . @
_USERNAME = re.compile(r"^[a-z0-9_.@-]+$")
# The shape Moodle's validate_email() accepts, without its rarely used quoted local parts.
_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$",
    re.IGNORECASE,
)
_EVENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def check_event_id(value: str) -> str:
    """The event id as given, or ValueError: it names workflow ids, so it has a safe alphabet."""
    if not _EVENT_ID.match(value):
        raise ValueError(f"{value!r} is not usable as an event id (1-64 letters, digits and _ . : -)")
    return value


NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _int_as_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Id = Annotated[NonEmpty, BeforeValidator(_int_as_text)]
"""An event's or a participant's id: text, also when the backend sends a number (``7`` is ``"7"``)."""


class Role(StrEnum):
    STUDENT = "student"
    INSTRUCTOR = "instructor"


class Participant(BaseModel):
    """One participant of an event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: Id = Field(max_length=100)
    username: NonEmpty
    email: NonEmpty
    first_name: NonEmpty = Field(max_length=NAME_MAX)
    last_name: NonEmpty = Field(max_length=NAME_MAX)
    role: Role

    @field_validator("username")
    @classmethod
    def _moodle_username(cls, value: str) -> str:
        # Moodle stores usernames in lower case; "Alice" in OpenVLE is "alice" in Moodle.
        value = value.lower()
        if len(value) > USERNAME_MAX:
            raise ValueError(f"is longer than Moodle's {USERNAME_MAX} characters")
        if not _USERNAME.match(value):
            raise ValueError(
                f"{value!r} has characters a Moodle username cannot hold "
                "(allowed: letters, digits and _ - . @)"
            )
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if len(value) > EMAIL_MAX:
            raise ValueError(f"is longer than Moodle's {EMAIL_MAX} characters")
        local, _, domain = value.rpartition("@")
        # Moodle validates with PHP's filter_var: at most 64 characters before the @, 63 per domain label.
        if not _EMAIL.match(value) or len(local) > 64 or any(len(label) > 63 for label in domain.split(".")):
            raise ValueError(f"{value!r} is not a valid email address")
        return value

    @property
    def label(self) -> str:
        """How errors name this participant."""
        return f"participant {self.id} ({self.username})"


class Event(BaseModel):
    """An OpenVLE event with its Moodle template and participants."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: Id
    name: NonEmpty = Field(max_length=COURSE_FULLNAME_MAX)
    slug: NonEmpty = Field(max_length=COURSE_SHORTNAME_MAX)
    moodle_course_id: int | None = Field(gt=0)
    """The environment's template course; ``None`` (JSON ``null``) means the event has no Moodle mapping."""
    participants: list[Participant]
    """Everyone of the event; ``[]`` when nobody is registered yet (it must be given, even empty)."""

    @field_validator("id")
    @classmethod
    def _event_id(cls, value: str) -> str:
        return check_event_id(value)

    @model_validator(mode="after")
    def _each_person_once(self) -> Event:
        seen: dict[tuple[str, str], int] = {}
        for index, p in enumerate(self.participants):
            for key, value in (("id", p.id), ("username", p.username), ("email", p.email.lower())):
                first = seen.get((key, value))
                if first is not None:
                    raise ValueError(
                        f"participants[{first}] (id {self.participants[first].id!r}) and participants[{index}] "
                        f"(id {p.id!r}) have the same {key} {value!r}; each person may appear once"
                    )
                seen[(key, value)] = index
        return self

    @property
    def course_idnumber(self) -> str:
        """The mark this service puts on the event's Moodle course (course idnumber)."""
        return course_idnumber(self.id)


def course_idnumber(event_id: str) -> str:
    """The idnumber that marks a Moodle course as this event's, so no other course is ever taken over."""
    return f"openvle-event-{event_id}"


M = TypeVar("M", bound=BaseModel)


class InputError(ValueError):
    """Event or participant input is unusable; the message names each field (and participant)."""


# Keys the strict entry requires although the model could do without them: an omission must not read as
# "nobody" or "no Moodle mapping" (both have an explicit way to be said).
_REQUIRED_EXPLICITLY = {
    "participants": "is missing; give the list of participants ([] for an event with nobody yet)",
    "moodle_course_id": "is missing; give the template course id, or null for an event with no Moodle mapping",
}


def _unknown_keys(data: object, model: type[BaseModel], where: str) -> list[str]:
    """One line per key of ``data`` that ``model`` does not have, with the nearest known key."""
    if not isinstance(data, dict):
        return []
    known = list(model.model_fields)
    lines = []
    for key in data:
        if key not in model.model_fields:
            near = get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(known)})"
            lines.append(f"  - {where}{key}: is not a field of {model.__name__.lower()}{hint}")
    return lines


def _strict_problems(data: object) -> list[str]:
    """What the lenient model lets pass but the API refuses: unknown keys, omitted required lists."""
    if not isinstance(data, dict):
        return []
    lines = _unknown_keys(data, Event, "")
    lines += [f"  - {key}: {message}" for key, message in _REQUIRED_EXPLICITLY.items() if key not in data]
    participants = data.get("participants")
    if isinstance(participants, list):
        for index, raw in enumerate(participants):
            lines += _unknown_keys(raw, Participant, f"{_participant_where(index, raw)}.")
    return lines


def _participant_where(index: int, raw: object) -> str:
    who = f" (id {raw.get('id')!r}, username {raw.get('username')!r})" if isinstance(raw, dict) else ""
    return f"participants[{index}]{who}"


def _describe(error: ValidationError | None, data: object) -> str:
    lines: list[str] = []
    if error is None:
        return ""
    for item in error.errors():
        loc = list(item["loc"])
        if item["type"] == "missing" and len(loc) == 1 and loc[0] in _REQUIRED_EXPLICITLY:
            continue  # said by the strict check, with how to give it
        where = ".".join(str(part) for part in loc) or "input"
        if len(loc) >= 2 and loc[0] == "participants" and isinstance(loc[1], int):
            raw = None
            if isinstance(data, dict) and isinstance(data.get("participants"), list) \
                    and loc[1] < len(data["participants"]):
                raw = data["participants"][loc[1]]
            where = _participant_where(loc[1], raw) + "".join(f".{part}" for part in loc[2:])
        message = item["msg"].removeprefix("Value error, ")
        if not loc and message.startswith("participants["):
            lines.append(f"  - {message}")  # the same person twice: the message names both positions
            continue
        if item["type"] == "missing":
            message = "is missing"
        elif item["type"] == "string_too_short":
            message = "is empty"
        elif item["type"] == "enum":
            message = f"must be 'student' or 'instructor', not {item.get('input')!r}"
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)


def _validate(model: type[M], data: object, strict: list[str], what: str) -> M:
    error: ValidationError | None = None
    try:
        value = model.model_validate(data)
    except ValidationError as caught:
        error = caught
    if error is None and not strict:
        return value
    described = _describe(error, data)
    raise InputError(f"Invalid {what}:\n" + "\n".join(strict + ([described] if described else [])))


def parse_event(data: object) -> Event:
    """Validate an event (a dict of the JSON, or an `Event`); raise `InputError` naming every field to fix.

    Unknown keys and an omitted ``participants`` or ``moodle_course_id`` are refused; ``[]`` and ``null``
    given explicitly are accepted."""
    if isinstance(data, Event):
        return data
    return _validate(Event, data, _strict_problems(data), "event")


def parse_participant(data: object) -> Participant:
    """Validate one participant; raise `InputError` naming every field to fix (unknown keys too)."""
    if isinstance(data, Participant):
        return data
    return _validate(Participant, data, _unknown_keys(data, Participant, ""), "participant")
