"""An activity that waits for an event's deployment to finish, so that participant changes and
archival never race with a deployment that is still enrolling people."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

POLL_SECONDS = 1.0


class DeploymentWatch:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn
    async def wait_for_deployment(self, deploy_workflow_id: str) -> str:
        """Return once the deployment workflow is not running; the status of its last run, or "none"."""
        handle = self.client.get_workflow_handle(deploy_workflow_id)
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
