"""One web-service call: token, function look-up, service access, parameter validation, the function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import ws_courses, ws_enrol, ws_roles, ws_site, ws_users
from .errors import MoodleError, access_exception, invalid_token, missing_record
from .known_functions import KNOWN_FUNCTIONS
from .params import Single, validate
from .site import Site


@dataclass(frozen=True)
class Function:
    name: str
    params: Single
    run: Callable[[Site, dict[str, Any]], Any]
    write: bool


def _site_info_placeholder(site: Site, params: dict[str, Any]) -> Any:
    raise AssertionError("site info is answered by Service.call")  # pragma: no cover


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("core_webservice_get_site_info", ws_site.SITE_INFO_PARAMS, _site_info_placeholder, False),
        Function("core_course_get_courses", ws_courses.GET_COURSES_PARAMS, ws_courses.get_courses, False),
        Function("core_course_search_courses", ws_courses.SEARCH_PARAMS, ws_courses.search_courses, False),
        Function(
            "core_course_get_courses_by_field",
            ws_courses.BY_FIELD_PARAMS,
            ws_courses.get_courses_by_field,
            False,
        ),
        Function("core_course_create_courses", ws_courses.CREATE_PARAMS, ws_courses.create_courses, True),
        Function("core_course_update_courses", ws_courses.UPDATE_PARAMS, ws_courses.update_courses, True),
        Function(
            "core_course_duplicate_course", ws_courses.DUPLICATE_PARAMS, ws_courses.duplicate_course, True
        ),
        Function("core_course_delete_courses", ws_courses.DELETE_PARAMS, ws_courses.delete_courses, True),
        Function("core_course_get_categories", ws_site.GET_CATEGORIES_PARAMS, ws_site.get_categories, False),
        Function(
            "core_enrol_get_enrolled_users", ws_enrol.GET_ENROLLED_PARAMS, ws_enrol.get_enrolled_users, False
        ),
        Function("enrol_manual_enrol_users", ws_enrol.ENROL_PARAMS, ws_enrol.enrol_users, True),
        Function("enrol_manual_unenrol_users", ws_enrol.UNENROL_PARAMS, ws_enrol.unenrol_users, True),
        Function("core_user_create_users", ws_users.CREATE_PARAMS, ws_users.create_users, True),
        Function(
            "core_user_get_users_by_field", ws_users.BY_FIELD_PARAMS, ws_users.get_users_by_field, False
        ),
        Function("core_role_assign_roles", ws_roles.ASSIGN_PARAMS, ws_roles.assign_roles, True),
        Function("core_role_unassign_roles", ws_roles.UNASSIGN_PARAMS, ws_roles.unassign_roles, True),
        Function(
            "core_enrol_get_course_enrolment_methods",
            ws_roles.METHODS_PARAMS,
            ws_roles.get_course_enrolment_methods,
            False,
        ),
        Function(
            "core_enrol_submit_user_enrolment_form",
            ws_roles.SUBMIT_FORM_PARAMS,
            ws_roles.submit_user_enrolment_form,
            True,
        ),
        Function(
            "core_enrol_unenrol_user_enrolment",
            ws_roles.UNENROL_UE_PARAMS,
            ws_roles.unenrol_user_enrolment,
            True,
        ),
    )
}
OPTIONAL_FUNCTIONS: list[str] = [
    "core_role_assign_roles",
    "core_role_unassign_roles",
    "core_enrol_get_course_enrolment_methods",
    "core_enrol_submit_user_enrolment_form",
    "core_enrol_unenrol_user_enrolment",
]
MAIN_SERVICE: list[str] = [f for f in FUNCTIONS if f not in OPTIONAL_FUNCTIONS]
EXTENDED_SERVICE: list[str] = MAIN_SERVICE + OPTIONAL_FUNCTIONS
LIMITED_SERVICE: list[str] = ["core_webservice_get_site_info", "core_course_get_courses"]
WRITE_FUNCTIONS: frozenset[str] = frozenset(name for name, f in FUNCTIONS.items() if f.write)
_CONTROL_FIELDS = ("wstoken", "wsfunction", "moodlewsrestformat")


@dataclass
class Service:
    """Routes calls by token to the main service (the 14 functions), the extended one (the 14 and the
    optional role and enrolment functions, as the lab's Extended token) or the limited one."""

    site: Site
    token: str
    limited_token: str | None
    access_key: str
    token_valid: bool = True
    revoked_functions: frozenset[str] = frozenset()
    extended_token: str | None = None

    def functions_for(self, token: str | None) -> list[str] | None:
        if not self.token_valid or not token:
            return None
        if token == self.token:
            return [f for f in MAIN_SERVICE if f not in self.revoked_functions]
        if self.extended_token is not None and token == self.extended_token:
            return [f for f in EXTENDED_SERVICE if f not in self.revoked_functions]
        if self.limited_token is not None and token == self.limited_token:
            return list(LIMITED_SERVICE)
        return None

    def call(self, token: str | None, function: str, raw: dict[str, Any]) -> Any:
        """Run one call; raise MoodleError for the answers Moodle gives as an exception body."""
        allowed = self.functions_for(token)
        if allowed is None:
            raise invalid_token()
        if function not in FUNCTIONS and function not in KNOWN_FUNCTIONS:
            raise missing_record(
                "external_functions",
                f"SELECT * FROM {{external_functions}} WHERE name = ?\n[array (\n  0 => '{function}',\n)]",
            )
        if function not in allowed:
            raise access_exception(function)
        spec = FUNCTIONS[function]
        args = {
            k: v for k, v in raw.items() if k not in _CONTROL_FIELDS and not k.startswith("moodlewssetting")
        }
        params = validate(spec.params, args)
        if function == "core_webservice_get_site_info":
            return ws_site.site_info(self.site, params, allowed, self.access_key)
        return spec.run(self.site, params)


def is_write(function: str) -> bool:
    return function in WRITE_FUNCTIONS


__all__ = [
    "EXTENDED_SERVICE",
    "FUNCTIONS",
    "LIMITED_SERVICE",
    "MAIN_SERVICE",
    "WRITE_FUNCTIONS",
    "MoodleError",
    "Service",
    "is_write",
]
