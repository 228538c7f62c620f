"""What one person needs in an event's course: the one rule behind `enrol_user`, the removals and the plan.

A pure function of what Moodle holds of the person in the course (`InCourse`), the run's settings (its role
ids, MOODLE_UNENROL_ACTION, whether the token has the role functions) and the event (their role when listed,
whether this service enrolled them when not). The activities read Moodle, ask `decide`, and write what it
says; the plan asks the same question and writes nothing, so what it shows is what a deploy does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from openvle_moodle_sync.settings import UnenrolAction


class Need(StrEnum):
    NOTHING = "nothing"
    """Listed and enrolled, active, with exactly their managed role; or not listed and nothing to take away."""
    CREATE = "create"
    """No Moodle account: create it, then enrol."""
    ENROL = "enrol"
    """An account, not enrolled: enrol_manual_enrol_users (a welcome mail once the course has a teacher)."""
    RESTORE = "restore"
    """Enrolled, suspended or without their role, and no role swap in place possible: enrol_manual_enrol_users
    on the same enrolment re-activates it and gives the role (grades kept; Moodle mails on that call). Any
    other managed role then goes in place (`Decision.take_roles`)."""
    CHANGE_IN_PLACE = "change_in_place"
    """Enrolled and active, without their role or with another managed one, and the token has the role
    functions: core_role_assign_roles then core_role_unassign_roles (enrolment, grades kept; no mail)."""
    RECREATE = "recreate"
    """Enrolled with another managed role, and no role functions: Moodle's REST API cannot take one role away,
    so the enrolment is re-created with the new role (unenrol, enrol: the grades in the course are lost)."""
    TAKE_AWAY = "take_away"
    """No longer listed, enrolled by this service, and the action changes something: by MOODLE_UNENROL_ACTION."""


@dataclass(frozen=True)
class InCourse:
    """What Moodle holds of an enrolled person in the course."""

    roles: frozenset[int]
    """Every role they hold in the course (managed or not)."""
    suspended: bool = False


@dataclass(frozen=True)
class Decision:
    need: Need
    take_roles: frozenset[int] = frozenset()
    """Managed roles that go: a listed person's other roles (a role change), or, with TAKE_AWAY under
    remove_roles, the managed roles they hold."""

    @property
    def changes_role(self) -> bool:
        """A listed person holding another managed role (the plan's `change_role`)."""
        return self.need is not Need.TAKE_AWAY and bool(self.take_roles)


@dataclass(frozen=True)
class Person:
    """One person as the event and Moodle see them."""

    has_account: bool
    found: InCourse | None
    """None when not enrolled (or not looked at: a fresh course's first attempt)."""
    role_id: int | None
    """The role the event gives them; None when it no longer lists them."""
    ours: bool = False
    """This service enrolled them for the event and has not taken them away since (the roster's active entries)."""


@dataclass(frozen=True)
class Rules:
    """The run's settings that shape the answer."""

    managed: frozenset[int]
    """The run's role ids: the only roles this service gives or takes."""
    action: UnenrolAction = UnenrolAction.KEEP
    """MOODLE_UNENROL_ACTION (it matters only for people no longer listed)."""
    role_functions: bool = False
    """The token has core_role_assign_roles and core_role_unassign_roles."""


def decide(person: Person, rules: Rules) -> Decision:
    """What the person needs."""
    found, role_id = person.found, person.role_id
    if role_id is None:
        return _take_away(found, rules) if person.ours else Decision(Need.NOTHING)
    if not person.has_account:
        return Decision(Need.CREATE)
    if found is None:
        return Decision(Need.ENROL)
    others = found.roles & rules.managed - {role_id}
    if role_id in found.roles and not others and not found.suspended:
        return Decision(Need.NOTHING)
    if others and not rules.role_functions:
        return Decision(Need.RECREATE, others)
    if found.suspended:
        return Decision(Need.RESTORE, others)
    return Decision(Need.CHANGE_IN_PLACE if rules.role_functions else Need.RESTORE, others)


def _take_away(found: InCourse | None, rules: Rules) -> Decision:
    action = rules.action
    held = found.roles & rules.managed if found is not None else frozenset()
    if (found is None or action == UnenrolAction.KEEP or (action == UnenrolAction.SUSPEND and found.suspended)
            or (action == UnenrolAction.REMOVE_ROLES and not held)):
        return Decision(Need.NOTHING)
    return Decision(Need.TAKE_AWAY, held if action == UnenrolAction.REMOVE_ROLES else frozenset())


def depends_on_role_functions(person: Person, rules: Rules) -> bool:
    """Whether the answer depends on the token's role functions (worth a read of the site info)."""
    return decide(person, replace(rules, role_functions=True)) != decide(person, replace(rules, role_functions=False))
