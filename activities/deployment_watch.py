"""An activity that waits for an event's deployment to finish, so that participant changes and
archival never race with a deployment that is still enrolling people."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from workflows.ids import deploy_id

POLL_SECONDS = 1.0


class DeploymentWatch:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn
    async def wait_for_deployment(self, event_id: str) -> str:
        """Return once no deployment of the event is running; the status of the last one, or "none"."""
        handle = self.client.get_workflow_handle(deploy_id(event_id))
        while True:
            try:
                description = await handle.describe()
            except RPCError as error:
                if error.status == RPCStatusCode.NOT_FOUND:
                    return "none"
                raise
            if description.status != WorkflowExecutionStatus.RUNNING:
                return description.status.name if description.status else "unknown"
            activity.heartbeat("deployment still running")
            await asyncio.sleep(POLL_SECONDS)
