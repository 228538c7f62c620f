"""core_enrol_get_enrolled_users, enrol_manual_enrol_users and enrol_manual_unenrol_users."""

from __future__ import annotations

import re
from typing import Any

from .errors import coding_error, invalid_parameter, missing_record, moodle_exception, php_error
from .model import ASSIGNABLE_IN_COURSE, EDITING_TEACHER, Enrolment, Message
from .params import DEFAULT, OPTIONAL, Multiple, Single, Value
from .site import Site
from .views import enrolled_user

GET_ENROLLED_PARAMS = Single(
    {
        "courseid": Value("int"),
        "options": Multiple(Single({"name": Value("alphanumext"), "value": Value("raw")}), DEFAULT, []),
    }
)
ENROL_PARAMS = Single(
    {
        "enrolments": Multiple(
            Single(
                {
                    "roleid": Value("int"),
                    "userid": Value("int"),
                    "courseid": Value("int"),
                    "timestart": Value("int", OPTIONAL),
                    "timeend": Value("int", OPTIONAL),
                    "suspend": Value("int", OPTIONAL),
                }
            )
        )
    }
)
UNENROL_PARAMS = Single(
    {
        "enrolments": Multiple(
            Single({"userid": Value("int"), "courseid": Value("int"), "roleid": Value("int", OPTIONAL)})
        )
    }
)

# Roles that hold moodle/course:update (and the other editing capabilities) in a course.
_EDITING_ROLES = {1, EDITING_TEACHER}


def _php_int(value: str) -> int:
    m = re.match(r"^\s*([+-]?\d+)", value)
    return int(m.group(1)) if m else 0


def get_enrolled_users(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    withcapability = ""
    onlyactive = onlysuspended = False
    userfields: set[str] | None = None
    limitfrom = limitnumber = 0
    sortby, direction = "id", "ASC"
    for option in params["options"]:
        name, value = option["name"], option["value"]
        if name == "withcapability":
            withcapability = value
        elif name == "onlyactive":
            onlyactive = value not in ("", "0")
        elif name == "onlysuspended":
            onlysuspended = value not in ("", "0")
        elif name == "userfields":
            userfields = {re.sub(r"[^a-zA-Z0-9_-]", "", f) for f in value.split(",")}
        elif name == "limitfrom":
            limitfrom = _php_int(value)
        elif name == "limitnumber":
            limitnumber = _php_int(value)
        elif name == "sortby":
            if value not in ("id", "firstname", "lastname", "siteorder"):
                raise invalid_parameter(
                    f"Invalid value for sortby parameter (value: {value}), "
                    "allowed values are: id,firstname,lastname,siteorder"
                )
            sortby = value
        elif name == "sortdirection":
            direction = value.upper()
            if direction not in ("ASC", "DESC"):
                raise invalid_parameter(
                    "Invalid value for sortdirection parameter\n" + " " * 24 + f"(value: {direction}),"
                    "allowed values are: ASC,DESC"
                )
    course_id = params["courseid"]
    course = site.courses.get(course_id)
    if course is None:
        raise missing_record(
            "course", f"SELECT * FROM {{course}} WHERE id = ?\n[array (\n  0 => {course_id},\n)]"
        )
    if onlyactive and onlysuspended:
        raise coding_error(
            "Both onlyactive and onlysuspended are set, this is probably not what you want!", ""
        )
    if course.is_site:
        rows = [(site.users[uid], Enrolment(uid, course_id)) for uid in sorted(site.users)]
    else:
        course_enrolments = site.enrolments.get(course_id, {})
        rows = []
        for uid in sorted(course_enrolments):
            enrolment = course_enrolments[uid]
            if onlyactive and enrolment.suspended:
                continue
            if onlysuspended and not enrolment.suspended:
                continue
            if withcapability and not (enrolment.roles & _EDITING_ROLES):
                continue
            rows.append((site.users[uid], enrolment))
    if sortby in ("firstname", "lastname"):
        rows.sort(key=lambda r: (getattr(r[0], sortby), r[0].id))
    elif sortby == "siteorder":
        rows.sort(key=lambda r: (r[0].lastname, r[0].firstname, r[0].id))
    if direction == "DESC":
        rows.reverse()
    if limitfrom > 0 or limitnumber > 0:
        rows = rows[max(limitfrom, 0) : (max(limitfrom, 0) + limitnumber) if limitnumber > 0 else None]
    return [enrolled_user(site, user, enrolment, userfields) for user, enrolment in rows]


def enrol_users(site: Site, params: dict[str, Any]) -> None:
    with site.transaction():
        for item in params["enrolments"]:
            course_id, user_id, role_id = item["courseid"], item["userid"], item["roleid"]
            course = site.courses.get(course_id)
            if course is None:
                raise invalid_parameter("Context does not exist")
            if role_id not in ASSIGNABLE_IN_COURSE:
                raise moodle_exception(
                    "wsusercannotassign",
                    f"You don't have the permission to assign this role ({role_id}) to this user ({user_id}) "
                    f"in this course ({course_id}).",
                )
            if not course.manual_enrol:
                raise moodle_exception(
                    "wsnoinstance",
                    "Manual enrolment plugin instance doesn't exist or is disabled for the course "
                    f"(id = {course_id})",
                )
            user = site.users.get(user_id)
            if user is None:
                raise php_error(
                    "TypeError",
                    "core\\user::get_name_placeholders(): Argument #1 ($user) must be of type stdClass, "
                    "bool given, "
                    "called in /var/www/moodle/lib/enrollib.php on line 3674",
                )
            # Moodle sends the welcome from the course contact (the first editing teacher) in a hook that
            # runs before the new role is assigned: any user, teachers included, enrolled while the course
            # has a teacher gets one, on every call; the first teacher gets none (enrollib.php enrol_user).
            if site.teacher_ids(course_id):
                site.send(Message("welcome", user_id, course_id, f"Welcome to {course.fullname}"))
            site.enrol(
                course_id,
                user_id,
                role_id,
                suspended=bool(item.get("suspend")),
                timestart=item.get("timestart", 0),
                timeend=item.get("timeend", 0),
            )


def unenrol_users(site: Site, params: dict[str, Any]) -> None:
    with site.transaction():
        for item in params["enrolments"]:
            course_id, user_id = item["courseid"], item["userid"]
            course = site.courses.get(course_id)
            if course is None:
                raise missing_record(
                    "course",
                    f"SELECT id,category FROM {{course}} WHERE id = ?\n[array (\n  0 => {course_id},\n)]",
                )
            if not course.manual_enrol:
                raise moodle_exception(
                    "wsnoinstance",
                    "Manual enrolment plugin instance doesn't exist or is disabled for the course "
                    f"(id = {course_id})",
                )
            if user_id not in site.users:
                raise invalid_parameter(f"User id not exist: {user_id}")
            site.unenrol(course_id, user_id)
