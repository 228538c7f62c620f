"""The simulated site's records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ROLE_SHORTNAMES: dict[int, str] = {
    1: "manager",
    2: "coursecreator",
    3: "editingteacher",
    4: "teacher",
    5: "student",
    6: "guest",
    7: "user",
    8: "frontpage",
}
ASSIGNABLE_IN_COURSE = frozenset({1, 3, 4, 5})
EDITING_TEACHER = 3


@dataclass
class Category:
    id: int
    name: str
    idnumber: str | None
    description: str = ""
    descriptionformat: int = 1
    parent: int = 0
    sortorder: int = 10000
    visible: int = 1
    timemodified: int = 0


@dataclass
class Course:
    id: int
    shortname: str
    fullname: str
    category_id: int
    idnumber: str = ""
    summary: str = ""
    summaryformat: int = 1
    format: str = "topics"
    showgrades: int = 1
    newsitems: int = 5
    startdate: int = 0
    enddate: int = 0
    numsections: int = 0
    maxbytes: int = 0
    showreports: int = 0
    visible: int = 1
    hiddensections: int = 1
    coursedisplay: int = 0
    groupmode: int = 0
    groupmodeforce: int = 0
    defaultgroupingid: int = 0
    enablecompletion: int = 1
    completionnotify: int = 0
    lang: str = ""
    theme: str = ""
    timecreated: int = 0
    timemodified: int = 0
    cacherev: int = 0
    seq: int = 0  # creation order; newer courses sort first inside their category
    manual_enrol: bool = True  # has an enabled manual enrolment instance

    @property
    def is_site(self) -> bool:
        return self.format == "site"


@dataclass
class User:
    id: int
    username: str
    firstname: str
    lastname: str
    email: str
    auth: str = "manual"
    idnumber: str = ""
    department: str = ""
    institution: str = ""
    city: str = ""
    country: str = ""
    lang: str = "en"
    theme: str = ""
    timezone: str = "99"
    mailformat: int = 1
    description: str = ""
    suspended: bool = False
    confirmed: bool = True
    password: str = ""
    timecreated: int = 0

    @property
    def fullname(self) -> str:
        return f"{self.firstname} {self.lastname}"


@dataclass
class Enrolment:
    """A user's manual enrolment in one course, with the roles they hold there."""

    user_id: int
    course_id: int
    roles: set[int] = field(default_factory=set)
    suspended: bool = False
    timestart: int = 0
    timeend: int = 0
    id: int = 0  # the user enrolment id (Moodle's ``ue``)


@dataclass(frozen=True)
class EnrolmentInfo:
    roles: set[int]
    suspended: bool


@dataclass(frozen=True)
class Message:
    """A mail Moodle would send: ``welcome`` (course welcome) or ``newuser`` (generated password)."""

    kind: Literal["welcome", "newuser"]
    user_id: int
    course_id: int | None
    subject: str
    address: str = ""
    """Where it went (the new account's mail names it: an account rolled back after its mail has no id)."""
