"""The read-only plan of a deploy: its course, accounts, enrolments, removals and mails, from reads only.

It runs on the worker (the Moodle token stays there) as one activity of the workflow `PlanEvent`, and
calls only Moodle's read functions: core_course_get_courses_by_field (when the event has no course yet:
would the deploy's first step make it?), core_user_get_users_by_field, core_enrol_get_enrolled_users and,
when someone enrolled needs a role given back or changed, core_webservice_get_site_info (can the token swap
roles in place?). What each participant needs is `decide`'s answer, as in the deploy."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from temporalio import activity

from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.models import Participant, Role
from openvle_moodle_sync.moodle.client import MoodleClient
from openvle_moodle_sync.settings import MatchField, Settings, UnenrolAction

from .brake import brake_holds
from .decide import Decision, InCourse, Need, Person, Rules, decide, depends_on_role_functions
from .errors import moodle_errors
from .moodle_sync import LOOKUP_BATCH, LOOKUPS_AT_ONCE, email_spellings, pending_shortname, slug_taken, template_missing
from .plan_types import (
    AccountMatch,
    CourseAction,
    CoursePlan,
    Drift,
    DriftKind,
    EventPlan,
    MailKind,
    MatchHow,
    PlanEventInput,
    PlannedEnrol,
    PlannedRoleChange,
    PlanProblem,
)
from .reads import course_by, enrolled_users, has_role_functions, roles_of
from .roster import active
from .types import Removal


class PlanActivities:
    """The plan's activity, bound to one Moodle client and the worker's settings; it reads only."""

    def __init__(self, moodle: MoodleClient, settings: Settings) -> None:
        self.moodle = moodle
        self.settings = settings

    @activity.defn
    @moodle_errors
    async def plan_event(self, spec: PlanEventInput) -> EventPlan:
        event, config = spec.event, spec.config
        plan = EventPlan(event_id=event.id, course=CoursePlan(
            CourseAction.REUSE if spec.course_id is not None else CourseAction.CREATE, spec.course_id))
        if spec.course_id is None and event.moodle_course_id is not None:
            plan.problems = await self._course_problems(event.id, event.slug, event.moodle_course_id)
        matches = await self._match_accounts(event.participants, config.match_field)
        plan.matched_accounts = [matches[p.id] for p in event.participants if p.id in matches]
        plan.create_accounts = [p.id for p in event.participants if p.id not in matches]
        enrolled: dict[int, frozenset[int]] = {}
        suspended: set[int] = set()
        if spec.course_id is not None:
            enrolled = {u["id"]: roles_of(u) for u in await enrolled_users(self.moodle, spec.course_id)}
            if enrolled:
                suspended = await self.moodle.get_suspended_user_ids(spec.course_id)
        role_ids = config.role_ids
        rules = Rules(frozenset(role_ids.values()), action=spec.removal_action)

        def person(user_id: int | None, role: Role | None) -> Person:
            roles = enrolled.get(user_id) if user_id is not None else None
            found = InCourse(roles, user_id in suspended) if roles is not None else None
            return Person(user_id is not None, found, role_ids[role] if role else None, ours=role is None)

        people = {p.id: person(matches[p.id].moodle_user_id if p.id in matches else None, p.role)
                  for p in event.participants}
        # Only a role given or swapped in place (the token has the role functions) sends no mail.
        if any(depends_on_role_functions(who, rules) for who in people.values()):
            rules = replace(rules, role_functions=await has_role_functions(self.moodle))
        decisions: dict[str, Decision] = {pid: decide(who, rules) for pid, who in people.items()}
        enrolled_by_service = active(spec.roster)  # not those it withdrew since (suspended, roles removed)
        for p in event.participants:
            user_id = matches[p.id].moodle_user_id if p.id in matches else None
            decision, earlier = decisions[p.id], enrolled_by_service.get(p.id)
            if decision.need is Need.NOTHING:
                plan.unchanged += 1
            elif user_id is not None and decision.changes_role:
                plan.change_role.append(PlannedRoleChange(p.id, user_id, p.role))
                if earlier is not None and earlier.role == p.role:
                    plan.drift.append(Drift(p.id, user_id, DriftKind.ROLE_CHANGED))
            else:  # a new account or enrolment; or restored: suspended, or enrolled without a managed role
                plan.enrol.append(PlannedEnrol(p.id, p.role, user_id))
                if user_id is not None and earlier is not None and decision.need is Need.ENROL:
                    plan.drift.append(Drift(p.id, user_id, DriftKind.NOT_ENROLLED))
        listed = {p.id for p in event.participants}
        plan.remove = [Removal(pid, entry.user_id, entry.role, spec.removal_action)
                       for pid, entry in sorted(enrolled_by_service.items()) if pid not in listed]
        plan.blocked_by_brake = brake_holds(len(plan.remove), len(enrolled_by_service), config.max_removal_percent)
        silent = {pid for pid, decision in decisions.items() if decision.need is Need.CHANGE_IN_PLACE}
        writes = [(e.role, e.participant_id not in silent) for e in plan.enrol]
        writes += [(c.role, c.participant_id not in silent) for c in plan.change_role]
        teachers = {uid for uid, roles in enrolled.items() if config.instructor_role_id in roles}
        teachers -= {c.moodle_user_id for c in plan.change_role if c.role == Role.STUDENT}
        suspending = [] if plan.blocked_by_brake or spec.removal_action != UnenrolAction.SUSPEND else [
            r for r in plan.remove if decide(person(r.moodle_user_id, None), rules).need is Need.TAKE_AWAY]
        plan.expected_mails = expected_mails(
            writes, has_teacher=bool(teachers), suspending=len(suspending),
            new_accounts=len(plan.create_accounts), user_auth=config.user_auth or self.settings.moodle_user_auth)
        return plan

    async def _course_problems(self, event_id: str, slug: str, template_course_id: int) -> list[PlanProblem]:
        """What would stop the deploy's first step (`prepare_course`) from making the event's course."""
        problems = []
        pending = await course_by(self.moodle, "shortname", pending_shortname(event_id))
        taken = await course_by(self.moodle, "shortname", slug)
        if taken is not None and (pending is None or taken["id"] != pending["id"]):
            problems.append(PlanProblem(ErrorType.SLUG_TAKEN, slug_taken(taken, slug, event_id)))
        if pending is None and await course_by(self.moodle, "id", template_course_id) is None:
            problems.append(PlanProblem(ErrorType.TEMPLATE_NOT_FOUND, template_missing(template_course_id)))
        return problems

    async def _match_accounts(self, participants: list[Participant],
                              match_field: MatchField) -> dict[str, AccountMatch]:
        """Each participant's account as the deploy would find it, and how it was found."""
        gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)
        found: dict[str, AccountMatch] = {}

        async def look_up(share: list[Participant], field: MatchField) -> None:
            if field == MatchField.EMAIL:
                values = list(dict.fromkeys(v for p in share for v in email_spellings(p.email)))
            else:
                values = [p.username for p in share]
            async with gate:
                users = await self.moodle.get_users_by_field(field, values)
            for p in share:
                if field == MatchField.USERNAME and match_field == MatchField.USERNAME:
                    mine = [u for u in users if str(u.get("username", "")) == p.username]
                else:  # by email, or the username of an account whose email differs only in case
                    mine = [u for u in users if str(u.get(field, "")).lower() == getattr(p, field).lower()
                            and str(u.get("email", "")).lower() == p.email.lower()]
                if not mine:
                    continue
                user = min(mine, key=lambda u: u["id"])  # the oldest account wins, as in the deploy
                how = (MatchHow.USERNAME if match_field == MatchField.USERNAME
                       else MatchHow.EXACT if user.get("email") == p.email else MatchHow.EMAIL_CASE)
                found[p.id] = AccountMatch(p.id, user["id"], how)
            activity.heartbeat(len(found))

        async def in_shares(people: list[Participant], field: MatchField) -> None:
            await asyncio.gather(*(look_up(people[i:i + LOOKUP_BATCH], field)
                                   for i in range(0, len(people), LOOKUP_BATCH)))

        await in_shares(participants, match_field)
        if match_field == MatchField.EMAIL:
            # Moodle's API matches emails exactly; an account with the participant's username and their
            # email in another letter case is theirs (the deploy finds it after a refused creation).
            await in_shares([p for p in participants if p.id not in found], MatchField.USERNAME)
        return found


