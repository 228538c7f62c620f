"""The OpenVLE event and its participants, as the backend sends them (see README, "Event JSON").

Validation happens here, before any workflow starts, so bad input never leaves half-done state in
Moodle: every error names the field and, for a participant, which one.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
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

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Role(StrEnum):
    STUDENT = "student"
    INSTRUCTOR = "instructor"


class Participant(BaseModel):
    """One participant of an event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: NonEmpty = Field(max_length=100)
    username: NonEmpty
    email: NonEmpty
    first_name: NonEmpty = Field(max_length=NAME_MAX)
    last_name: NonEmpty = Field(max_length=NAME_MAX)
    role: Role

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

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

    id: NonEmpty
    name: NonEmpty = Field(max_length=COURSE_FULLNAME_MAX)
    slug: NonEmpty = Field(max_length=COURSE_SHORTNAME_MAX)
    moodle_course_id: int | None = Field(None, gt=0, alias="moodle_course_id")
    participants: list[Participant] = Field(default_factory=list)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("id")
    @classmethod
    def _event_id(cls, value: str) -> str:
        if not _EVENT_ID.match(value):
            raise ValueError(
                f"{value!r} is not usable as an event id (1-64 letters, digits and _ . : -)"
            )
        return value

    @model_validator(mode="after")
    def _each_person_once(self) -> Event:
        seen: dict[tuple[str, str], Participant] = {}
        for p in self.participants:
            for key, value in (("id", p.id), ("username", p.username), ("email", p.email.lower())):
                other = seen.get((key, value))
                if other is not None:
                    raise ValueError(
                        f"participants {other.id} and {p.id} have the same {key} {value!r}; "
                        "each person may appear once"
                    )
                seen[(key, value)] = p
        return self

    @property
    def course_idnumber(self) -> str:
        """The mark this service puts on the event's Moodle course (course idnumber)."""
        return course_idnumber(self.id)


def course_idnumber(event_id: str) -> str:
    """The idnumber that marks a Moodle course as this event's, so no other course is ever taken over."""
    return f"openvle-event-{event_id}"


class InputError(ValueError):
    """Event or participant input is unusable; the message names each field (and participant)."""


def _describe(error: ValidationError, data: object) -> str:
    lines = []
    for item in error.errors():
        loc = list(item["loc"])
        where = ".".join(str(part) for part in loc) or "input"
        if len(loc) >= 2 and loc[0] == "participants" and isinstance(loc[1], int):
            who = ""
            try:
                raw = data["participants"][loc[1]]  # type: ignore[index]
                who = f" (id {raw.get('id')!r}, username {raw.get('username')!r})"
            except Exception:
                pass
            where = f"participants[{loc[1]}]{who}" + "".join(f".{part}" for part in loc[2:])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "is missing"
        elif item["type"] == "string_too_short":
            message = "is empty"
        elif item["type"] == "enum":
            message = f"must be 'student' or 'instructor', not {item.get('input')!r}"
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)


def parse_event(data: object) -> Event:
    """Validate an event (a dict of the JSON, or an `Event`); raise `InputError` saying what to fix."""
    if isinstance(data, Event):
        return data
    try:
        return Event.model_validate(data)
    except ValidationError as error:
        raise InputError("Invalid event:\n" + _describe(error, data)) from None


def parse_participant(data: object) -> Participant:
    """Validate one participant; raise `InputError` saying what to fix."""
    if isinstance(data, Participant):
        return data
    try:
        return Participant.model_validate(data)
    except ValidationError as error:
        raise InputError("Invalid participant:\n" + _describe(error, data)) from None
