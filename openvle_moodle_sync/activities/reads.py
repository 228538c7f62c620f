"""Reads of Moodle that several activities share: the course's enrolments, a course by a field, the role functions.

Plain functions of the client: each activity class is given its client and calls them."""

from __future__ import annotations

from temporalio import activity

from openvle_moodle_sync.moodle.check import available_functions, can_swap_roles
from openvle_moodle_sync.moodle.client import EnrolledUser, MoodleClient

from .decide import InCourse

ENROLMENT_PAGE = 1000
"""Users per core_enrol_get_enrolled_users call: bounded answers on courses of any size."""


async def enrolled_users(moodle: MoodleClient, course_id: int) -> list[EnrolledUser]:
    """Everyone enrolled in the course (suspended too), with their roles, page by page."""
    users: list[EnrolledUser] = []
    while True:
        page = await moodle.get_enrolled_users(
            course_id, userfields=["id", "username", "email", "roles"],
            limitfrom=len(users), limitnumber=ENROLMENT_PAGE,
        )
        users += page
        if len(page) < ENROLMENT_PAGE:
            return users
        activity.heartbeat(len(users))


def roles_of(user: EnrolledUser) -> frozenset[int]:
    return frozenset(r["roleid"] for r in user.get("roles", []))


def in_course(user: EnrolledUser, suspended: set[int]) -> InCourse:
    """What the course holds of an enrolled user, for `decide`."""
    return InCourse(roles_of(user), user["id"] in suspended)


async def course_by(moodle: MoodleClient, field: str, value: str | int) -> dict | None:
    """The course whose ``field`` is exactly ``value``, or None."""
    courses = await moodle.get_courses_by_field(field, value)
    # Moodle matches short names without regard to case in some databases: insist on exact.
    exact = [c for c in courses if str(c.get(field, value)) == str(value)] if field != "id" else courses
    return dict(exact[0]) if exact else None


async def has_role_functions(moodle: MoodleClient) -> bool:
    """Whether the token has core_role_assign_roles and core_role_unassign_roles (asked when needed: an
    operator may add them to the service while the worker runs)."""
    return can_swap_roles(available_functions(await moodle.get_site_info()))
