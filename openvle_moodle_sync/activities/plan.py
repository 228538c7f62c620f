"""The read-only plan of a deploy: accounts, enrolments, removals and mails, from reads only.

It runs on the worker (the Moodle token stays there) as one activity of the workflow `PlanEvent`, and
calls only Moodle's read functions: core_user_get_users_by_field, core_enrol_get_enrolled_users and, when
someone enrolled needs a role given back or changed, core_webservice_get_site_info (can the token swap
roles in place?)."""

from __future__ import annotations

import asyncio

from temporalio import activity

from openvle_moodle_sync.models import Participant, Role

from .brake import brake_holds
from .errors import moodle_errors
from .moodle_sync import LOOKUP_BATCH, LOOKUPS_AT_ONCE, MoodleSyncActivities, email_spellings
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
)
from .roster import active
from .types import Removal


class PlanActivities(MoodleSyncActivities):
    """The plan's activity; it shares the sync activities' readers (enrolment pages, managed roles)."""

    @activity.defn
    @moodle_errors
    async def plan_event(self, spec: PlanEventInput) -> EventPlan:
        event, config = spec.event, spec.config
        plan = EventPlan(event_id=event.id, course=CoursePlan(
            CourseAction.REUSE if spec.course_id is not None else CourseAction.CREATE, spec.course_id))
        matches = await self._match_accounts(event.participants, config.match_field)
        plan.matched_accounts = [matches[p.id] for p in event.participants if p.id in matches]
        plan.create_accounts = [p.id for p in event.participants if p.id not in matches]
        enrolled: dict[int, set[int]] = {}
        suspended: set[int] = set()
        if spec.course_id is not None:
            enrolled = {u["id"]: {r["roleid"] for r in u.get("roles", [])}
                        for u in await self._enrolled(spec.course_id)}
            if enrolled:
                suspended = await self.moodle.get_suspended_user_ids(spec.course_id)
        role_ids = {Role.STUDENT: config.student_role_id, Role.INSTRUCTOR: config.instructor_role_id}
        managed = set(role_ids.values())
        # Enrolled, needing a role given, swapped or re-activated: enrol_user keeps their enrolment.
        restores: list[tuple[Participant, int]] = []
        enrolled_by_service = active(spec.roster)  # not those it withdrew since (suspended, roles removed)
        for p in event.participants:
            user_id = matches[p.id].moodle_user_id if p.id in matches else None
            roles = enrolled.get(user_id) if user_id is not None else None
            earlier = enrolled_by_service.get(p.id)
            if user_id is None or roles is None:
                plan.enrol.append(PlannedEnrol(p.id, p.role, user_id))
                if user_id is not None and earlier is not None:
                    plan.drift.append(Drift(p.id, user_id, DriftKind.NOT_ENROLLED))
            elif roles & managed - {role_ids[p.role]}:
                plan.change_role.append(PlannedRoleChange(p.id, user_id, p.role))
                restores.append((p, user_id))
                if earlier is not None and earlier.role == p.role:
                    plan.drift.append(Drift(p.id, user_id, DriftKind.ROLE_CHANGED))
            elif role_ids[p.role] in roles and user_id not in suspended:
                plan.unchanged += 1
            else:  # suspended, or enrolled without a managed role: the deploy's enrol_user restores them
                plan.enrol.append(PlannedEnrol(p.id, p.role, user_id))
                restores.append((p, user_id))
        listed = {p.id for p in event.participants}
        plan.remove = [Removal(pid, entry.user_id, entry.role, spec.removal_action)
                       for pid, entry in sorted(enrolled_by_service.items()) if pid not in listed]
        plan.blocked_by_brake = brake_holds(len(plan.remove), len(enrolled_by_service), config.max_removal_percent)
        # Only enrol_manual_enrol_users mails: a role given or swapped in place (the token has the role
        # functions, the enrolment is active) sends nothing.
        in_place = bool([u for _, u in restores if u not in suspended]) and await self._can_swap()
        silent = {p.id for p, u in restores if in_place and u not in suspended}
        writes = [(e.role, e.participant_id not in silent) for e in plan.enrol]
        writes += [(c.role, c.participant_id not in silent) for c in plan.change_role]
        teachers = {uid for uid, roles in enrolled.items() if config.instructor_role_id in roles}
        teachers -= {c.moodle_user_id for c in plan.change_role if c.role == Role.STUDENT}
        suspending = [] if plan.blocked_by_brake or spec.removal_action != "suspend" else [
            r for r in plan.remove if r.moodle_user_id in enrolled and r.moodle_user_id not in suspended]
        plan.expected_mails = expected_mails(
            writes, has_teacher=bool(teachers), suspending=len(suspending),
            new_accounts=len(plan.create_accounts), user_auth=self._user_auth(config.user_auth))
        return plan

    async def _match_accounts(self, participants: list[Participant], match_field: str) -> dict[str, AccountMatch]:
        """Each participant's account as the deploy would find it, and how it was found."""
        gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)
        found: dict[str, AccountMatch] = {}

        async def look_up(share: list[Participant], field: str) -> None:
            if field == "email":
                values = list(dict.fromkeys(v for p in share for v in email_spellings(p.email)))
            else:
                values = [p.username for p in share]
            async with gate:
                users = await self.moodle.get_users_by_field(field, values)
            for p in share:
                if field == "username" and match_field == "username":
                    mine = [u for u in users if str(u.get("username", "")) == p.username]
                else:  # by email, or the username of an account whose email differs only in case
                    mine = [u for u in users if str(u.get(field, "")).lower() == getattr(p, field).lower()
                            and str(u.get("email", "")).lower() == p.email.lower()]
                if not mine:
                    continue
                user = min(mine, key=lambda u: u["id"])  # the oldest account wins, as in the deploy
                how = (MatchHow.USERNAME if match_field == "username"
                       else MatchHow.EXACT if user.get("email") == p.email else MatchHow.EMAIL_CASE)
                found[p.id] = AccountMatch(p.id, user["id"], how)
            activity.heartbeat(len(found))

        async def in_shares(people: list[Participant], field: str) -> None:
            await asyncio.gather(*(look_up(people[i:i + LOOKUP_BATCH], field)
                                   for i in range(0, len(people), LOOKUP_BATCH)))

        await in_shares(participants, match_field)
        if match_field == "email":
            # Moodle's API matches emails exactly; an account with the participant's username and their
            # email in another letter case is theirs (the deploy finds it after a refused creation).
            await in_shares([p for p in participants if p.id not in found], "username")
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
