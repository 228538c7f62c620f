"""The activities: every Moodle read and write of the workflows, each safe to run more than once.

Temporal runs an activity at least once: a response lost after Moodle applied the call, or a worker
killed mid-call, means it runs again. Each activity therefore first looks at Moodle's state and only
writes what is missing, so a retry converges to the same end state without a second course, account,
enrolment or mail.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from dataclasses import replace
from datetime import timedelta

from temporalio import activity

from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.models import Participant, course_idnumber
from openvle_moodle_sync.moodle.client import FORM_FIELDS_PER_CALL, EnrolledUser, MoodleClient, RoleAssignment, User
from openvle_moodle_sync.moodle.errors import InvalidParameterError, MoodlePHPError, MoodleWarningsError
from openvle_moodle_sync.settings import MatchField, Settings

from .decide import InCourse, Need, Person, Rules, decide, depends_on_role_functions
from .errors import moodle_errors, sync_error
from .reads import course_by, enrolled_users, has_role_functions, in_course, roles_of
from .types import (
    ArchivePlan,
    ArchivePlanInput,
    CourseRef,
    EnrolInput,
    EnrolResult,
    EnsureUserInput,
    FindUserInput,
    FindUsersInput,
    FoundUsers,
    MatchKey,
    PlanInput,
    PlanResult,
    PrepareCourseInput,
    SyncConfig,
    UserRef,
)

log = logging.getLogger("activities")

LOOKUP_BATCH = FORM_FIELDS_PER_CALL // 2
"""Participants per bulk core_user_get_users_by_field call (two spellings of an email each, one field a
value): a deployment of 1,000 looks its people up in 3 calls."""

LOOKUPS_AT_ONCE = 4
"""Bulk look-up calls in flight at once, so a large event's look-up leaves Moodle room for other work."""


def pending_shortname(event_id: str) -> str:
    """The short name a copy carries between duplication and being marked as the event's course.

    Unique to the event, so a copy left behind by a crash is found again and finished, never doubled."""
    return f"openvle-pending-{event_id}"


def email_spellings(email: str, *, thorough: bool = False) -> list[str]:
    """Spellings of an address to ask Moodle for (its API compares emails exactly, case included).

    The quick look asks the address as given and in lower case. The thorough one, made only after
    Moodle refused to create the account (its uniqueness check ignores case), asks every mix of
    lower-case and capitalised parts of the name (``anna.Smith``, ``Anna.smith``...) on the usual
    spellings of the domain: at most 2**5 x 4 spellings, in one call."""
    spellings = [email, email.lower()]
    if thorough:
        local, _, domain = email.lower().partition("@")
        parts = re.split(r"([._+-])", local)
        words = parts[::2][:5]
        rest = "".join(parts[len(words) * 2 - 1:]) if len(parts[::2]) > 5 else ""
        domains = [domain, domain.capitalize(), ".".join(label.capitalize() for label in domain.split(".")),
                   domain.upper()]
        for mask in itertools.product((str.lower, str.capitalize), repeat=len(words)):
            name = "".join(f(w) + (parts[2 * i + 1] if 2 * i + 1 < len(parts) and i < len(words) - 1 else "")
                           for i, (f, w) in enumerate(zip(mask, words, strict=True))) + rest
            spellings += [f"{name}@{host}" for host in domains]
        spellings += [f"{local.upper()}@{host}" for host in domains]
    return list(dict.fromkeys(spellings))


def slug_taken(taken: dict, slug: str, event_id: str) -> str:
    """Why the event's course cannot be made: another course holds its slug (`ErrorType.SLUG_TAKEN`)."""
    return (f"Moodle course {taken['id']} ({taken.get('fullname')!r}) already uses the short name {slug!r} and "
            f"was not created by openvle-moodle-sync for event {event_id}; it is left untouched. Rename or delete "
            "that course in Moodle, or give the event another slug, then deploy the event again.")


def template_missing(template_course_id: int) -> str:
    """Why the event's course cannot be made: no template (`ErrorType.TEMPLATE_NOT_FOUND`)."""
    return (f"Template course {template_course_id} does not exist in Moodle. Check the environment's "
            "moodleCourseId (search courses with `openvle-moodle-sync courses`), then deploy the event again.")


WRITING = "writing"
"""The heartbeat an enrol attempt records before it writes (see `MoodleSyncActivities.enrol_user`)."""

