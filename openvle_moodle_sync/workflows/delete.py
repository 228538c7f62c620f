"""DeleteEvent: the Moodle course goes only when MOODLE_DELETE_COURSE_ON_EVENT_DELETE is true."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities
    from openvle_moodle_sync.activities.roster import RosterUpdate

from .common import load_config, quick, skip_reason, slow, wait_for_deployment
from .roster import ROSTER_PATCH, record_roster
from .types import DeleteResult, EventRef

DELETE_ENDS_ROSTER_PATCH = "delete-ends-roster"
"""The roster ends with the event also when its course stays (or is gone already). Runs started before it
left the roster running then."""


@workflow.defn(name="DeleteEvent")
class DeleteEvent:
    @workflow.run
    async def run(self, event: EventRef) -> DeleteResult:
        result = DeleteResult(event_id=event.event_id)
        config = await load_config()
        result.skipped_reason = skip_reason(config, event.moodle_course_id)
        if result.skipped_reason:
            return result
        if workflow.patched("delete-waits-for-deployment"):
            # Deleting while the deployment still runs would delete the course under it, or miss the
            # course it is about to make. Runs started before this change go on without waiting.
            await wait_for_deployment(event.event_id, config)
        course = await workflow.execute_activity_method(
            MoodleSyncActivities.find_event_course, event.event_id, **quick(config)
        )
        result.course_id = course.id if course else None
        if course is None:
            result.note = f"no Moodle course carries event {event.event_id}'s mark; nothing to delete"
        elif not config.delete_course_on_event_delete:
            result.kept = True
            result.note = (f"Moodle course {course.id} kept: MOODLE_DELETE_COURSE_ON_EVENT_DELETE is false "
                           "(the default)")
        else:
            workflow.set_current_details(f"Event {event.event_id}: deleting Moodle course {course.id}")
            await workflow.execute_activity_method(MoodleSyncActivities.delete_course, course.id, **slow(config))
            result.deleted = True
            result.note = f"Moodle course {course.id} deleted"
        # The event is gone, so no deploy will read its roster again: it ends, and no workflow runs on for the
        # event. A kept course keeps its people; only the service's memory of whom it enrolled ends. (Runs
        # from before each patch: a deleted course's roster ended from ROSTER_PATCH on, a kept one's ran on.)
        if workflow.patched(ROSTER_PATCH if result.deleted else DELETE_ENDS_ROSTER_PATCH):
            await record_roster(event.event_id, RosterUpdate(close=True), config)
        workflow.set_current_details(f"Event {event.event_id}: {result.note}")
        return result
