"""The mass-removal brake: a deploy takes nobody away when it would take away too many at once.

An empty or truncated participant list sent by mistake would otherwise empty the course (the failure of
full syncs such as enrol_database). One rule, used by the deploy and by the plan, so both agree."""

from __future__ import annotations

ALWAYS_ALLOWED = 2
"""Removing this many people or fewer never trips the brake, whatever the percentage (small courses)."""


def removal_percent(removing: int, enrolled_by_service: int) -> float:
    return 100.0 * removing / enrolled_by_service if enrolled_by_service else 0.0


def brake_holds(removing: int, enrolled_by_service: int, max_percent: float) -> bool:
    """True when taking ``removing`` of the ``enrolled_by_service`` people away is too many for one deploy."""
    return removing > ALWAYS_ALLOWED and removal_percent(removing, enrolled_by_service) > max_percent


def brake_message(event_id: str, course_id: int, removing: int, enrolled_by_service: int,
                  max_percent: float) -> str:
    percent = removal_percent(removing, enrolled_by_service)
    return (
        f"The deploy of event {event_id} would take {removing} of the {enrolled_by_service} people it enrolled "
        f"away from Moodle course {course_id} ({percent:.0f}%, more than MOODLE_MAX_REMOVAL_PERCENT="
        f"{max_percent:g}%), so it took nobody away; adds and role fixes are done. Check the event's participant "
        "list (an empty or cut-short list is the usual cause; `python -m starter plan --event EVENT.json` shows "
        "who would go). If they really leave, deploy again with `python -m starter deploy --event EVENT.json "
        "--allow-mass-removal` (API: deploy_event(..., allow_mass_removal=True))."
    )