FOUND_ENROLLED = "found enrolled"
"""Recorded with WRITING when that attempt found the user enrolled already: a retry after its own write
finds the enrolment the write made, and learns from this what there was before."""


class MoodleSyncActivities:
    """The activities that make the event's course and bring its participants in, bound to one Moodle client
    and the worker's settings (people are taken away by `withdraw.WithdrawActivities`).

    Of the settings, only `load_sync_config` reads the ones that shape a run: it records them in the run's
    history (`SyncConfig`), and the workflows pass them on in each activity's input. So one run uses one set
    of values from start to end, whichever worker runs which activity. The client carries the connection."""

    def __init__(self, moodle: MoodleClient, settings: Settings) -> None:
        self.moodle = moodle
        self.settings = settings

    # --- configuration -------------------------------------------------------------------------------

    @activity.defn
    async def load_sync_config(self) -> SyncConfig:
        s = self.settings
        return SyncConfig(
            enabled=s.moodle_enabled,
            course_visible=s.moodle_course_visible,
            delete_course_on_event_delete=s.moodle_delete_course_on_event_delete,
            sync_timeout_s=s.moodle_sync_timeout,
            course_timeout_s=s.moodle_course_timeout,
            retry_max_interval_s=s.moodle_retry_max_interval,
            instructor_role_id=s.moodle_instructor_role_id,
            student_role_id=s.moodle_student_role_id,
            match_field=s.moodle_user_match_field,
            unenrol_action=s.moodle_unenrol_action,
            max_removal_percent=s.moodle_max_removal_percent,
            user_auth=s.moodle_user_auth,
        )

    # --- courses -------------------------------------------------------------------------------------

    @staticmethod
    def _course_call_timeout() -> float:
        """The HTTP timeout of a course-wide call: the activity's own start-to-close timeout, which the
        workflow set from the run's MOODLE_COURSE_TIMEOUT."""
        return (activity.info().start_to_close_timeout or timedelta(seconds=600)).total_seconds()

    @activity.defn
    @moodle_errors
    async def find_event_course(self, event_id: str) -> CourseRef | None:
        """The event's course, recognised by the idnumber this service gave it."""
        course = await course_by(self.moodle, "idnumber", course_idnumber(event_id))
        return CourseRef(id=course["id"], shortname=course["shortname"]) if course else None

    @activity.defn
    @moodle_errors
    async def prepare_course(self, spec: PrepareCourseInput) -> CourseRef:
        """Find or make the event's course: a copy of the template without its participants.

        The copy is made under a short name unique to the event, then renamed to the slug and marked
        with the event's idnumber in one update. A retry finds either the marked course or the pending
        copy, so a lost response or a crash never leaves a second copy, and a course that merely shares
        the slug is never taken over."""
        marker = course_idnumber(spec.event_id)
        course = await course_by(self.moodle, "idnumber", marker)
        if course:
            return CourseRef(id=course["id"], shortname=course["shortname"])

        pending = await course_by(self.moodle, "shortname", pending_shortname(spec.event_id))
        if pending is None:
            taken = await course_by(self.moodle, "shortname", spec.slug)
            if taken:
                raise sync_error(slug_taken(taken, spec.slug, spec.event_id), ErrorType.SLUG_TAKEN,
                                 course_id=taken["id"], slug=spec.slug)
            template = await course_by(self.moodle, "id", spec.template_course_id)
            if template is None:
                raise sync_error(template_missing(spec.template_course_id), ErrorType.TEMPLATE_NOT_FOUND,
                                 template_course_id=spec.template_course_id)
            activity.heartbeat("duplicating the template")
            copy = await self.moodle.duplicate_course(
                spec.template_course_id, spec.name, pending_shortname(spec.event_id), template["categoryid"],
                visible=spec.visible, include_users=False, timeout=self._course_call_timeout(),
            )
            pending = {"id": copy["id"]}
        warnings = await self.moodle.update_courses(
            [{"id": pending["id"], "shortname": spec.slug, "idnumber": marker, "fullname": spec.name}]
        )
        if warnings:
            error = MoodleWarningsError(warnings, function="core_course_update_courses")
            raise sync_error(
                f"The copy of the template (Moodle course {pending['id']}) could not take the short name "
                f"{spec.slug!r}: {error.detail} Free the short name in Moodle or give the event another slug, "
                "then deploy the event again; the copy is kept and reused.",
                ErrorType.SLUG_TAKEN, course_id=pending["id"], warnings=sorted(error.codes),
            )
        return CourseRef(id=pending["id"], shortname=spec.slug, created=True)

    @activity.defn
    @moodle_errors
    async def hide_course(self, course_id: int) -> None:
        await self._set_visible(course_id, False)

    @activity.defn
    @moodle_errors
    async def show_course(self, course_id: int) -> None:
        """An archived event reopened: its course is visible again."""
        await self._set_visible(course_id, True)

    async def _set_visible(self, course_id: int, visible: bool) -> None:
        warnings = await self.moodle.update_courses([{"id": course_id, "visible": int(visible)}])
        if warnings:
            raise MoodleWarningsError(warnings, function="core_course_update_courses")

    @activity.defn
    @moodle_errors
    async def delete_course(self, course_id: int) -> bool:
        """Delete the course; False when it was already gone (a retry after a lost response)."""
        warnings = await self.moodle.delete_courses([course_id], timeout=self._course_call_timeout())
        codes = {w.warningcode for w in warnings}
        if codes - {"unknowncourseidnumber"}:
            raise MoodleWarningsError(warnings, function="core_course_delete_courses")
        return not codes

    # --- enrolments ----------------------------------------------------------------------------------

    @activity.defn
    @moodle_errors
    async def plan_deployment(self, plan: PlanInput) -> PlanResult:
        """Which participants already hold exactly their role in the course (a re-run skips them)."""
        by_username: dict[str, EnrolledUser] = {}
        by_email: dict[str, EnrolledUser] = {}
        for user in await enrolled_users(self.moodle, plan.course_id):
            by_username[str(user.get("username", ""))] = user
            by_email[str(user.get("email", "")).lower()] = user
        rules = Rules(frozenset(plan.managed_role_ids))
        # Whether someone needs nothing does not depend on the role functions; the course's suspended users
        # are read only when someone holds exactly their role (only then does it matter).
        found: dict[str, tuple[Person, EnrolledUser]] = {}
        for key in plan.keys:
            match = (by_email.get(key.email.lower()) if plan.match_field == MatchField.EMAIL
                     else by_username.get(key.username))
            if match is not None:
                found[key.participant_id] = (Person(True, in_course(match, set()), key.role_id), match)
        suspended: set[int] = set()
        if any(decide(person, rules).need is Need.NOTHING for person, _ in found.values()):
            suspended = await self.moodle.get_suspended_user_ids(plan.course_id)
        done: dict[str, int] = {}
        role_changes: list[str] = []
        for participant_id, (person, user) in found.items():
            person = replace(person, found=in_course(user, suspended))
            if decide(person, rules).need is Need.NOTHING:
                done[participant_id] = user["id"]
            else:  # another role, none (remove_roles) or suspended: enrol_user restores it on the same enrolment
                role_changes.append(participant_id)
        return PlanResult(done=done, role_changes=role_changes)

    async def _in_course(self, course_id: int, user_id: int) -> frozenset[int] | None:
        """The user's roles in the course, or None when not enrolled."""
        for user in await enrolled_users(self.moodle, course_id):
            if user["id"] == user_id:
                return roles_of(user)
        return None

    @activity.defn
    @moodle_errors
    async def enrol_user(self, spec: EnrolInput) -> EnrolResult:
        """Enrol the user with exactly ``role_id``, keeping an existing enrolment where Moodle allows.

        Every enrol call makes Moodle send a welcome mail once the course has a teacher, so a retry
        first checks whether the previous attempt went through. Someone still enrolled (taken away by
        suspend or remove_roles, or changing role) keeps their enrolment, and with it their grades: the
        role is given back or swapped with core_role_assign_roles / core_role_unassign_roles (no mail)
        where the token has them; a suspended enrolment is re-activated (Moodle mails on that call).
        What to write is `decide`'s answer."""
        roles: frozenset[int] | None = None
        info = activity.info()
        retry = info.attempt > 1
        # A retry of these looks at the course before writing (a role change always does), and so can find
        # an earlier attempt's write.
        retry_checks = spec.course_may_have_teacher or bool(spec.other_role_ids)
        # Their earlier attempt heartbeats WRITING before it writes: when its answer was lost, the enrolment
        # found now is this activity's own, and the result says so (the roster counts it as ours).
        wrote_before = retry and WRITING in info.heartbeat_details
        if spec.other_role_ids or (retry and retry_checks):
            roles = await self._in_course(spec.course_id, spec.user_id)
        found_enrolled = FOUND_ENROLLED in info.heartbeat_details if wrote_before else roles is not None
        # Only where a withdrawal may have happened (other roles are managed here) can the user be suspended.
        suspended = (roles is not None and bool(spec.other_role_ids)
                     and spec.user_id in await self.moodle.get_suspended_user_ids(spec.course_id))
        person = Person(True, None if roles is None else InCourse(roles, suspended), spec.role_id)
        rules = Rules(frozenset({spec.role_id, *spec.other_role_ids}))
        decision = decide(person, rules)
        if decision.need is Need.NOTHING:
            return EnrolResult(enrolled=wrote_before, found_enrolled=found_enrolled)
        if retry_checks:
            # A heartbeat is a write to the workflow's state on the server: a student of a course this run
            # made (most of a large deployment) is enrolled without one, since a retry writes again anyway.
            activity.heartbeat(WRITING, *([FOUND_ENROLLED] if found_enrolled else []))
        if depends_on_role_functions(person, rules):
            decision = decide(person, replace(rules, role_functions=await has_role_functions(self.moodle)))

        def assignments(role_ids: frozenset[int]) -> list[RoleAssignment]:
            return [RoleAssignment(roleid=r, userid=spec.user_id, instanceid=spec.course_id) for r in sorted(role_ids)]

        if decision.need is Need.CHANGE_IN_PLACE:
            # Give the role first, then take the other one: the enrolment never stands without a role.
            await self.moodle.assign_roles(assignments(frozenset({spec.role_id})))
            if decision.take_roles:
                await self.moodle.unassign_roles(assignments(decision.take_roles))
            return EnrolResult(enrolled=True, kept_enrolment=True, found_enrolled=found_enrolled)
        if decision.need is Need.RECREATE:
            await self.moodle.unenrol_users([{"userid": spec.user_id, "courseid": spec.course_id}])
        try:
            # Also re-activates a suspended enrolment (no suspend flag means active); one welcome mail.
            await self.moodle.enrol_users(
                [{"roleid": spec.role_id, "userid": spec.user_id, "courseid": spec.course_id}]
            )
        except MoodlePHPError as error:
            raise sync_error(
                f"Moodle user {spec.user_id} of participant {spec.participant_id} no longer exists in Moodle "
                f"({error.message}). Re-run the deployment: the user is looked up again.",
                ErrorType.MOODLE_USER_MISSING, user_id=spec.user_id,
            ) from None
        if decision.need is Need.RESTORE and decision.take_roles:  # suspended, changing role: the old one goes
            await self.moodle.unassign_roles(assignments(decision.take_roles))
        return EnrolResult(enrolled=True, kept_enrolment=decision.need is Need.RESTORE, found_enrolled=found_enrolled)

    @activity.defn
    @moodle_errors
    async def plan_archive(self, spec: ArchivePlanInput) -> ArchivePlan:
        """The course's students to unenrol at archive; anyone who also teaches stays."""
        students: list[int] = []
        kept = 0
        for user in await enrolled_users(self.moodle, spec.course_id):
            roles = roles_of(user)
            if spec.instructor_role_id in roles:
                kept += 1
            elif spec.student_role_id in roles:
                students.append(user["id"])
        return ArchivePlan(student_user_ids=students, instructors_kept=kept)

    # --- users ---------------------------------------------------------------------------------------

    async def _lookup(self, participant: Participant, field: MatchField, *, thorough: bool = False) -> User | None:
        if field == MatchField.EMAIL:
            # Moodle matches email exactly, but an address that differs only in case is the same person.
            # The usual spellings are asked at once; the thorough look (after Moodle refused to create
            # the account, which it does for an existing address in any case) asks the rarer ones too.
            values = email_spellings(participant.email, thorough=thorough)
            wanted = participant.email.lower()
            users = await self.moodle.get_users_by_field(MatchField.EMAIL, values)
            users = [u for u in users if str(u.get("email", "")).lower() == wanted]
        else:
            users = await self.moodle.get_users_by_field(MatchField.USERNAME, [participant.username])
        return min(users, key=lambda u: u["id"]) if users else None

    @activity.defn
    @moodle_errors
    async def find_user(self, spec: FindUserInput) -> int | None:
        user = await self._lookup(spec.participant, spec.match_field)
        return user["id"] if user else None

    @activity.defn
    @moodle_errors
    async def find_users(self, spec: FindUsersInput) -> FoundUsers:
        """The accounts of many participants at once, by the run's MOODLE_USER_MATCH_FIELD: one call per
        LOOKUP_BATCH participants instead of one per participant."""
        field = spec.match_field
        by_email = field == MatchField.EMAIL
        found: dict[str, int] = {}
        gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)

        async def look_up(keys: list[MatchKey]) -> None:
            if by_email:
                values = list(dict.fromkeys(v for k in keys for v in email_spellings(k.email)))
            else:
                values = [k.username for k in keys]
            async with gate:
                users = await self.moodle.get_users_by_field(field, values)
            owner: dict[str, int] = {}
            for user in sorted(users, key=lambda u: -u["id"]):  # the oldest account wins, as in _lookup
                owner[str(user.get("email", "")).lower() if by_email else str(user.get("username", ""))] = user["id"]
            for k in keys:
                user_id = owner.get(k.email.lower() if by_email else k.username)
                if user_id is not None:
                    found[k.participant_id] = user_id
            activity.heartbeat(len(found))

        await asyncio.gather(*(look_up(spec.keys[i:i + LOOKUP_BATCH])
                               for i in range(0, len(spec.keys), LOOKUP_BATCH)))
        return FoundUsers(user_ids=found)

    @activity.defn
    @moodle_errors
    async def ensure_user(self, spec: EnsureUserInput) -> UserRef:
        """The participant's Moodle account, created (with the run's MOODLE_USER_AUTH) when none matches."""
        p = spec.participant
        match_field, auth = spec.match_field, spec.user_auth
        # A retry always looks first: the previous attempt may have created the account.
        if not (spec.known_missing and activity.info().attempt == 1):
            user = await self._lookup(p, match_field)
            if user:
                return UserRef(user_id=user["id"], created=False)
        new_user: dict[str, str | int] = {"username": p.username, "firstname": p.first_name, "lastname": p.last_name,
                    "email": p.email, "auth": auth}
        if auth == "manual":
            # Manual accounts need a password: Moodle generates one and mails it to the user.
            new_user["createpassword"] = 1
        try:
            created = await self.moodle.create_users([new_user])  # type: ignore[list-item]
        except InvalidParameterError as error:
            # Maybe a parallel run created the account a moment ago, the address exists in another letter
            # case, or the data clashes with another account.
            user = (await self._lookup(p, match_field, thorough=True)
                    or await self._same_person_by_username(p, match_field))
            if user:
                return UserRef(user_id=user["id"], created=False)
            raise await self._explain_create_failure(p, error, match_field, auth) from None
        return UserRef(user_id=created[0]["id"], created=True)

    async def _same_person_by_username(self, p: Participant, match_field: MatchField) -> User | None:
        """The account with the participant's username, if its email is theirs in another letter case
        (Moodle's API searches emails only exactly, so such an account is found this way)."""
        if match_field != MatchField.EMAIL:
            return None
        user = await self._lookup(p, MatchField.USERNAME)
        return user if user and str(user.get("email", "")).lower() == p.email.lower() else None

    async def _explain_create_failure(self, p: Participant, error: InvalidParameterError, match_field: MatchField,
                                      auth: str) -> Exception:
        other_field = MatchField.USERNAME if match_field == MatchField.EMAIL else MatchField.EMAIL
        other = await self._lookup(p, other_field)
        if other:
            return sync_error(
                f"User not found in Moodle by {match_field} {getattr(p, match_field)!r}, and it cannot be created "
                f"for {p.label}: Moodle account {other['id']} already has the {other_field} "
                f"{other.get(other_field)!r} (with {match_field} {other.get(match_field)!r}). Check "
                "MOODLE_USER_MATCH_FIELD. Do email/username match in both systems?",
                ErrorType.USER_CONFLICT, participant_id=p.id, moodle_user_id=other["id"],
            )
        return sync_error(
            f"User creation fails for {p.label}: {error.detail} MOODLE_USER_AUTH must match the auth plugin in "
            f"Moodle (e.g. ldap); it is {auth!r}. Otherwise Moodle refused one of the "
            f"participant's values: username {p.username!r}, email {p.email!r} (an account may already use this "
            "address in an unusual letter case, which Moodle's API cannot search for), or the names.",
            ErrorType.USER_CREATION, participant_id=p.id, errorcode=error.errorcode,
        )
