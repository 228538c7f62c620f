"""DeleteEvent: the Moodle course goes only when MOODLE_DELETE_COURSE_ON_EVENT_DELETE is true. (`EventLife`
then ends the event's life and, with it, its roster: a kept course keeps its people.)"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.activities.moodle_sync import MoodleSyncActivities

from .common import event_course, slow, with_root_cause
from .types import DeleteResult, EventRef


@workflow.defn(name="DeleteEvent")
class DeleteEvent:
    @workflow.run
    async def run(self, event: EventRef) -> DeleteResult:
        return await with_root_cause(self._delete(event), f"Delete of event {event.event_id}")

    @staticmethod
    async def _delete(event: EventRef) -> DeleteResult:
        result = DeleteResult(event_id=event.event_id)
        start = await event_course(event.event_id, event.moodle_course_id)
        config, course, result.skipped_reason = start.config, start.course, start.skipped_reason
        if result.skipped_reason:
            return result
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
        workflow.set_current_details(f"Event {event.event_id}: {result.note}")
        return result
