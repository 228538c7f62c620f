"""`decide`, the one rule of what a participant needs: every combination of its inputs against a table.

The table is written from docs/workflows.md's rules, row by row, first match wins; the test walks every
combination of account, roles held (the listed role, another managed role, a role given by hand), suspension,
listed role, roster, role functions and MOODLE_UNENROL_ACTION, and checks each against it."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from openvle_moodle_sync.activities.decide import (
    Decision,
    InCourse,
    Need,
    Person,
    Rules,
    decide,
    depends_on_role_functions,
)
from openvle_moodle_sync.settings import UnenrolAction

STUDENT, TEACHER, MANAGER = 5, 3, 1
MANAGED = frozenset({STUDENT, TEACHER})  # MANAGER: a role given by hand, never given or taken here


@dataclass(frozen=True)
class Case:
    person: Person
    rules: Rules

    @property
    def listed(self) -> bool:
        return self.person.role_id is not None

    @property
    def enrolled(self) -> bool:
        return self.person.found is not None

    @property
    def holds_role(self) -> bool:
        return self.person.found is not None and self.person.role_id in self.person.found.roles

    @property
    def held_managed(self) -> frozenset[int]:
        return self.person.found.roles & MANAGED if self.person.found else frozenset()

    @property
    def others(self) -> frozenset[int]:
        return self.held_managed - {self.person.role_id} if self.listed else frozenset()

    @property
    def suspended(self) -> bool:
        return self.person.found is not None and self.person.found.suspended


Row = tuple[str, Callable[[Case], bool], Callable[[Case], Decision]]

# (rule, when, what): first match wins.
TABLE: list[Row] = [
    ("listed, no account: create it", lambda c: c.listed and not c.person.has_account,
     lambda c: Decision(Need.CREATE)),
    ("listed, not enrolled: enrol", lambda c: c.listed and not c.enrolled,
     lambda c: Decision(Need.ENROL)),
    ("listed, active, exactly their role: nothing",
     lambda c: c.listed and c.holds_role and not c.others and not c.suspended,
     lambda c: Decision(Need.NOTHING)),
    ("listed, another managed role, no role functions: re-create the enrolment",
     lambda c: c.listed and bool(c.others) and not c.rules.role_functions,
     lambda c: Decision(Need.RECREATE, c.others)),
    ("listed, suspended: re-activate on the same enrolment, other roles go in place",
     lambda c: c.listed and c.suspended,
     lambda c: Decision(Need.RESTORE, c.others)),
    ("listed, active, role missing or another one, role functions: swap in place",
     lambda c: c.listed and c.rules.role_functions,
     lambda c: Decision(Need.CHANGE_IN_PLACE, c.others)),
    ("listed, active, role missing, no role functions: the enrol call gives it back",
     lambda c: c.listed,
     lambda c: Decision(Need.RESTORE)),
    ("not listed, not enrolled by this service: never touched", lambda c: not c.person.ours,
     lambda c: Decision(Need.NOTHING)),
    ("not listed, no longer enrolled: nothing to take", lambda c: not c.enrolled,
     lambda c: Decision(Need.NOTHING)),
    ("keep: nothing", lambda c: c.rules.action == UnenrolAction.KEEP,
     lambda c: Decision(Need.NOTHING)),
    ("suspend, already suspended: nothing",
     lambda c: c.rules.action == UnenrolAction.SUSPEND and c.suspended,
     lambda c: Decision(Need.NOTHING)),
    ("remove_roles, no managed role left: nothing",
     lambda c: c.rules.action == UnenrolAction.REMOVE_ROLES and not c.held_managed,
     lambda c: Decision(Need.NOTHING)),
    ("remove_roles: the managed roles they hold go (a role given by hand stays)",
     lambda c: c.rules.action == UnenrolAction.REMOVE_ROLES,
     lambda c: Decision(Need.TAKE_AWAY, c.held_managed)),
    ("unenrol, suspend: taken away", lambda c: True,
     lambda c: Decision(Need.TAKE_AWAY)),
]


def all_cases() -> list[Case]:
    role_sets = [frozenset(s) for n in range(4) for s in itertools.combinations((STUDENT, TEACHER, MANAGER), n)]
    found_states: list[InCourse | None] = [None, *(InCourse(r, s) for r in role_sets for s in (False, True))]
    cases = []
    for has_account, found, role_id, ours, functions, action in itertools.product(
            (False, True), found_states, (STUDENT, TEACHER, None), (False, True), (False, True), UnenrolAction):
        if found is not None and not has_account:
            continue  # enrolled needs an account
        cases.append(Case(Person(has_account, found, role_id, ours), Rules(MANAGED, action, functions)))
    return cases


CASES = all_cases()


def expected(case: Case) -> tuple[str, Decision]:
    rule, _, what = next(row for row in TABLE if row[1](case))
    return rule, what(case)


def test_every_combination_follows_the_table() -> None:
    assert len(CASES) == 48 + 16 * 48 + 48  # no account; enrolled (8 role sets x 2); not enrolled
    used: set[str] = set()
    wrong = []
    for case in CASES:
        rule, want = expected(case)
        used.add(rule)
        if decide(case.person, case.rules) != want:
            wrong.append((case, rule, decide(case.person, case.rules), want))
    assert not wrong, wrong[:5]
    assert used == {row[0] for row in TABLE}  # each rule of the table is reached by some combination


def test_the_role_functions_matter_only_where_an_active_enrolment_changes_or_one_is_re_created() -> None:
    for case in CASES:
        need = decide(case.person, case.rules).need
        changes = case.listed and case.enrolled and need is not Need.NOTHING
        assert depends_on_role_functions(case.person, case.rules) == (
            changes and (not case.suspended or bool(case.others))), case


def test_examples_in_words() -> None:
    rules = Rules(MANAGED, UnenrolAction.SUSPEND, role_functions=True)
    teacher_now_student = Person(True, InCourse(frozenset({TEACHER})), STUDENT)
    assert decide(teacher_now_student, rules) == Decision(Need.CHANGE_IN_PLACE, frozenset({TEACHER}))
    assert decide(teacher_now_student, Rules(MANAGED)) == Decision(Need.RECREATE, frozenset({TEACHER}))
    back_after_suspend = Person(True, InCourse(frozenset({STUDENT}), suspended=True), STUDENT)
    assert decide(back_after_suspend, rules) == Decision(Need.RESTORE)
    manager_leaving = Person(True, InCourse(frozenset({STUDENT, MANAGER})), None, ours=True)
    assert decide(manager_leaving, Rules(MANAGED, UnenrolAction.REMOVE_ROLES)) == Decision(
        Need.TAKE_AWAY, frozenset({STUDENT}))
    assert decide(manager_leaving, rules) == Decision(Need.TAKE_AWAY)
    hand_enrolled = Person(True, InCourse(frozenset({STUDENT})), None, ours=False)
    assert decide(hand_enrolled, Rules(MANAGED, UnenrolAction.UNENROL)) == Decision(Need.NOTHING)
