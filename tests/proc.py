"""Real processes for the crash and secrets tests: the Moodle simulator, a Temporal dev server and the
worker (devtools.processes, the supervisor the demo and the benchmarks use too), each stopped at the end of
the test, and what the simulator holds afterwards.

The `processes` fixtures use `processes_in`, which stops every process it started by its pid (never by name)
however the test ends, so nothing survives a failed test.
"""

from __future__ import annotations

from typing import Any

from devtools import processes
from devtools.processes import (
    PYTHON,
    ROOT,
    FakeMoodleProc,
    Proc,
    Processes,
    ProcessFailed,
    TemporalProc,
    free_port,
    port_open,
    processes_in,
    start_worker,
    worker_cwd,
)

__all__ = ["PYTHON", "ROOT", "FakeMoodleProc", "Proc", "ProcessFailed", "Processes", "TemporalProc",
           "assert_deployed", "free_port", "people", "port_open", "processes_in", "start_worker", "worker_cwd",
           "worker_env"]


def worker_env(*, moodle_url: str, token: str, temporal_address: str, task_queue: str,
               **overrides: str) -> dict[str, str]:
    """The tests' worker: its whole configuration explicit (``.env`` changes nothing, nothing leaks in from
    the test run's environment), with short retries and timeouts."""
    return processes.worker_env(moodle_url=moodle_url, token=token, temporal_address=temporal_address,
                                task_queue=task_queue, isolated=True, **{
                                    "MOODLE_USER_AUTH": "manual", "MOODLE_RETRY_MAX_INTERVAL": "1",
                                    "MOODLE_SYNC_TIMEOUT": "3", "TEMPORAL_NAMESPACE": "default", **overrides})


# -- the simulator's end state, from GET /_fake/state -------------------------------------------------

ROLE_IDS = {"student": 5, "instructor": 3}


def people(event_id: str, count: int, *, instructors: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": f"p-{i}", "username": f"{event_id}-user{i}", "email": f"{event_id}-user{i}@example.com",
         "first_name": f"First{i}", "last_name": f"Last{i}",
         "role": "instructor" if i < instructors else "student"}
        for i in range(count)
    ]


def assert_deployed(state: dict[str, Any], event: dict[str, Any],
                    participants: list[dict[str, Any]] | None = None) -> int:
    """The event has exactly one course holding exactly ``participants`` (default: the event's), each with
    one account, one enrolment with the right role, and no person got a second message. Returns the course id."""
    participants = event["participants"] if participants is None else participants
    courses = [c for c in state["courses"] if c["shortname"] == event["slug"] or event["id"] in c["shortname"]]
    assert [c["shortname"] for c in courses] == [event["slug"]], courses
    course_id = courses[0]["id"]
    accounts: dict[str, list[int]] = {}
    for user in state["users"]:
        accounts.setdefault(user["username"], []).append(user["id"])
    missing = [p["username"] for p in participants if p["username"].lower() not in accounts]
    assert not missing, f"{len(missing)} participants have no account, e.g. {missing[:5]}"
    doubled = {name: ids for name, ids in accounts.items() if name.startswith(event["id"].lower()) and len(ids) > 1}
    assert not doubled, f"accounts made twice: {doubled}"
    emails: dict[str, int] = {}
    for user in state["users"]:
        emails[user["email"].lower()] = emails.get(user["email"].lower(), 0) + 1
    assert all(emails[p["email"].lower()] == 1 for p in participants)
    enrolled = {e["userid"]: e["roles"] for e in state["enrolments"] if e["courseid"] == course_id}
    expected = {accounts[p["username"].lower()][0]: [ROLE_IDS[p["role"]]] for p in participants}
    wrong = {uid: (enrolled.get(uid), roles) for uid, roles in expected.items() if enrolled.get(uid) != roles}
    assert not wrong, f"{len(wrong)} enrolments wrong (have, want), e.g. {list(wrong.items())[:5]}"
    assert set(enrolled) == set(expected), f"enrolled but not participants: {set(enrolled) - set(expected)}"
    mails: dict[tuple[str, int], int] = {}
    for m in state["messages"]:
        mails[(m["kind"], m["user_id"])] = mails.get((m["kind"], m["user_id"]), 0) + 1
    twice = {key: n for key, n in mails.items() if n > 1}
    assert not twice, f"messages sent more than once: {twice}"
    return int(course_id)
