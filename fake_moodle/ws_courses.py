"""The course functions: get, search, get by field, create, update, duplicate, delete."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from .errors import MoodleError, invalid_parameter, missing_record, moodle_exception, php_error
from .model import Course, Enrolment
from .params import DEFAULT, OPTIONAL, Multiple, Single, Value
from .site import Site
from .views import course_for_get_courses, course_full, course_summary

_FORMAT_OPTIONS = Multiple(Single({"name": Value("alphanumext"), "value": Value("raw")}), OPTIONAL)
_CUSTOM_FIELDS = Multiple(Single({"shortname": Value("alphanumext"), "value": Value("raw")}), OPTIONAL)


def _course_keys(create: bool) -> dict[str, Value | Single | Multiple]:
    req = "required" if create else OPTIONAL

    def dflt(ptype: str, value: Any) -> Value:
        return Value(ptype, DEFAULT, value) if create else Value(ptype, OPTIONAL)

    keys: dict[str, Value | Single | Multiple] = {} if create else {"id": Value("int")}
    keys.update(
        {
            "fullname": Value("text", req),
            "shortname": Value("text", req),
            "categoryid": Value("int", req),
            "idnumber": Value("raw", OPTIONAL),
            "summary": Value("raw", OPTIONAL),
            "summaryformat": dflt("int", 1),
            "format": dflt("plugin", "topics"),
            "showgrades": dflt("int", 1),
            "newsitems": dflt("int", 5),
            "startdate": Value("int", OPTIONAL),
            "enddate": Value("int", OPTIONAL),
            "numsections": Value("int", OPTIONAL),
            "maxbytes": dflt("int", 0),
            "showreports": dflt("int", 0),
            "visible": Value("int", OPTIONAL),
            "hiddensections": Value("int", OPTIONAL),
            "groupmode": dflt("int", 0),
            "groupmodeforce": dflt("int", 0),
            "defaultgroupingid": dflt("int", 0),
            "enablecompletion": Value("int", OPTIONAL),
            "completionnotify": Value("int", OPTIONAL),
            "lang": Value("safedir", OPTIONAL),
            "forcetheme": Value("plugin", OPTIONAL),
            "courseformatoptions": _FORMAT_OPTIONS,
            "customfields": _CUSTOM_FIELDS,
        }
    )
    return keys


CREATE_PARAMS = Single({"courses": Multiple(Single(_course_keys(create=True)))})
UPDATE_PARAMS = Single({"courses": Multiple(Single(_course_keys(create=False)))})
GET_COURSES_PARAMS = Single({"options": Single({"ids": Multiple(Value("int"), OPTIONAL)}, DEFAULT, {})})
SEARCH_PARAMS = Single(
    {
        "criterianame": Value("alpha"),
        "criteriavalue": Value("raw"),
        "page": Value("int", DEFAULT, 0),
        "perpage": Value("int", DEFAULT, 0),
        "requiredcapabilities": Multiple(Value("capability"), DEFAULT, []),
        "limittoenrolled": Value("bool", DEFAULT, 0),
        "onlywithcompletion": Value("bool", DEFAULT, 0),
    }
)
BY_FIELD_PARAMS = Single({"field": Value("alpha", DEFAULT, ""), "value": Value("raw", DEFAULT, "")})
DUPLICATE_PARAMS = Single(
    {
        "courseid": Value("int"),
        "fullname": Value("text"),
        "shortname": Value("text"),
        "categoryid": Value("int"),
        "visible": Value("int", DEFAULT, 1),
        "options": Multiple(Single({"name": Value("alphaext"), "value": Value("raw")}), DEFAULT, []),
    }
)
DELETE_PARAMS = Single({"courseids": Multiple(Value("int"))})

# Settings the copy takes when duplicate_course's options leave them out (the site's backup defaults).
BACKUP_DEFAULTS = {
    "activities": 1,
    "blocks": 1,
    "filters": 1,
    "users": 1,
    "enrolments": 1,
    "role_assignments": 1,
    "comments": 1,
    "userscompletion": 1,
    "logs": 0,
    "grade_histories": 0,
}


def _invalid_param(name: str) -> MoodleError:
    return moodle_exception("errorinvalidparam", f'The param "{name}" is invalid.')


def _shortname_taken(name: str) -> MoodleError:
    return moodle_exception("shortnametaken", f"Short name is already used for another course ({name})")


def _idnumber_taken(idnumber: str) -> MoodleError:
    return moodle_exception(
        "courseidnumbertaken", f"ID number is already used for another course ({idnumber})"
    )


def _check_dates(start: int, end: int) -> None:
    if end and end < start:
        raise moodle_exception("enddatebeforestartdate", "The course end date must be after the start date.")


def _apply_format_options(fields: dict[str, Any], options: list[dict[str, Any]] | None) -> None:
    for option in options or []:
        if option["name"] in ("hiddensections", "coursedisplay", "numsections") and "value" in option:
            value = option["value"]
            if re.fullmatch(r"-?\d+", str(value)):
                fields[option["name"]] = int(value)


# -- read ------------------------------------------------------------------------------------------


def get_courses(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    ids = params["options"].get("ids") or []
    if ids:
        wanted = sorted({i for i in ids if i in site.courses})
        courses = [site.courses[i] for i in wanted]
    else:
        courses = [site.courses[i] for i in sorted(site.courses)]
    return [course_for_get_courses(site, c) for c in courses]


def _category_order(site: Site, course: Course) -> tuple[int, int]:
    cat = site.categories.get(course.category_id)
    return (cat.sortorder if cat else 0, -course.seq)


def search_courses(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    name = params["criterianame"]
    if name not in ("search", "modulelist", "blocklist", "tagid"):
        raise invalid_parameter(
            f"Invalid value for criterianame parameter (value: {name}),"
            "allowed values are: search,modulelist,blocklist,tagid"
        )
    matches: list[Course] = []
    if name == "search":
        terms = [t.lower() for t in params["criteriavalue"].split() if t]
        for course in site.courses.values():
            if course.is_site:
                continue
            hay = " ".join((course.fullname, course.shortname, course.idnumber, course.summary)).lower()
            if all(t in hay for t in terms):
                matches.append(course)
    matches.sort(key=lambda c: _category_order(site, c))
    page, perpage = params["page"], params["perpage"]
    shown = matches[page * perpage : (page + 1) * perpage] if perpage > 0 else matches
    return {"total": len(matches), "courses": [course_summary(site, c) for c in shown], "warnings": []}


def get_courses_by_field(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    field, value = params["field"], params["value"]
    if not field:
        courses = [site.courses[i] for i in sorted(site.courses)]
    elif field in ("id", "category", "sectionid"):
        m = re.match(r"^\s*([+-]?\d+)", value)
        number = int(m.group(1)) if m else 0
        if field == "id":
            courses = [site.courses[number]] if number in site.courses else []
        elif field == "category":
            courses = sorted(
                (c for c in site.courses.values() if c.category_id == number), key=lambda c: c.id
            )
        else:
            courses = []
    elif field == "ids":
        ids = [int(v) for v in re.sub(r"[^0-9,]", "", value).split(",") if v]
        if any(i not in site.courses for i in ids):
            raise php_error("Error", 'Attempt to assign property "contextvalidated" on null')
        courses = [site.courses[i] for i in dict.fromkeys(ids)]
    elif field == "shortname":
        found = site.course_by_shortname(value)
        courses = [found] if found else []
    elif field == "idnumber":
        found = site.course_by_idnumber(value) if value else None
        courses = [found] if found else []
    else:
        raise invalid_parameter("Invalid field name")
    return {"courses": [course_full(site, c) for c in courses], "warnings": []}


# -- write -----------------------------------------------------------------------------------------


def create_courses(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    created: list[dict[str, Any]] = []
    with site.transaction():
        for item in params["courses"]:
            cat_id = item["categoryid"]
            if cat_id not in site.categories:
                raise moodle_exception(
                    "errorcatcontextnotvalid",
                    f"You cannot execute functions in the category context (category id:{cat_id}). "
                    "The context error message was: Invalid parameter value detected",
                )
            if item["fullname"].strip() == "":
                raise _invalid_param("fullname")
            if item["shortname"].strip() == "":
                raise _invalid_param("shortname")
            if "lang" in item and item["lang"] != "en":
                raise _invalid_param("lang")
            if site.course_by_shortname(item["shortname"]) is not None:
                raise _shortname_taken(item["shortname"])
            idnumber = item.get("idnumber") or ""
            if idnumber and site.course_by_idnumber(idnumber) is not None:
                raise _idnumber_taken(idnumber)
            _check_dates(item.get("startdate", 0), item.get("enddate", 0))
            now = site.now()
            fields: dict[str, Any] = {
                k: item[k]
                for k in (
                    "summaryformat",
                    "format",
                    "showgrades",
                    "newsitems",
                    "maxbytes",
                    "showreports",
                    "groupmode",
                    "groupmodeforce",
                    "defaultgroupingid",
                )
            }
            for k in (
                "summary",
                "startdate",
                "enddate",
                "numsections",
                "visible",
                "hiddensections",
                "enablecompletion",
                "completionnotify",
                "lang",
            ):
                if k in item:
                    fields[k] = item[k]
            _apply_format_options(fields, item.get("courseformatoptions"))
            course = Course(
                site.next_course_id,
                item["shortname"],
                item["fullname"],
                cat_id,
                idnumber=idnumber,
                timecreated=now,
                timemodified=now,
                cacherev=now,
                **fields,
            )
            site.add_course(course)
            created.append({"id": course.id, "shortname": course.shortname})
    return created


_UPDATABLE = (
    "fullname",
    "shortname",
    "idnumber",
    "summary",
    "summaryformat",
    "format",
    "showgrades",
    "newsitems",
    "startdate",
    "enddate",
    "numsections",
    "maxbytes",
    "showreports",
    "visible",
    "hiddensections",
    "groupmode",
    "groupmodeforce",
    "defaultgroupingid",
    "enablecompletion",
    "completionnotify",
    "lang",
)


def _update_one(site: Site, item: dict[str, Any]) -> None:
    course = site.courses.get(item["id"])
    if course is None:
        raise missing_record("course", "")
    if "fullname" in item and item["fullname"] != course.fullname and item["fullname"].strip() == "":
        raise _invalid_param("fullname")
    if "shortname" in item and item["shortname"] != course.shortname and item["shortname"].strip() == "":
        raise _invalid_param("shortname")
    if "lang" in item and item["lang"] != course.lang and item["lang"] != "en":
        raise _invalid_param("lang")
    if "shortname" in item:
        other = site.course_by_shortname(item["shortname"])
        if other is not None and other.id != course.id:
            raise _shortname_taken(item["shortname"])
    if item.get("idnumber"):
        other = site.course_by_idnumber(item["idnumber"])
        if other is not None and other.id != course.id:
            raise _idnumber_taken(item["idnumber"])
    _check_dates(item.get("startdate", course.startdate), item.get("enddate", course.enddate))
    changes = {k: item[k] for k in _UPDATABLE if k in item}
    _apply_format_options(changes, item.get("courseformatoptions"))
    for name, value in changes.items():
        site.set_course_field(course, name, value)
    site.set_course_field(course, "timemodified", site.now())
    if "categoryid" in item and item["categoryid"] != course.category_id:
        site.set_course_field(course, "category_id", item["categoryid"])
        if item["categoryid"] not in site.categories:
            # Moodle has already written the course row when it fails to find the category.
            site.set_course_field(course, "visible", 0)
            raise missing_record("course_categories", "")


def update_courses(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    warnings: list[dict[str, Any]] = []
    for item in params["courses"]:
        try:
            _update_one(site, item)
        except MoodleError as e:
            warnings.append(
                {"item": "course", "itemid": item["id"], "warningcode": e.errorcode, "message": e.message}
            )
    return {"warnings": warnings}


def duplicate_course(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    source = site.courses.get(params["courseid"])
    if source is None:
        raise moodle_exception("invalidcourseid", "You are trying to use an invalid course ID")
    cat_id = params["categoryid"]
    if cat_id not in site.categories:
        raise missing_record(
            "course_categories",
            f"SELECT id,parent FROM {{course_categories}} WHERE id = ?\n[array (\n  0 => {cat_id},\n)]",
        )
    settings = dict(BACKUP_DEFAULTS)
    for option in params["options"]:
        m = re.match(r"^\s*([+-]?\d+)", str(option["value"]))
        value = int(m.group(1)) if m else 0
        if value not in (0, 1) or option["name"] not in BACKUP_DEFAULTS:
            raise moodle_exception("invalidextparam", f"Invalid external api parameter: {option['name']}")
        settings[option["name"]] = value
    taken = site.course_by_shortname(params["shortname"])
    if taken is not None:
        raise _shortname_taken(taken.fullname)
    now = site.now()
    # The source's settings under the new names, category and visibility (add_course gives it its place).
    copy = dataclasses.replace(
        source,
        id=site.next_course_id,
        shortname=params["shortname"],
        fullname=params["fullname"],
        category_id=cat_id,
        idnumber="",
        visible=1 if params["visible"] else 0,
        cacherev=now,
    )
    with site.transaction():
        site.add_course(copy)
        if settings["users"]:
            for enrolment in list(site.enrolments.get(source.id, {}).values()):
                _copy_enrolment(site, copy.id, enrolment)
    return {"id": copy.id, "shortname": copy.shortname}


def _copy_enrolment(site: Site, course_id: int, enrolment: Enrolment) -> None:
    for role in sorted(enrolment.roles):
        site.enrol(
            course_id,
            enrolment.user_id,
            role,
            suspended=enrolment.suspended,
            timestart=enrolment.timestart,
            timeend=enrolment.timeend,
        )


def delete_courses(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    warnings: list[dict[str, Any]] = []
    for course_id in params["courseids"]:
        course = site.courses.get(course_id)
        if course is None:
            warnings.append(
                {
                    "item": "course",
                    "itemid": course_id,
                    "warningcode": "unknowncourseidnumber",
                    "message": f"Unknown course ID {course_id}",
                }
            )
            continue
        if course.is_site:
            warnings.append(
                {
                    "item": "course",
                    "itemid": course_id,
                    "warningcode": "cannotdeletecategorycourse",
                    "message": f"Course {course_id} failed to be deleted",
                }
            )
            continue
        if course.category_id not in site.categories:
            raise missing_record(
                "course_categories",
                "SELECT id,parent FROM {course_categories} WHERE id = ?\n"
                f"[array (\n  0 => '{course.category_id}',\n)]",
            )
        site.remove_course(course_id)
    return {"warnings": warnings}