def expected_mails(writes: list[tuple[str, bool]], *, has_teacher: bool, suspending: int, new_accounts: int,
                   user_auth: str) -> dict[str, int]:
    """The mail table of docs/workflows.md for the next deploy.

    ``writes``: the deploy's enrolment writes, (role, whether it is an enrol_manual_enrol_users call). Moodle
    mails a welcome on every such call while the course has a teacher. Students go first: they get one
    only when a teacher stays through their phase (``has_teacher``); on a course without one, the first
    instructor's call makes the teacher and the later instructors' calls mail (when a silent role swap
    could come first, every call is counted: at most). Then the removals: with `suspend`, Moodle mails
    each person suspended (MDL-70582), as the course has a teacher by then; the other actions mail nobody.
    A new manual account gets its password."""
    student_calls = sum(1 for role, call in writes if role == Role.STUDENT and call)
    instructor_writes = [call for role, call in writes if role == Role.INSTRUCTOR]
    instructor_calls = sum(instructor_writes)
    if has_teacher:
        welcome = student_calls + instructor_calls
    else:
        welcome = instructor_calls - 1 if instructor_calls and all(instructor_writes) else instructor_calls
    if has_teacher or instructor_writes:
        welcome += suspending
    return {MailKind.NEW_ACCOUNT: new_accounts if user_auth == "manual" else 0, MailKind.WELCOME: welcome}
