"""PlanEvent: what a deploy of the event would do now, from Moodle reads only (visible in the UI)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.plan import PlanActivities
    from openvle_moodle_sync.activities.plan_types import EventPlan, PlanEventInput, PlanRequest

from .common import as_run_failure, load_config, quick, skip_reason, slow
from .roster import read_roster


@workflow.defn(name="PlanEvent")
class PlanEvent:
    @workflow.run
    async def run(self, request: PlanRequest) -> EventPlan:
        event = request.event
        config = await load_config()
        reason = skip_reason(config, event.moodle_course_id)
        if reason:
            return EventPlan(event_id=event.id, skipped_reason=reason)
        try:
            course = await workflow.execute_activity_method(
                MoodleSyncActivities.find_event_course, event.id, **quick(config))
            roster = await read_roster(event.id, config)
            return await workflow.execute_activity_method(
                PlanActivities.plan_event,
                PlanEventInput(event=event, course_id=course.id if course else None, roster=roster, config=config,
                               removal_action=config.unenrol_action),
                **slow(config),
            )
        except ActivityError as error:
            raise as_run_failure(error, f"Plan of event {event.id}") from error
