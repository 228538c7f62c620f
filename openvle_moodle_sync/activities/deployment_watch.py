"""Is the event's deployment still running? Participant changes and archival ask this before they
touch the course, so that they never race with a deployment that is still enrolling people."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode


class DeploymentWatch:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn
    async def deployment_running(self, deploy_workflow_id: str) -> bool:
        """True while the deployment workflow runs (a short call: waiting happens in the workflow, on
        durable timers, so waiting changes never hold one of the worker's activity slots)."""
        try:
            description = await self.client.get_workflow_handle(deploy_workflow_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING
