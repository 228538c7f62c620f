"""The optional functions of the lab's Extended service: roles in place, and the enrolment methods.

Answers recorded on the Moodle 4.5 lab (see tests/live/test_unenrol_actions_live.py):
- core_role_assign_roles / core_role_unassign_roles answer ``null``, send no mail and are idempotent.
  Assigning to a user who is not enrolled succeeds, and the user is still not listed as a participant.
  A user id that does not exist: assign raises a coding_error, unassign does nothing. An unknown course or
  a role not assignable in a course: invalidparameter.
- core_enrol_submit_user_enrolment_form cannot be used over REST: without the form's ``_qf__`` marker it
  answers ``{"result": false, "validationerror": true}``; with it Moodle asks for the browser session's
  ``sesskey`` (missingparam), which a web-service call cannot have.
- core_enrol_unenrol_user_enrolment takes a user enrolment id (``ue``), which no function of the service
  returns.
- core_enrol_get_course_enrolment_methods lists only methods with public info (self, guest): [] for a
  course with the manual method only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from .errors import coding_error, invalid_parameter, missing_record, moodle_exception
from .model import ASSIGNABLE_IN_COURSE
from .params import Multiple, Single, Value
from .site import Site

_ASSIGNMENT = Single(
    {
        "roleid": Value("int"),
        "userid": Value("int"),
        "contextid": Value("int", "optional"),
        "contextlevel": Value("alpha", "optional"),
        "instanceid": Value("int", "optional"),
    }
)
ASSIGN_PARAMS = Single({"assignments": Multiple(_ASSIGNMENT)})
UNASSIGN_PARAMS = Single({"unassignments": Multiple(_ASSIGNMENT)})
METHODS_PARAMS = Single({"courseid": Value("int")})
SUBMIT_FORM_PARAMS = Single({"formdata": Value("raw")})
UNENROL_UE_PARAMS = Single({"ueid": Value("int")})


def _course_of(site: Site, item: dict[str, Any]) -> int:
    course_id = item.get("instanceid")
    if item.get("contextlevel") != "course" or course_id not in site.courses:
        raise invalid_parameter("Context does not exist")
    if item["roleid"] not in ASSIGNABLE_IN_COURSE:
        raise invalid_parameter(f"Role {item['roleid']} cannot be assigned in this context")
    return int(course_id)


def assign_roles(site: Site, params: dict[str, Any]) -> None:
    with site.transaction():
        for item in params["assignments"]:
            course_id = _course_of(site, item)
            if item["userid"] not in site.users:
                raise coding_error("User ID does not exist or is deleted!", "")
            site.assign_role(course_id, item["userid"], item["roleid"])


def unassign_roles(site: Site, params: dict[str, Any]) -> None:
    with site.transaction():
        for item in params["unassignments"]:
            course_id = _course_of(site, item)
            site.unassign_role(course_id, item["userid"], item["roleid"])


def get_course_enrolment_methods(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    if params["courseid"] not in site.courses:
        raise missing_record("course", "")
    return []  # the manual method has no public info


def submit_user_enrolment_form(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    data = {k: v[-1] for k, v in parse_qs(params["formdata"]).items()}
    ue_id = int(data.get("ue", "0") or 0)
    if site.enrolment_by_id(ue_id) is None:
        raise missing_record("user_enrolments", "")
    if data.get("_qf__enrol_user_enrolment_form") == "1":
        raise moodle_exception("missingparam", "A required parameter (sesskey) was missing")
    return {"result": False, "validationerror": True}


def unenrol_user_enrolment(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    enrolment = site.enrolment_by_id(params["ueid"])
    if enrolment is None:
        return {"result": False, "errors": [{"key": "invalidrequest", "message": "Invalid request"}]}
    with site.transaction():
        site.unenrol(enrolment.course_id, enrolment.user_id)
    return {"result": True, "errors": []}
