"""A configuration error in a participant's step (here: the token's service lacks core_user_create_users)
stops the whole run at once with that error, instead of failing every participant one by one."""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.moodle import AccessDeniedError
from openvle_moodle_sync.settings import Settings
from tests.conftest import make_event

pytestmark = pytest.mark.usefixtures("worker")


async def test_missing_function_in_a_participant_step_stops_the_run(client: Client, fake: FakeMoodle,
                                                                     settings: Settings) -> None:
    event = make_event(fake, participants=4)
    fake.faults.revoked_functions = {"core_user_create_users"}  # the course can be made, no account can
    with pytest.raises(WorkflowFailureError) as failure:
        await (await starter.deploy_event(client, event, settings=settings)).result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == AccessDeniedError.__name__ != ErrorType.DEPLOYMENT_INCOMPLETE
    assert "[accessexception]" in cause.message and "core_user_create_users" in cause.message
    assert "Check service configuration" in cause.message
    assert fake.calls_by_function()["core_user_create_users"] <= len(event["participants"])  # no retries
