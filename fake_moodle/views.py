"""Records rendered as Moodle's web services return them (key order and optional keys as recorded)."""

from __future__ import annotations

from typing import Any

from .model import ROLE_SHORTNAMES, Category, Course, Enrolment, User
from .site import Site

FILTERS = [
    {"filter": name, "localstate": 0, "inheritedstate": 1}
    for name in ("displayh5p", "activitynames", "mathjaxloader", "emoticon", "urltolink", "mediaplugin")
]
THEME_REV = 1795548697


def _context_id(course: Course) -> int:
    return 2 if course.is_site else course.id + 10


def picture_urls(site: Site) -> dict[str, str]:
    base = f"{site.site_url}/theme/image.php/boost/core/{THEME_REV}/u"
    return {"profileimageurlsmall": f"{base}/f2", "profileimageurl": f"{base}/f1"}


def category(site: Site, cat: Category) -> dict[str, Any]:
    return {
        "id": cat.id,
        "name": cat.name,
        "idnumber": cat.idnumber,
        "description": cat.description,
        "descriptionformat": cat.descriptionformat,
        "parent": cat.parent,
        "sortorder": cat.sortorder,
        "coursecount": site.course_count(cat.id),
        "visible": cat.visible,
        "visibleold": cat.visible,
        "timemodified": cat.timemodified,
        "depth": 1,
        "path": f"/{cat.id}",
        "theme": "",
    }


def _format_options(course: Course, indentation: bool) -> list[dict[str, Any]]:
    if course.is_site:
        return [{"name": "numsections", "value": 1}]
    options: list[dict[str, Any]] = [
        {"name": "hiddensections", "value": course.hiddensections},
        {"name": "coursedisplay", "value": course.coursedisplay},
    ]
    if indentation:
        options.append({"name": "indentation", "value": "1"})
    return options


def _completion_conditions(course: Course) -> bool | None:
    return True if course.enablecompletion else None


def course_for_get_courses(site: Site, course: Course) -> dict[str, Any]:
    """One course of ``core_course_get_courses``."""
    out: dict[str, Any] = {
        "id": course.id,
        "shortname": course.shortname,
        "categoryid": course.category_id,
        "categorysortorder": site.sortorder(course),
        "fullname": course.fullname,
        "displayname": course.fullname,
        "idnumber": course.idnumber,
        "summary": course.summary,
        "summaryformat": course.summaryformat,
        "format": course.format,
        "showgrades": course.showgrades,
        "newsitems": course.newsitems,
        "startdate": course.startdate,
        "enddate": course.enddate,
        "numsections": course.numsections,
        "maxbytes": course.maxbytes,
        "showreports": course.showreports,
        "visible": course.visible,
    }
    if not course.is_site:
        out["hiddensections"] = course.hiddensections
    out.update(
        {
            "groupmode": course.groupmode,
            "groupmodeforce": course.groupmodeforce,
            "defaultgroupingid": course.defaultgroupingid,
            "timecreated": course.timecreated,
            "timemodified": course.timemodified,
            "enablecompletion": course.enablecompletion,
            "completionnotify": course.completionnotify,
            "lang": course.lang,
            "forcetheme": course.theme,
            "courseformatoptions": _format_options(course, indentation=False),
            "showactivitydates": False,
            "showcompletionconditions": _completion_conditions(course),
        }
    )
    return out


def course_summary(site: Site, course: Course) -> dict[str, Any]:
    """One course of ``core_course_search_courses`` (the exported course list element)."""
    cat = site.categories.get(course.category_id)
    contacts = [
        {"id": uid, "fullname": site.users[uid].fullname}
        for uid in sorted(site.teacher_ids(course.id))[:10]
        if uid in site.users
    ]
    return {
        "id": course.id,
        "fullname": course.fullname,
        "displayname": course.fullname,
        "shortname": course.shortname,
        "courseimage": f"{site.site_url}/pluginfile.php/{_context_id(course)}/course/generated/course.svg",
        "categoryid": course.category_id,
        "categoryname": cat.name if cat else "",
        "sortorder": site.sortorder(course),
        "summary": course.summary,
        "summaryformat": course.summaryformat,
        "summaryfiles": [],
        "overviewfiles": [],
        "showactivitydates": False,
        "showcompletionconditions": _completion_conditions(course),
        "contacts": contacts,
        "enrollmentmethods": ["manual"] if course.manual_enrol else [],
    }


