"""ChangeParticipant: a participant added to or removed from an active event (a child of `EventLife`, which
runs the event's operations one at a time, in the order they were asked)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.roster import RosterEntry, RosterUpdate
    from openvle_moodle_sync.activities.types import (
        EnrolInput,
        EnsureUserInput,
        FindUserInput,
        SyncConfig,
        WithdrawInput,
    )
    from openvle_moodle_sync.activities.withdraw import WithdrawActivities
    from openvle_moodle_sync.contracts import PROGRESS_QUERY, ErrorType
    from openvle_moodle_sync.lifecycle import CLI
    from openvle_moodle_sync.models import Participant
    from openvle_moodle_sync.settings import ENROLMENT_KEPT_ACTIONS, FUNCTIONS_BY_ACTION, UnenrolAction

from . import summaries
from .common import checked, event_course, quick, with_root_cause
from .roster import record_roster
from .types import Action, ChangeOutcome, ChangeRequest, ChangeResult, Progress


@workflow.defn(name="ChangeParticipant")
class ChangeParticipant:
    """One change of one participant: an add (account found or created, enrolled with the role) or a removal
    (taken away by MOODLE_UNENROL_ACTION)."""

    def __init__(self) -> None:
        self._stage = "starting"
        self._event_id = ""
        self._done = 0

    @workflow.run
    async def run(self, change: ChangeRequest) -> ChangeResult:
        return await with_root_cause(self._run(change), f"{change.action.capitalize()} of participant "
                                                         f"{change.participant.id} of event {change.event_id}")

    async def _run(self, change: ChangeRequest) -> ChangeResult:
        self._event_id = change.event_id
        result = ChangeResult(event_id=change.event_id, participant_id=change.participant.id)
        start = await event_course(change.event_id, change.moodle_course_id)
        config, course, result.skipped_reason = start.config, start.course, start.skipped_reason
        if result.skipped_reason:
            return result
        if course is None:
            raise ApplicationError(
                f"Event {change.event_id} has no Moodle course (no course carries its mark: deleted in Moodle?), "
                f"so participant {change.participant.id} cannot be "
                f"{'enrolled' if change.action == Action.ADD else 'taken away'}. Deploy the event again "
                f"({CLI} deploy --event EVENT.json).",
                type=ErrorType.EVENT_NOT_DEPLOYED, non_retryable=True,
            )
        self._stage = f"{change.action} {change.participant.id}"
        workflow.set_current_details(f"Event {change.event_id}: {self._stage} (Moodle course {course.id})")
        outcome = await self._apply(change, course.id, config)
        result.applied.append(outcome)
        await self._remember(change, outcome, config)
        self._done, self._stage = 1, "done"
        return result

    async def _apply(self, change: ChangeRequest, course_id: int, config: SyncConfig) -> ChangeOutcome:
        p = change.participant
        outcome = ChangeOutcome(action=change.action, participant_id=p.id, course_id=course_id)
        if change.action == Action.REMOVE:
            await self._withdraw(change, outcome, config)
            return outcome
        user = await workflow.execute_activity_method(
            MoodleSyncActivities.ensure_user,
            EnsureUserInput(participant=p, match_field=config.match_field, user_auth=config.user_auth),
            summary=summaries.find_or_create_account(p), **quick(config),
        )
        roles = config.role_ids
        enrolled = await workflow.execute_activity_method(
            MoodleSyncActivities.enrol_user,
            EnrolInput(course_id=course_id, user_id=user.user_id, role_id=roles[p.role],
                       other_role_ids=[r for r in roles.values() if r != roles[p.role]],
                       participant_id=p.id, course_may_have_teacher=True),
            summary=summaries.enrol(p), **checked(config),
        )
        outcome.moodle_user_id, outcome.changed = user.user_id, enrolled.enrolled
        outcome.found_enrolled = enrolled.found_enrolled
        outcome.note = ("created in Moodle and " if user.created else "") + (
            f"already enrolled as {p.role}" if not enrolled.enrolled
            else f"enrolment kept, {p.role} role given" if enrolled.kept_enrolment
            else f"enrolled as {p.role}")
        return outcome

    async def _withdraw(self, change: ChangeRequest, outcome: ChangeOutcome, config: SyncConfig) -> None:
        """Take the participant away by MOODLE_UNENROL_ACTION; fail before any write if the token can't."""
        p, action = change.participant, config.unenrol_action
        if action == UnenrolAction.KEEP:
            outcome.note = "kept in Moodle (MOODLE_UNENROL_ACTION is keep): nothing changed"
            return
        if FUNCTIONS_BY_ACTION.get(action):
            await workflow.execute_activity_method(
                WithdrawActivities.check_unenrol_action, action, **quick(config)
            )
        user_id = await self._find_account(p, outcome, config, nothing_to="take away")
        if user_id is None:
            return
        roles = config.role_ids
        withdrawn = await workflow.execute_activity_method(
            WithdrawActivities.withdraw_user,
            WithdrawInput(course_id=outcome.course_id or 0, user_id=user_id, role_id=roles[p.role],
                          action=action, participant_id=p.id, managed_role_ids=list(roles.values())),
            summary=summaries.withdraw(summaries.who(p), action), **checked(config),
        )
        outcome.changed, outcome.note = withdrawn.changed, withdrawn.note

    @staticmethod
    async def _find_account(p: Participant, outcome: ChangeOutcome, config: SyncConfig, *, nothing_to: str
                            ) -> int | None:
        """The participant's Moodle account by the run's match field; None (said in the outcome) if none."""
        user_id = await workflow.execute_activity_method(
            MoodleSyncActivities.find_user, FindUserInput(participant=p, match_field=config.match_field),
            summary=summaries.find_account(p), **quick(config),
        )
        outcome.moodle_user_id = user_id
        if user_id is None:
            outcome.note = f"no matching Moodle account: nothing to {nothing_to}"
        return user_id

    @staticmethod
    async def _remember(change: ChangeRequest, outcome: ChangeOutcome, config: SyncConfig) -> None:
        """Tell the event's roster: an enrolment this run wrote is the service's; a removal forgets them."""
        p = change.participant
        if change.action == Action.ADD and outcome.changed and outcome.moodle_user_id is not None:
            # Someone in the course before this add may be there by hand: the service only changed their
            # role, and a deploy that no longer lists them must leave them (unless they were its already).
            if outcome.found_enrolled and not change.in_roster:
                return
            await record_roster(change.event_id, RosterUpdate(put={p.id: RosterEntry(outcome.moodle_user_id,
                                                                                      str(p.role))}))
        elif change.action == Action.REMOVE and outcome.moodle_user_id is not None:
            # Only when their account was found and taken away: one not found (its email or username changed
            # since) is still enrolled, and the roster keeps it for a deploy to take away. Under keep nothing
            # changed in Moodle, so the roster keeps them too. Suspended or without roles, they stay in it
            # marked withdrawn: adding them back makes them the service's again.
            if config.unenrol_action == UnenrolAction.KEEP:
                return
            await record_roster(change.event_id, RosterUpdate(
                drop=[p.id], withdrawn=config.unenrol_action in ENROLMENT_KEPT_ACTIONS))

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        return Progress(workflow_id=workflow.info().workflow_id, kind="participant", event_id=self._event_id,
                        stage=self._stage, total=1, done=self._done)
