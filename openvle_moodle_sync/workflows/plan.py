"""PlanEvent: what a deploy of the event would do now, from Moodle reads only (visible in the UI)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.plan import PlanActivities
    from openvle_moodle_sync.activities.plan_types import EventPlan, PlanEventInput, PlanRequest
    from openvle_moodle_sync.activities.types import SyncConfig
    from openvle_moodle_sync.models import Event

from .common import load_config, quick, skip_reason, slow, with_root_cause
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
        return await with_root_cause(self._plan(event, config), f"Plan of event {event.id}")

    @staticmethod
    async def _plan(event: Event, config: SyncConfig) -> EventPlan:
        course = await workflow.execute_activity_method(
            MoodleSyncActivities.find_event_course, event.id, **quick(config))
        roster = await read_roster(event.id, config)
        return await workflow.execute_activity_method(
            PlanActivities.plan_event,
            PlanEventInput(event=event, course_id=course.id if course else None, roster=roster, config=config,
                           removal_action=config.unenrol_action),
            **slow(config),
        )