def course_full(site: Site, course: Course) -> dict[str, Any]:
    """One course of ``core_course_get_courses_by_field``."""
    out = course_summary(site, course)
    out.update(
        {
            "idnumber": course.idnumber,
            "format": course.format,
            "showgrades": course.showgrades,
            "newsitems": course.newsitems,
            "startdate": course.startdate,
            "enddate": course.enddate,
            "maxbytes": course.maxbytes,
            "showreports": course.showreports,
            "visible": course.visible,
            "groupmode": course.groupmode,
            "groupmodeforce": course.groupmodeforce,
            "defaultgroupingid": course.defaultgroupingid,
            "enablecompletion": course.enablecompletion,
            "completionnotify": course.completionnotify,
            "lang": course.lang,
            "theme": course.theme,
            "marker": 0,
            "legacyfiles": 0,
            "calendartype": "",
            "timecreated": course.timecreated,
            "timemodified": course.timemodified,
            "requested": 0,
            "cacherev": course.cacherev,
            "filters": [dict(f) for f in FILTERS],
        }
    )
    if not course.is_site:
        out["courseformatoptions"] = _format_options(course, indentation=True)
    return out


def _identity(user: User) -> dict[str, Any]:
    """The leading fields of a user in Moodle's answers, in Moodle's order; empty optional ones left out."""
    out: dict[str, Any] = {
        "id": user.id,
        "username": user.username,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "fullname": user.fullname,
        "email": user.email,
        "department": user.department,
    }
    if user.institution:
        out["institution"] = user.institution
    if user.idnumber:
        out["idnumber"] = user.idnumber
    return out


def _profile(site: Site, user: User) -> dict[str, Any]:
    """The trailing fields of a user in Moodle's answers, in Moodle's order; empty optional ones left out."""
    out: dict[str, Any] = {}
    if user.description:
        out["description"] = user.description
        out["descriptionformat"] = 1
    if user.city:
        out["city"] = user.city
    if user.country:
        out["country"] = user.country
    out.update(picture_urls(site))
    return out


def user_details(site: Site, user: User) -> dict[str, Any]:
    """One user of ``core_user_get_users_by_field``; empty optional fields are left out, as Moodle does."""
    out = _identity(user)
    out.update(
        {
            "firstaccess": 0,
            "lastaccess": 0,
            "auth": user.auth,
            "suspended": user.suspended,
            "confirmed": user.confirmed,
            "lang": user.lang,
            "theme": user.theme,
            "timezone": user.timezone,
            "mailformat": user.mailformat,
            "trackforums": 0,
        }
    )
    out.update(_profile(site, user))
    return out


def roles(enrolment: Enrolment) -> list[dict[str, Any]]:
    return [
        {"roleid": rid, "name": "", "shortname": ROLE_SHORTNAMES.get(rid, ""), "sortorder": 0}
        for rid in sorted(enrolment.roles)
    ]


#: Standard roles holding moodle/course:viewhiddencourses: manager, course creator, (editing) teacher.
_VIEW_HIDDEN_ROLES = frozenset({1, 2, 3, 4})
ADMIN_USER_ID = 2


def enrolled_courses(site: Site, user: User) -> list[dict[str, Any]]:
    """The courses a user is actively enrolled in, newest first."""
    courses = []
    for cid in site.user_course_ids(user.id):
        enrolment = site.enrolments.get(cid, {}).get(user.id)
        course = site.courses.get(cid)
        if enrolment is None or course is None or enrolment.suspended:
            continue
        # Moodle drops hidden courses the user may not see (moodle/course:viewhiddencourses).
        if course.visible or enrolment.roles & _VIEW_HIDDEN_ROLES or user.id == ADMIN_USER_ID:
            courses.append(course)
    courses.sort(key=lambda c: -c.seq)
    return [{"id": c.id, "fullname": c.fullname, "shortname": c.shortname} for c in courses]


ENROLLED_FIELDS = (
    "id",
    "username",
    "firstname",
    "lastname",
    "fullname",
    "email",
    "department",
    "institution",
    "idnumber",
    "firstaccess",
    "lastaccess",
    "lastcourseaccess",
    "description",
    "descriptionformat",
    "city",
    "country",
    "profileimageurlsmall",
    "profileimageurl",
    "roles",
    "enrolledcourses",
)


def enrolled_user(
    site: Site, user: User, enrolment: Enrolment, userfields: set[str] | None
) -> dict[str, Any]:
    """One user of ``core_enrol_get_enrolled_users``; ``userfields`` None means every field."""
    full = _identity(user)
    full.update({"firstaccess": 0, "lastaccess": 0, "lastcourseaccess": 0})
    full.update(_profile(site, user))
    if userfields is None or "roles" in userfields:
        full["roles"] = roles(enrolment)
    if userfields is None or "enrolledcourses" in userfields:
        courses = enrolled_courses(site, user)
        if courses:
            full["enrolledcourses"] = courses
    if userfields is None:
        return full
    wanted = userfields | {"fullname"}
    return {k: v for k, v in full.items() if k in wanted}
