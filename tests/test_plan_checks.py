"""`plan` checks what a deploy's first step checks: the template exists, and the slug is free or already this
event's course; a problem is named with the type and the words the deploy then fails with."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.activities.plan_types import CourseAction, PlanProblem
from openvle_moodle_sync.contracts import ErrorType
from openvle_moodle_sync.settings import Settings
from tests.conftest import add_moodle_course, make_event

pytestmark = pytest.mark.usefixtures("worker")


async def deploy_failure(client: Client, event: dict[str, Any], settings: Settings) -> ApplicationError:
    """The root cause of the failure a deploy of ``event`` ends with: the failed activity's error."""
    with pytest.raises(WorkflowFailureError) as failure:
        await (await starter.deploy_event(client, event, settings=settings)).result()
    causes: list[BaseException] = []
    error: BaseException | None = failure.value
    while error is not None:
        causes.append(error)
        error = getattr(error, "cause", None)
    root = [c for c in causes if isinstance(c, ApplicationError)][-1]
    assert isinstance(root, ApplicationError)
    return root


async def test_a_missing_template_is_named_as_the_deploy_names_it(client: Client, fake: FakeMoodle,
                                                                   settings: Settings) -> None:
    event = make_event(fake, participants=2, moodle_course_id=987654)
    plan = await starter.plan_event(client, event, settings=settings)
    assert [p.type for p in plan.problems] == [ErrorType.TEMPLATE_NOT_FOUND]
    error = await deploy_failure(client, event, settings)
    assert plan.problems == [PlanProblem(ErrorType(error.type), error.message)]


async def test_a_taken_slug_is_named_as_the_deploy_names_it(client: Client, fake: FakeMoodle,
                                                             settings: Settings) -> None:
    event = make_event(fake, participants=2)
    await add_moodle_course(fake, shortname=event["slug"], fullname="Someone else's course")
    plan = await starter.plan_event(client, event, settings=settings)
    assert [p.type for p in plan.problems] == [ErrorType.SLUG_TAKEN]
    error = await deploy_failure(client, event, settings)
    assert plan.problems == [PlanProblem(ErrorType(error.type), error.message)]

    both = {**event, "moodle_course_id": 987654}  # the deploy stops at the slug first, and so does the list
    assert [p.type for p in (await starter.plan_event(client, both, settings=settings)).problems] == [
        ErrorType.SLUG_TAKEN, ErrorType.TEMPLATE_NOT_FOUND]


async def test_the_events_own_course_is_no_problem(client: Client, fake: FakeMoodle, settings: Settings) -> None:
    event = make_event(fake, participants=2)
    assert (await starter.plan_event(client, event, settings=settings)).problems == []
    await (await starter.deploy_event(client, event, settings=settings)).result()
    plan = await starter.plan_event(client, event, settings=settings)
    assert plan.course.action == CourseAction.REUSE and plan.problems == []
