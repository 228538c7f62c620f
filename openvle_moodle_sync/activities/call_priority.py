"""Gives each activity's Moodle calls the activity's task priority, for the client's connection gate."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from openvle_moodle_sync.moodle.gate import DEFAULT_PRIORITY, call_priority


class CallPriority(Interceptor):
    """Worker interceptor: while an activity runs, `moodle.gate.call_priority` holds its priority key (an
    activity inherits its workflow's, which the starter sets per event: see `starter.fairness`)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _WithCallPriority(next)


class _WithCallPriority(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        token = call_priority.set(activity.info().priority.priority_key or DEFAULT_PRIORITY)
        try:
            return await super().execute_activity(input)
        finally:
            call_priority.reset(token)
