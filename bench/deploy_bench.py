"""Deployment benchmark: DeployEvent on Temporal against a plain loop, the engine's floor and a re-run.

    python bench/deploy_bench.py --participants 1000 --latency-ms 50 [--json]
    python bench/deploy_bench.py --participants 100 --beside 3000 [--small 20] --no-saturation --json
    MOODLE_TOKEN=... python bench/deploy_bench.py --participants 200 --moodle-url URL --template-id 2 [--json]

Everything runs as separate processes on this machine, as in production: a Temporal dev server
(`temporal server start-dev`, SQLite file), the Moodle simulator as a real HTTP server on loopback with
the given latency per call (or a real Moodle behind a counting pass-through), and `python worker.py`
with MOODLE_* / TEMPORAL_* from the environment, its peak RSS measured with psutil and the kernel's
VmHWM. Measured, in this order:

- deploy_s: starter.deploy_event of an event of N participants (every 10th an instructor; half of them
  already have a Moodle account, created before timing with a password so no mail) until its result;
- rerun_s: starter.rerun_deployment of the finished deployment, with the Moodle calls it made (it must
  make no write call and send no message);
- plan_s: starter.plan_event of the same event after the re-run (reads only: it must make no write call);
- engine_floor_s: 2 x N no-op activities (two per participant, one after the other, like ensure_user then
  enrol_user) on a worker with the same options and the same Temporal server (bench/bench_floor.py);
- sequential_s: the same event by a plain loop with the same MoodleClient, one participant after another
  (look up by email, create if missing, enrol; students first as DeployEvent does), on a fresh simulator
  in the same state. Above --sequential-sample participants a stratified sample is timed and extrapolated
  (`sequential_extrapolated: true`);
- moodle_saturation_s: the same calls from a plain asyncio pool with the same concurrency: what the Moodle
  server allows (always with --moodle-url; with the simulator too unless --no-saturation).
- with --beside N (fair share between events, on the same worker): small_alone_s, the median of
  --small-runs (default 3) events of --small participants (default 20) deployed alone; large_alone_s, an
  event of N alone; then an event of N again and, from --beside-delay seconds (default 3) after it while
  its tasks fill the queue, --small-runs other small ones, one after the other: small_beside_s (their
  median) and large_beside_s. --large-runs K repeats the large pair K times (medians of K each).
  Targets: small_beside_s <= 2 x small_alone_s, large_beside_s at most 10 % above large_alone_s.
  Where each small run's time went: small_*_wall_s (the start call, workflow tasks waiting and running,
  the time between workflow tasks, the result call); and large_*_workflow_task_timeouts, the large
  event's workflow tasks the server held on the worker's sticky queue past its schedule-to-start timeout.

Every process the benchmark starts is stopped when it ends (normally, on an error, or on Ctrl-C/SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import moodle_load  # noqa: E402  (beside this script)
import psutil  # noqa: E402
import term_start  # noqa: E402  (bench/: this script's folder)
from temporalio.api.enums.v1 import EventType as E  # noqa: E402
from temporalio.api.enums.v1 import TaskQueueType  # noqa: E402
from temporalio.api.taskqueue.v1 import RateLimit  # noqa: E402
from temporalio.api.workflowservice.v1 import (  # noqa: E402
    UpdateTaskQueueConfigRequest,
)
from temporalio.client import Client, WorkflowHistory  # noqa: E402
from temporalio.service import RPCError  # noqa: E402

from devtools.processes import WORKER_READY, Proc, Processes, free_port  # noqa: E402
from devtools.processes import worker_env as supervised_worker_env  # noqa: E402
from fake_moodle.service import WRITE_FUNCTIONS  # noqa: E402
from openvle_moodle_sync import starter  # noqa: E402
from openvle_moodle_sync.devserver import file_storage_args, temporal_cli  # noqa: E402
from openvle_moodle_sync.models import Event, Participant, Role, parse_event  # noqa: E402
from openvle_moodle_sync.moodle import MoodleClient  # noqa: E402
from openvle_moodle_sync.settings import ConfigError, Settings, load_settings  # noqa: E402
from openvle_moodle_sync.starter.temporal_errors import explain  # noqa: E402
from openvle_moodle_sync.temporal_client import (  # noqa: E402
    connect,
    ensure_search_attributes,
    exit_process,
)
from openvle_moodle_sync.temporal_config import resolve  # noqa: E402
from openvle_moodle_sync.workflows.batch import BATCH_SIZE  # noqa: E402
from openvle_moodle_sync.workflows.ids import deploy_id  # noqa: E402

SIM_TOKEN = "bench-token-0123456789abcdef"
PRECREATE_PASSWORD = "Bench-pass-1!"
PRECREATE_BATCH = 100  # users per core_user_create_users: 8 fields each, far below PHP's max_input_vars
MB = 1024 * 1024


# --- processes ------------------------------------------------------------------------------------------

_PROCS = Processes(BENCH, own_session=True, fresh_log=True, stop_timeout=20.0, measure=True)
"""Every process the benchmark starts, with its log file, sampled RSS and CPU time; stopped by its pid only."""


def spawn(name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None) -> Proc:
    """Start a process of the benchmark, logging to ``log_dir/<name>.log``."""
    return _PROCS.start(name, cmd, env=env, log_path=log_dir / f"{name}.log")


def stop_all() -> None:
    _PROCS.stop_all()


class Profiler:
    """py-spy attached to a process for one phase (``--profile DIR``); raw collapsed stacks."""

    def __init__(self, out_dir: Path | None, log_dir: Path) -> None:  # out_dir None: profiling off
        self.out_dir, self.log_dir = out_dir, log_dir
        self.running: list[Proc] = []

    def start(self, target: Proc, phase: str) -> None:
        if self.out_dir is None:
            return
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        out = self.out_dir / f"{phase}-{target.name}.txt"
        self.running.append(spawn(f"py-spy-{phase}-{target.name}", [
            py_spy, "record", "--pid", str(target.pid), "--format", "raw", "--rate", "200",
            "--nonblocking", "-o", str(out)], self.log_dir))

    def stop(self) -> None:
        for proc in self.running:
            proc.signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            proc.wait(30)
            proc.stop()
        self.running.clear()


# --- the event ------------------------------------------------------------------------------------------

@dataclass
class Population:
    """One event and the half of its participants that already have a Moodle account."""

    prefix: str
    event: Event
    existing: set[str]

    @property
    def people(self) -> list[Participant]:
        return self.event.participants

    def stratum(self, p: Participant) -> tuple[str, bool]:
        return (str(p.role), p.id in self.existing)


def make_population(prefix: str, n: int, template_id: int) -> Population:
    people = [
        {"id": f"p-{i}", "username": f"{prefix}-u{i:05d}", "email": f"{prefix}-u{i:05d}@bench.example.com",
         "first_name": "Bench", "last_name": f"User{i}", "role": "instructor" if i % 10 == 0 else "student"}
        for i in range(n)
    ]
    # i % 4 in (0, 1): half of everyone, and half of the instructors (i % 10 == 0 alternates i % 4 = 0, 2).
    existing = {f"p-{i}" for i in range(n) if i % 4 in (0, 1)}
    event = parse_event({"id": prefix, "name": f"Benchmark {prefix}", "slug": f"bench-{prefix}",
                         "moodle_course_id": template_id, "participants": people})
    return Population(prefix, event, existing)


async def precreate(moodle: MoodleClient, pop: Population) -> None:
    """Create the accounts that already exist before the deployment, with a password (no mail)."""
    users: list[Any] = [
        {"username": p.username, "firstname": p.first_name, "lastname": p.last_name, "email": p.email,
         "auth": "manual", "password": PRECREATE_PASSWORD}
        for p in pop.people if p.id in pop.existing
    ]
    for start in range(0, len(users), PRECREATE_BATCH):
        await moodle.create_users(users[start:start + PRECREATE_BATCH])


# --- Moodle endpoints: the simulator, or a real Moodle behind the counting proxy ---------------------------

class MoodleSide:
    """Where the calls go, and how they are counted (calls by function, in flight, messages)."""

    def __init__(self, name: str, url: str, token: str, proc: Proc, *, real: bool, mail_log: Path | None) -> None:
        self.name, self.url, self.token, self.proc = name, url, token, proc
        self.real, self.mail_log = real, mail_log

    async def state(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=120) as http:
            response = await http.get(f"{self.url}/{'_bench' if self.real else '_fake'}/state")
            response.raise_for_status()
            return dict(response.json())

    async def counters(self, pop: Population | None = None) -> dict[str, Any]:
        state = await self.state()
        return {"calls": Counter(state["calls_by_function"]), "peak": state["peak_in_flight"],
                "messages": self.messages(state, pop)}

    def messages(self, state: dict[str, Any], pop: Population | None) -> int | None:
        if not self.real:
            return len(state["messages"])
        if self.mail_log is None or pop is None:
            return None
        marker = f"{pop.prefix}-u"
        count = 0
        with contextlib.suppress(OSError), self.mail_log.open(errors="replace") as lines:
            for line in lines:
                if marker in line:
                    with contextlib.suppress(ValueError):
                        if any(marker in r for r in json.loads(line).get("rcpt_tos", [])):
                            count += 1
        return count

    async def reset_peak(self) -> None:
        if self.real:
            async with httpx.AsyncClient(timeout=30) as http:
                await http.post(f"{self.url}/_bench/reset_peak")

    def client(self, settings: Settings) -> MoodleClient:
        return MoodleClient(self.url, self.token, timeout=settings.moodle_timeout,
                            max_connections=settings.moodle_max_concurrency)


async def start_simulator(name: str, latency_ms: float, log_dir: Path) -> MoodleSide:
    proc = await asyncio.to_thread(_PROCS.fake_moodle, SIM_TOKEN, latency_ms=latency_ms, name=name,
                                   log_path=log_dir / f"{name}.log")
    return MoodleSide(name, proc.url, SIM_TOKEN, proc, real=False, mail_log=None)


async def start_proxy(upstream: str, token: str, log_dir: Path, mail_log: Path | None) -> MoodleSide:
    port = free_port()
    proc = spawn("moodle-proxy", [sys.executable, str(BENCH / "moodle_proxy.py"), "--port", str(port),
                                 "--upstream", upstream], log_dir)
    url = f"http://127.0.0.1:{port}"
    side = MoodleSide("moodle-proxy", url, token, proc, real=True, mail_log=mail_log)
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError):
            await side.state()
            return side
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the counting proxy did not start:\n{proc.tail()}")
        await asyncio.sleep(0.1)


def diff(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    return {k: v for k, v in sorted((after - before).items()) if v}


def writes(calls: dict[str, int]) -> int:
    return sum(n for f, n in calls.items() if f in WRITE_FUNCTIONS)


# --- the plain ways: one after another, and a pool ----------------------------------------------------------

def role_id(settings: Settings, p: Participant) -> int:
    return settings.moodle_instructor_role_id if p.role == Role.INSTRUCTOR else settings.moodle_student_role_id


async def plain_course(moodle: MoodleClient, event: Event, settings: Settings) -> int:
    """The event's course, as a script would make it: copy the template, mark it."""
    assert event.moodle_course_id is not None
    (template,) = (await moodle.get_courses_by_field("id", event.moodle_course_id))
    copy = await moodle.duplicate_course(event.moodle_course_id, event.name, event.slug, template["categoryid"],
                                         visible=settings.moodle_course_visible, include_users=False,
                                         timeout=settings.moodle_course_timeout)
    await moodle.update_courses([{"id": copy["id"], "idnumber": event.course_idnumber}])
    return int(copy["id"])


async def plain_participant(moodle: MoodleClient, course_id: int, p: Participant, settings: Settings) -> None:
    """Look the account up by email, create it if missing (as ensure_user does), enrol it."""
    users = await moodle.get_users_by_field("email", [p.email])
    if users:
        user_id = users[0]["id"]
    else:
        new: dict[str, Any] = {"username": p.username, "firstname": p.first_name, "lastname": p.last_name,
                               "email": p.email, "auth": settings.moodle_user_auth}
        if settings.moodle_user_auth == "manual":
            new["createpassword"] = 1
        user_id = (await moodle.create_users([new]))[0]["id"]  # type: ignore[list-item]
    await moodle.enrol_users([{"roleid": role_id(settings, p), "userid": user_id, "courseid": course_id}])


def students_first(people: list[Participant]) -> list[Participant]:
    """DeployEvent's order: students, then instructors (so no welcome mail is sent)."""
    return [p for p in people if p.role == Role.STUDENT] + [p for p in people if p.role == Role.INSTRUCTOR]


def stratified_sample(pop: Population, k: int) -> list[Participant]:
    """About k participants with the event's mix of roles and existing accounts, spread over the event."""
    strata: dict[tuple[str, bool], list[Participant]] = defaultdict(list)
    for p in pop.people:
        strata[pop.stratum(p)].append(p)
    picked: list[Participant] = []
    for members in strata.values():
        share = max(1, round(k * len(members) / len(pop.people)))
        step = len(members) / share
        picked += [members[int(j * step)] for j in range(share)]
    order = {p.id: i for i, p in enumerate(pop.people)}
    return sorted(picked, key=lambda p: order[p.id])


async def run_sequential(moodle: MoodleClient, pop: Population, settings: Settings, sample: int) -> dict[str, Any]:
    n = len(pop.people)
    chosen = pop.people if n <= sample else stratified_sample(pop, sample)
    started = time.perf_counter()
    course_id = await plain_course(moodle, pop.event, settings)
    course_s = time.perf_counter() - started
    per_stratum: dict[tuple[str, bool], list[float]] = defaultdict(list)
    for p in students_first(chosen):
        t = time.perf_counter()
        await plain_participant(moodle, course_id, p, settings)
        per_stratum[pop.stratum(p)].append(time.perf_counter() - t)
    measured_s = time.perf_counter() - started
    if len(chosen) == n:
        return {"sequential_s": measured_s, "sequential_extrapolated": False, "sequential_sample": n,
                "sequential_measured_s": measured_s, "course_id": course_id}
    sizes = Counter(pop.stratum(p) for p in pop.people)
    estimate = course_s + sum(sum(times) / len(times) * sizes[key] for key, times in per_stratum.items())
    return {"sequential_s": estimate, "sequential_extrapolated": True, "sequential_sample": len(chosen),
            "sequential_measured_s": measured_s, "course_id": course_id}


async def run_saturation(moodle: MoodleClient, pop: Population, settings: Settings) -> tuple[float, int]:
    """The same calls from a plain pool of MOODLE_MAX_CONCURRENCY tasks (students, then instructors)."""
    started = time.perf_counter()
    course_id = await plain_course(moodle, pop.event, settings)
    for role in (Role.STUDENT, Role.INSTRUCTOR):
        queue: asyncio.Queue[Participant] = asyncio.Queue()
        for p in pop.people:
            if p.role == role:
                queue.put_nowait(p)

        async def drain(q: asyncio.Queue[Participant] = queue) -> None:
            while not q.empty():
                await plain_participant(moodle, course_id, q.get_nowait(), settings)

        await asyncio.gather(*(drain() for _ in range(settings.moodle_max_concurrency)))
    return time.perf_counter() - started, course_id


# --- Temporal ---------------------------------------------------------------------------------------------

TEMPORAL_DB = {
    # The project's dev server: a SQLite file in WAL mode, synchronous=normal (devserver.SQLITE_PRAGMAS).
    "file": file_storage_args("{db}"),
    # The same file with SQLite's defaults (rollback journal, synchronous=FULL): every commit waits for an
    # fsync of the disk. What the project's dev servers ran before SQLITE_PRAGMAS, for comparison.
    "rollback": ["--db-filename", "{db}"],
    # In memory, as WorkflowEnvironment.start_local runs it (the tests).
    "memory": [],
}


async def start_temporal(log_dir: Path, work: Path, db: str, extra: Sequence[str] = ()) -> tuple[Proc, str]:
    storage = [arg.replace("{db}", str(work / "temporal.db")) for arg in TEMPORAL_DB[db]]
    proc = _PROCS.temporal(None, storage=storage, extra=extra, wait=False, log_path=log_dir / "temporal.log")
    await asyncio.to_thread(proc.wait_until_serving, 60)
    return proc, proc.address


def worker_env(settings: Settings, moodle_url: str, token: str, queue: str) -> dict[str, str]:
    target = resolve(settings)
    return supervised_worker_env(moodle_url=moodle_url, token=token, temporal_address=target.address,
                                 task_queue=queue, isolated=False, TEMPORAL_NAMESPACE=target.namespace,
                                 MOODLE_MAX_CONCURRENCY=str(settings.moodle_max_concurrency))


async def history_lengths(client: Client, queue: str, runs: Sequence[tuple[str, str | None]] = ()) -> dict[str, int]:
    """History length of every run on the task queue (listed, then described for the exact count), and of
    the given runs (visibility may list a run that just closed a moment late)."""
    found = [(wf.id, wf.run_id) async for wf in client.list_workflows(f'TaskQueue="{queue}"')]
    lengths: dict[str, int] = {}
    for workflow_id, run_id in dict.fromkeys([*found, *runs]):
        description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        info = description.raw_description.workflow_execution_info
        lengths[f"{workflow_id}@{info.execution.run_id}"] = info.history_length
    return lengths


async def fetch_histories(client: Client, runs: Sequence[tuple[str, str | None]]) -> list[WorkflowHistory]:
    """The histories of (workflow id, run id) runs, in order."""
    return [await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
            for workflow_id, run_id in runs]


def timing(histories: Sequence[WorkflowHistory]) -> dict[str, Any]:
    """Where the time of the runs went, from their histories: how long activities waited in the task queue
    (scheduled -> started) and ran (started -> closed, the Moodle calls plus the worker), how long workflow
    tasks waited and ran, and how many activities were running on average over the whole span."""
    waits: dict[str, list[float]] = defaultdict(list)
    runs_ms: dict[str, list[float]] = defaultdict(list)
    wft_wait: list[float] = []
    wft_run: list[float] = []
    edges: list[tuple[float, int]] = []
    span = [float("inf"), 0.0]
    for history in histories:
        scheduled: dict[int, tuple[str, float]] = {}
        started: dict[int, float] = {}
        wft_scheduled = wft_started = 0.0
        for ev in history.events:
            t = ev.event_time.ToMicroseconds() / 1e6
            span = [min(span[0], t), max(span[1], t)]
            kind = ev.event_type
            if kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled[ev.event_id] = (ev.activity_task_scheduled_event_attributes.activity_type.name, t)
            elif kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                sid = ev.activity_task_started_event_attributes.scheduled_event_id
                started[sid] = t
                waits[scheduled[sid][0]].append((t - scheduled[sid][1]) * 1000)
            elif kind in (E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, E.EVENT_TYPE_ACTIVITY_TASK_FAILED,
                          E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT):
                attrs = (ev.activity_task_completed_event_attributes if kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
                         else ev.activity_task_failed_event_attributes if kind == E.EVENT_TYPE_ACTIVITY_TASK_FAILED
                         else ev.activity_task_timed_out_event_attributes)
                sid = attrs.scheduled_event_id
                if sid in started:
                    runs_ms[scheduled[sid][0]].append((t - started[sid]) * 1000)
                    edges += [(started[sid], 1), (t, -1)]
            elif kind == E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                wft_scheduled = t
            elif kind == E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                wft_started = t
                wft_wait.append((t - wft_scheduled) * 1000)
            elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                wft_run.append((t - wft_started) * 1000)
    running = area = 0.0
    last = None
    for t, step in sorted(edges):
        if last is not None:
            area += running * (t - last)
        running += step
        last = t
    return {
        "activity_queue_wait_ms": {k: term_start.pct(v, digits=1) for k, v in sorted(waits.items())},
        "activity_run_ms": {k: term_start.pct(v, digits=1) for k, v in sorted(runs_ms.items())},
        "workflow_task_queue_wait_ms": term_start.pct(wft_wait, digits=1),
        "workflow_task_run_ms": term_start.pct(wft_run, digits=1),
        "avg_activities_running": round(area / (span[1] - span[0]), 1) if span[1] > span[0] else None,
        "history_span_s": round(span[1] - span[0], 2) if span[1] > span[0] else None,
    }


def where_the_run_went(history: WorkflowHistory, called_at: float, returned_at: float) -> dict[str, float]:
    """One run's wall clock (seconds, from the caller's start call to its result) cut into what follows
    what: the start call until the server recorded the run, workflow tasks waiting for a worker, workflow
    tasks running (worker and server), the time between a workflow task and the next one (activities in
    the queue and running, Moodle), and from the run's close to the caller holding the result."""
    times = [ev.event_time.ToMicroseconds() / 1e6 for ev in history.events]
    parts = {"start_call": times[0] - called_at, "workflow_task_wait": 0.0, "workflow_task_run": 0.0,
             "between_tasks": 0.0, "result_call": returned_at - times[-1]}
    part_ending_at = {E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED: "between_tasks",
                      E.EVENT_TYPE_WORKFLOW_TASK_STARTED: "workflow_task_wait",
                      E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_task_run"}
    last = times[0]
    for ev, t in zip(history.events[1:], times[1:], strict=True):
        if ev.event_type in part_ending_at:
            parts[part_ending_at[ev.event_type]] += t - last
            last = t
    parts["workflow_task_run"] += times[-1] - last  # the run closes with its last workflow task's commands
    return {k: round(v, 3) for k, v in parts.items()}


async def workflow_task_timeouts(client: Client, id_prefixes: Sequence[str]) -> list[int]:
    """For each prefix, the workflow tasks of the runs whose id starts with it (a deployment and its
    children) that timed out: each is a stall of up to the worker's sticky schedule-to-start timeout (10 s),
    a task the server held on the worker's sticky queue while that worker was polling it."""
    counts = [0] * len(id_prefixes)
    async for execution in client.list_workflows():
        for i, prefix in enumerate(id_prefixes):
            if execution.id.startswith(prefix):
                history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
                counts[i] += sum(1 for ev in history.events if ev.event_type == E.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT)
    return counts


async def timed(make: Callable[[], Awaitable[Any]], timeout: float) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await asyncio.wait_for(make(), timeout)
    return time.perf_counter() - started, result


@dataclass
class CpuWindow:
    """CPU seconds each process used during one phase: where the wall time went."""

    procs: dict[str, Proc]
    start: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.start = {name: p.cpu_s() for name, p in self.procs.items()}
        self.start["bench"] = _self_cpu()

    def result(self) -> dict[str, float]:
        used = {name: round(p.cpu_s() - self.start[name], 2) for name, p in self.procs.items()}
        used["bench"] = round(_self_cpu() - self.start["bench"], 2)
        return used


def _self_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


# --- the run ----------------------------------------------------------------------------------------------

async def limit_each_event(client: Client, queue: str, rps: float) -> None:
    """The engine's rate limit per fairness key on the queue's activity tasks (docs/workflows.md)."""
    await client.workflow_service.update_task_queue_config(UpdateTaskQueueConfigRequest(
        namespace=client.namespace, identity="deploy_bench", task_queue=queue,
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        update_fairness_key_rate_limit_default=UpdateTaskQueueConfigRequest.RateLimitUpdate(
            rate_limit=RateLimit(requests_per_second=rps), reason="deploy_bench --fairness-key-rps"),
    ))


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    log_dir = work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    profiler = Profiler(args.profile, log_dir)
    real = bool(args.moodle_url)
    run_id = uuid.uuid4().hex[:6]
    n = args.participants
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if not args.quiet else (lambda *a: None)

    if args.temporal_address:
        temporal, address = None, args.temporal_address
    else:
        say("starting the Temporal dev server ...")
        temporal, address = await start_temporal(
            log_dir, work, args.temporal_db, [a for kv in args.dynamic_config for a in ("--dynamic-config-value", kv)])
    queue = f"bench-{run_id}"
    if real:
        token = os.environ.get("MOODLE_TOKEN", "")
        if not token:
            raise SystemExit("--moodle-url needs the token in MOODLE_TOKEN")
        mail_log = Path(args.mail_log) if args.mail_log else None
        say(f"counting proxy in front of {args.moodle_url} ...")
        side = await start_proxy(args.moodle_url, token, log_dir, mail_log)
        template_id = args.template_id
    else:
        side = await start_simulator("moodle-sim", args.latency_ms, log_dir)
        template_id = int((await side.state())["template_course_id"])
    settings = load_settings(moodle_enabled=True, moodle_url=side.url, moodle_token=side.token,
                             temporal_address=address, temporal_task_queue=queue)
    conc = settings.moodle_max_concurrency
    pop = make_population(f"b{run_id}", n, template_id)
    out: dict[str, Any] = {
        "participants": n, "latency_ms": None if real else args.latency_ms, "concurrency": conc,
        "temporal": (f"dev server, {args.temporal_db} storage" + "".join(f", {kv}" for kv in args.dynamic_config)
                     if temporal else f"given: {address}"),
        "moodle": args.moodle_url or "simulator (HTTP on loopback)",
        "instructors": sum(1 for p in pop.people if p.role == Role.INSTRUCTOR),
        "existing_accounts": len(pop.existing),
    }
    courses_made: list[int] = []

    async with side.client(settings) as moodle:
        say(f"pre-creating {len(pop.existing)} existing accounts ...")
        await precreate(moodle, pop)

    client = await connect(settings)
    try:
        await ensure_search_attributes(client)
        if args.fairness_key_rps:
            await limit_each_event(client, queue, args.fairness_key_rps)
            out["fairness_key_rps"] = args.fairness_key_rps
    except RPCError as error:  # the first calls in the namespace: a wrong TEMPORAL_NAMESPACE, say
        target = resolve(settings)
        raise ConfigError(explain(error, address=target.address, namespace=target.namespace)) from None
    env = worker_env(settings, side.url, side.token, queue)
    worker = spawn("worker", [sys.executable, "worker.py"], log_dir, env=env)
    await worker.output_appears(WORKER_READY, 60)
    procs = {"worker": worker, side.name: side.proc}
    if temporal:
        procs["temporal"] = temporal
    if args.term_start:
        return await _term_start(client, side, settings, args, template_id, run_id, say, out, procs)

    # --- deploy ---
    result_runs: list[str] = []
    say(f"deploying {n} participants ...")
    await side.reset_peak()
    before = await side.counters(pop)
    cpu = CpuWindow(procs)
    profiler.start(worker, "deploy")
    if not real:
        profiler.start(side.proc, "deploy")
    lab_cpu = moodle_load.LabCpu.find(args.moodle_lab_dir) if real else None
    moodle_cpu = lab_cpu.seconds() if lab_cpu else None
    deploy_s, result = await timed(lambda: _deploy(client, pop, settings, result_runs), args.timeout)
    out["moodle_cpu_s"] = round(lab_cpu.seconds() - moodle_cpu, 3) if lab_cpu and moodle_cpu is not None else None
    profiler.stop()
    out["deploy_cpu_s"] = cpu.result()
    after = await side.counters(pop)
    courses_made.append(result.course_id)
    out["deploy_s"] = round(deploy_s, 3)
    out["deploy_ok"] = result.done == n and result.failed == 0
    out["deploy_done"], out["deploy_failed"] = result.done, result.failed
    out["moodle_calls"] = diff(after["calls"], before["calls"])
    out["moodle_calls_total"] = sum(out["moodle_calls"].values())
    out["peak_in_flight"] = after["peak"]
    out["messages"] = None if after["messages"] is None else after["messages"] - before["messages"]
    if not real:
        state = await side.state()
        out["enrolments_in_course"] = sum(1 for e in state["enrolments"] if e["courseid"] == result.course_id)

    # --- rerun ---
    say("re-running the deployment ...")
    before = await side.counters(pop)
    rerun_s, rerun = await timed(lambda: _rerun(client, pop, settings, result_runs), args.timeout)
    after = await side.counters(pop)
    out["rerun_s"] = round(rerun_s, 3)
    out["rerun_ok"] = rerun.done == n and rerun.failed == 0 and not rerun.course_created
    out["rerun_moodle_calls"] = diff(after["calls"], before["calls"])
    out["rerun_write_calls"] = writes(out["rerun_moodle_calls"])
    out["rerun_messages"] = None if after["messages"] is None else after["messages"] - before["messages"]

    # --- plan (reads only) ---
    say("planning the same event ...")
    before = await side.counters(pop)
    plan_s, plan = await timed(lambda: starter.plan_event(client, pop.event, settings=settings), args.timeout)
    after = await side.counters(pop)
    out["plan_s"] = round(plan_s, 3)
    out["plan_ok"] = plan.unchanged == n and not plan.enrol and not plan.remove
    out["plan_moodle_calls"] = diff(after["calls"], before["calls"])
    out["plan_write_calls"] = writes(out["plan_moodle_calls"])

    lengths = await history_lengths(client, queue, [(result_runs[0], None), (result_runs[1], None)])
    out["workflows"] = len(lengths)
    out["history_events_top"] = dict(sorted(lengths.items(), key=lambda kv: -kv[1])[:5])
    out["max_history_events"] = max(lengths.values(), default=0)
    # The first deployment and its batches (their ids start with its id): not the rerun, the plan or the life.
    deploy_runs = [tuple(key.split("@")) for key in lengths if key.startswith(result_runs[0])]
    out["deploy_timing"] = timing(await fetch_histories(client, deploy_runs))  # type: ignore[arg-type]
    if args.beside:
        out.update(await beside(client, side, settings, args, template_id, run_id, say))
    out["worker_peak_rss_mb"] = round(worker.hwm_bytes() / MB, 1)
    out["worker_sampled_peak_rss_mb"] = round(worker.peak_rss / MB, 1)
    if temporal:
        out["temporal_server_peak_rss_mb"] = round(temporal.hwm_bytes() / MB, 1)
    worker.stop()
    if worker.returncode not in (0, -signal.SIGTERM):
        say(f"worker exited with {worker.returncode}:\n{worker.tail()}")

    # --- engine floor ---
    say(f"engine floor: {2 * n} no-op activities ...")
    floor_queue = f"bench-floor-{run_id}"
    floor_env = worker_env(settings, side.url, side.token, floor_queue)
    floor_worker = spawn("floor-worker", [sys.executable, str(BENCH / "bench_floor.py")], log_dir, env=floor_env)
    await floor_worker.output_appears("floor worker polling", 60)
    batch = args.floor_batch if args.floor_batch is not None else BATCH_SIZE
    cpu = CpuWindow({"worker": floor_worker, **({"temporal": temporal} if temporal else {})})
    profiler.start(floor_worker, "floor")
    floor_s, _ = await timed(lambda: client.execute_workflow(
        "BenchEngineFloor", args=[n, batch, settings.moodle_sync_timeout, settings.moodle_retry_max_interval],
        id=f"bench-floor-{run_id}", task_queue=floor_queue, result_type=int), args.timeout)
    profiler.stop()
    out["engine_floor_cpu_s"] = cpu.result()
    out["engine_floor_s"] = round(floor_s, 3)
    out["engine_floor_shape"] = (f"1 workflow, {2 * n} activities" if batch <= 0 or n <= batch
                                 else f"{-(-n // batch)} child workflows of <= {2 * batch} activities")
    floor_lengths = await history_lengths(client, floor_queue)
    out["engine_floor_timing"] = timing(await fetch_histories(client, [tuple(k.split("@")) for k in floor_lengths]))  # type: ignore[misc]
    out["engine_floor_max_history_events"] = max(floor_lengths.values(), default=0)
    out["floor_worker_peak_rss_mb"] = round(floor_worker.hwm_bytes() / MB, 1)
    floor_worker.stop()

    # --- the plain ways ---
    async def plain_side(way: str, prefix: str) -> tuple[MoodleSide, Population]:
        """Where a plain way runs: on a real Moodle, the same site with people of its own (``prefix``); on the
        simulator, a simulator of its own (stopped after it) with the deployment's people."""
        if real:
            return side, make_population(f"{prefix}{run_id}", n, template_id)
        return await start_simulator(f"moodle-sim-{way}", args.latency_ms, log_dir), pop

    seq_side, seq_pop = await plain_side("sequential", "s")
    async with seq_side.client(settings) as moodle:
        await precreate(moodle, seq_pop)
        say(f"sequential loop ({min(n, args.sequential_sample)} of {n} participants) ...")
        seq = await run_sequential(moodle, seq_pop, settings, args.sequential_sample)
    courses_made.append(seq.pop("course_id"))
    out.update({k: round(v, 3) if isinstance(v, float) else v for k, v in seq.items()})
    if not real:
        seq_side.proc.stop()

    if real or not args.no_saturation:
        sat_side, sat_pop = await plain_side("saturation", "c")
        async with sat_side.client(settings) as moodle:
            await precreate(moodle, sat_pop)
            say(f"saturation: the same calls from a pool of {conc} ...")
            await sat_side.reset_peak()
            before = await sat_side.counters(sat_pop)
            sat_s, course_id = await run_saturation(moodle, sat_pop, settings)
            after = await sat_side.counters(sat_pop)
        courses_made.append(course_id)
        out["moodle_saturation_s"] = round(sat_s, 3)
        out["saturation_moodle_calls_total"] = sum(diff(after["calls"], before["calls"]).values())
        out["saturation_peak_in_flight"] = after["peak"]
        if not real:
            sat_side.proc.stop()

    if real and args.batched_anchor:
        say("the same event by a script of batched calls ...")
        anchor_pop = make_population(f"a{run_id}", n, template_id)

        async def calls_so_far() -> int:
            return sum((await side.counters())["calls"].values())

        async with side.client(settings) as moodle:
            await precreate(moodle, anchor_pop)
            figures, course_id = await moodle_load.batched_anchor(
                moodle, anchor_pop.event, lab_cpu, instructor_role=settings.moodle_instructor_role_id,
                student_role=settings.moodle_student_role_id, calls=calls_so_far)
        courses_made.append(course_id)
        out.update(figures)

    if real and not args.keep_courses:
        say(f"deleting the benchmark's courses {courses_made} ...")
        async with MoodleClient(args.moodle_url, side.token, timeout=600) as moodle:
            for course_id in courses_made:
                with contextlib.suppress(Exception):
                    await moodle.delete_courses([course_id], timeout=600)
    else:
        out["courses_left"] = courses_made if real else None

    side.proc.stop()
    if temporal:
        temporal.stop()
    ratios(out)
    out["machine"] = machine()
    return out


async def beside(client: Client, side: MoodleSide, settings: Settings, args: argparse.Namespace, template_id: int,
                 run_id: str, say: Callable[..., None]) -> dict[str, Any]:
    """Fair share: a small event alone (--small-runs times), then --large-runs rounds of a large event alone
    followed by a large event while the small one runs beside it (--small-runs times, one after the other,
    the first --beside-delay seconds after the large one started). Each event is new, with half its
    accounts already in Moodle.

    A small deployment takes a second or two, and two runs of the same alone differ by up to half of that
    on this VM; a large one alone varies by a tenth or more from one run to the next. The ratios are of
    the medians, and every sample is kept in the output."""
    runs, rounds = args.small_runs, args.large_runs
    pops = {name: make_population(f"{name}{run_id}", n, template_id) for name, n in (
        *((f"sa{i}", args.small) for i in range(runs)),
        *((f"sb{r}x{i}", args.small) for r in range(rounds) for i in range(runs)),
        *((f"{kind}{r}x", args.beside) for r in range(rounds) for kind in ("la", "lb")))}
    async with side.client(settings) as moodle:
        say(f"beside: pre-creating the accounts of {runs * (rounds + 1)} events of {args.small} and "
            f"{2 * rounds} of {args.beside} ...")
        for pop in pops.values():
            await precreate(moodle, pop)

    deploy_call_s: dict[str, list[float]] = {"alone": [], "beside": []}
    change_call_s: list[float] = []

    async def deployed(pop: Population, calls: list[float] | None = None) -> tuple[str, str | None, float, float]:
        called_at = time.time()
        handle = await starter.deploy_event(client, pop.event, settings=settings)
        if calls is not None:
            calls.append(time.time() - called_at)
        result = await handle.result()
        assert result.done == len(pop.people) and not result.failed, f"{pop.prefix}: {result.done} done"
        return handle.id, None, called_at, time.time()

    say(f"beside: a small event of {args.small} alone ({runs} times) ...")
    alone = [await timed(functools.partial(deployed, pops[f"sa{i}"], deploy_call_s["alone"]), args.timeout)
             for i in range(runs)]

    async def changes_while(large: asyncio.Task[Any]) -> list[Any]:
        """While the large event runs: an add, then the removal of that person, to the small events deployed
        alone, one call every --beside-calls-every seconds (the backend's calls beside a busy worker)."""
        handles = []
        i = 0
        while not large.done():
            pop = pops[f"sa{i // 2 % runs}"]
            person = Participant(id=f"busy-{i // 2}", username=f"{pop.prefix}-busy-{i // 2}",
                                 email=f"{pop.prefix}-busy-{i // 2}@bench.example.com", first_name="Busy",
                                 last_name=str(i // 2), role=Role.STUDENT)
            send = starter.add_participant if i % 2 == 0 else starter.remove_participant
            called_at = time.perf_counter()
            handles.append(await send(client, pop.event, person, settings=settings))
            change_call_s.append(time.perf_counter() - called_at)
            i += 1
            await asyncio.sleep(args.beside_calls_every)
        return [await h.result() for h in handles]

    large_alone: list[float] = []
    large_beside: list[float] = []
    beside_runs = []
    for r in range(rounds):
        say(f"beside: round {r + 1} of {rounds}: a large event of {args.beside} alone, then another with the "
            f"small event ({runs} times) from {args.beside_delay:g} s after it started ...")
        large_alone.append((await timed(functools.partial(deployed, pops[f"la{r}x"]), args.timeout))[0])
        large = asyncio.create_task(timed(functools.partial(deployed, pops[f"lb{r}x"]), args.timeout))
        await asyncio.sleep(args.beside_delay)
        changing = asyncio.create_task(changes_while(large)) if args.beside_calls_every > 0 else None
        for i in range(runs):
            beside_runs.append(await timed(functools.partial(deployed, pops[f"sb{r}x{i}"],
                                                             deploy_call_s["beside"]), args.timeout))
            if large.done():
                raise RuntimeError(f"the large event ended before small event {i + 1} of {runs}: use a larger "
                                   "--beside")
        large_beside.append((await large)[0])
        if changing is not None:
            await changing
    small_alone_s = statistics.median(t for t, _ in alone)
    small_beside_s = statistics.median(t for t, _ in beside_runs)
    large_alone_s, large_beside_s = statistics.median(large_alone), statistics.median(large_beside)
    out: dict[str, Any] = {
        "small": args.small, "beside": args.beside, "beside_delay_s": args.beside_delay, "small_runs": runs,
        "large_runs": rounds,
        "small_alone_s": round(small_alone_s, 3), "small_beside_s": round(small_beside_s, 3),
        "small_alone_samples_s": [round(t, 3) for t, _ in alone],
        "small_beside_samples_s": [round(t, 3) for t, _ in beside_runs],
        "large_alone_s": round(large_alone_s, 3), "large_beside_s": round(large_beside_s, 3),
        "large_alone_samples_s": [round(t, 3) for t in large_alone],
        "large_beside_samples_s": [round(t, 3) for t in large_beside],
    }
    # The API's calls as the backend sees them (describe, then signal with start), the worker idle and busy.
    out["deploy_call_alone_s"] = term_start.pct(deploy_call_s["alone"])
    out["deploy_call_beside_s"] = term_start.pct(deploy_call_s["beside"])
    out["change_call_beside_s"] = term_start.pct(change_call_s)
    out["small_beside_vs_alone"] = round(small_beside_s / small_alone_s, 3)
    out["large_growth"] = round(large_beside_s / large_alone_s - 1, 3)
    # Where the small events' time went: waiting in the task queue, or running (worker, Moodle, engine).
    # Each small run's history is fetched once, for both the timing and the wall clock below.
    alone_histories = await fetch_histories(client, [run[:2] for _, run in alone])
    beside_histories = await fetch_histories(client, [run[:2] for _, run in beside_runs])
    out["small_alone_timing"] = timing(alone_histories)
    out["small_beside_timing"] = timing(beside_histories)
    timeouts = await workflow_task_timeouts(
        client, [deploy_id(pops[f"{kind}{r}x"].event.id, "") for kind in ("la", "lb") for r in range(rounds)])
    out["large_alone_workflow_task_timeouts"] = timeouts[:rounds]
    out["large_beside_workflow_task_timeouts"] = timeouts[rounds:]
    out["small_alone_wall_s"] = [where_the_run_went(history, *run[2:])
                                 for history, (_, run) in zip(alone_histories, alone, strict=True)]
    out["small_beside_wall_s"] = [where_the_run_went(history, *run[2:])
                                  for history, (_, run) in zip(beside_histories, beside_runs, strict=True)]
    return out


async def _term_start(client: Client, side: MoodleSide, settings: Settings, args: argparse.Namespace,
                      template_id: int, run_id: str, say: Callable[..., None], out: dict[str, Any],
                      procs: dict[str, Proc]) -> dict[str, Any]:
    """--term-start E (bench/term_start.py) instead of the single event's phases."""
    out.update(await term_start.measure(client, side, settings, args, template_id, run_id, say))
    out["worker_peak_rss_mb"] = round(procs["worker"].hwm_bytes() / MB, 1)
    if "temporal" in procs:
        out["temporal_server_peak_rss_mb"] = round(procs["temporal"].hwm_bytes() / MB, 1)
    out["machine"] = machine()
    stop_all()
    return out


async def _deploy(client: Client, pop: Population, settings: Settings, runs: list[str]) -> Any:
    handle = await starter.deploy_event(client, pop.event, settings=settings)
    runs.append(handle.id)
    return await handle.result()


async def _rerun(client: Client, pop: Population, settings: Settings, runs: list[str]) -> Any:
    handle = await starter.rerun_deployment(client, pop.event.id, settings=settings)
    runs.append(handle.id)
    return await handle.result()


def ratios(out: dict[str, Any]) -> None:
    def ratio(a: str, b: str) -> float | None:
        return round(out[a] / out[b], 3) if out.get(a) is not None and out.get(b) else None

    out["deploy_vs_sequential"] = ratio("deploy_s", "sequential_s")
    out["deploy_vs_floor"] = ratio("deploy_s", "engine_floor_s")
    out["rerun_vs_deploy"] = ratio("rerun_s", "deploy_s")
    out["plan_vs_deploy"] = ratio("plan_s", "deploy_s")
    out["deploy_vs_saturation"] = ratio("deploy_s", "moodle_saturation_s")
    out.update(moodle_load.anchor_ratios(out))
    checks: dict[str, Any] = {
        "deploy_ok": out["deploy_ok"] and out["rerun_ok"],
        "deploy_vs_sequential<=0.1": _le(out["deploy_vs_sequential"], 0.1),
        "deploy_vs_floor<=1.5": _le(out["deploy_vs_floor"], 1.5),
        "rerun_vs_deploy<=0.2": _le(out["rerun_vs_deploy"], 0.2),
        "plan_vs_deploy<=0.2": _le(out["plan_vs_deploy"], 0.2),
        "plan_ok_no_write": out["plan_ok"] and out["plan_write_calls"] == 0,
        "rerun_no_write_no_message": out["rerun_write_calls"] == 0 and not out["rerun_messages"],
        "max_history_events<20000": out["max_history_events"] < 20000,
        "worker_peak_rss_mb<300": out["worker_peak_rss_mb"] < 300,
    }
    if out["latency_ms"] is None:
        checks["deploy_vs_saturation<=1.3"] = _le(out["deploy_vs_saturation"], 1.3)
    if out.get("anchor_s"):
        checks["moodle_cpu_vs_anchor<=1.5"] = _le(out["moodle_cpu_vs_anchor"], 1.5)
        checks["deploy_vs_anchor<=1"] = _le(out["deploy_vs_anchor"], 1.0)
    if "small_beside_s" in out:
        checks["small_beside_vs_alone<=2"] = _le(out["small_beside_vs_alone"], 2.0)
        checks["large_growth<=0.1"] = _le(out["large_growth"], 0.1)
    out["targets_met"] = checks


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def machine() -> dict[str, Any]:
    import platform

    import temporalio

    version = subprocess.run([temporal_cli(), "--version"], capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "mem_total_gb": round(psutil.virtual_memory().total / 1024**3, 1),
            "python": platform.python_version(), "temporalio": temporalio.__version__, "temporal_cli": version}


def table(out: dict[str, Any]) -> str:
    rows = [
        ("participants", out["participants"]), ("temporal", out["temporal"]),
        ("latency per call", f"{out['latency_ms']} ms" if out["latency_ms"] is not None else out["moodle"]),
        ("concurrency", out["concurrency"]),
        ("deploy", f"{out['deploy_s']:.2f} s  ({out['deploy_done']} done, {out['deploy_failed']} failed)"),
        ("sequential", f"{out['sequential_s']:.2f} s" + ("  (extrapolated from "
                       f"{out['sequential_sample']}: {out['sequential_measured_s']:.2f} s)"
                       if out["sequential_extrapolated"] else "")),
        ("engine floor", f"{out['engine_floor_s']:.2f} s  ({out['engine_floor_shape']})"),
        ("moodle saturation", f"{out['moodle_saturation_s']:.2f} s" if "moodle_saturation_s" in out else "-"),
        ("rerun", f"{out['rerun_s']:.2f} s  ({sum(out['rerun_moodle_calls'].values())} calls, "
                  f"{out['rerun_write_calls']} writes, {out['rerun_messages']} messages)"),
        ("deploy / sequential", out["deploy_vs_sequential"]), ("deploy / floor", out["deploy_vs_floor"]),
        ("deploy / saturation", out["deploy_vs_saturation"]), ("rerun / deploy", out["rerun_vs_deploy"]),
        ("moodle calls", f"{out['moodle_calls_total']}  " + json.dumps(out["moodle_calls"])),
        ("peak in flight", out["peak_in_flight"]), ("messages", out["messages"]),
        ("max history events", f"{out['max_history_events']} over {out['workflows']} runs"),
        ("worker peak RSS", f"{out['worker_peak_rss_mb']} MB"),
        ("cpu during deploy", json.dumps(out["deploy_cpu_s"])),
        *([("small alone / beside", f"{out['small_alone_s']:.2f} s / {out['small_beside_s']:.2f} s  "
            f"({out['small']} participants, beside {out['beside']}, x{out['small_beside_vs_alone']})"),
           ("large alone / beside", f"{out['large_alone_s']:.2f} s / {out['large_beside_s']:.2f} s  "
            f"({out['large_growth']:+.1%})")] if "small_beside_s" in out else []),
        ("cpu during floor", json.dumps(out["engine_floor_cpu_s"])),
        ("targets", ", ".join(f"{k}: {'ok' if v else ('n/a' if v is None else 'MISSED')}"
                              for k, v in out["targets_met"].items())),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number (e.g. 3)")
    return int(text)


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not rate > 0 or rate == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate above 0 (tasks a second, e.g. 50)")
    return rate


def _key_value(text: str) -> str:
    if "=" not in text.strip("="):
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. matching.numTaskqueueReadPartitions=1)")
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/deploy_bench.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--participants", type=int, required=True)
    p.add_argument("--latency-ms", type=float, default=50.0, help="simulator latency per call (default 50)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--sequential-sample", type=int, default=200,
                   help="time at most this many participants of the plain loop and extrapolate (default 200)")
    p.add_argument("--moodle-url", default=None, help="a real Moodle instead of the simulator (token: MOODLE_TOKEN)")
    p.add_argument("--template-id", type=int, default=None, help="template course of the real Moodle")
    p.add_argument("--mail-log", default=os.environ.get("MOODLE_LAB_MAIL_LOG") or os.environ.get("MOODLE_TEST_MAIL_LOG")
                   or None,
                   help="JSON-lines mail log of the real Moodle, to count messages (default: MOODLE_LAB_MAIL_LOG)")
    p.add_argument("--keep-courses", action="store_true", help="real Moodle: keep the courses the run made")
    p.add_argument("--temporal-address", default=None, help="use this Temporal server instead of starting one")
    p.add_argument("--temporal-db", choices=sorted(TEMPORAL_DB), default="file",
                   help="storage of the dev server: file (the project's: SQLite in WAL mode, the default), rollback "
                        "(SQLite's defaults: an fsync every commit) or memory (as WorkflowEnvironment.start_local)")
    p.add_argument("--dynamic-config", action="append", default=[], metavar="KEY=VALUE", type=_key_value,
                   help="one more --dynamic-config-value for the dev server (repeatable), for experiments")
    p.add_argument("--fairness-key-rps", type=_rate, default=None, metavar="R",
                   help="the task queue's activity tasks at most R a second for each fairness key (each event), "
                        "as `temporal task-queue config set --fairness-key-rps-limit-default R` does")
    p.add_argument("--floor-batch", type=int, default=None,
                   help=f"participants per child workflow of the floor (default {BATCH_SIZE} as DeployEvent; "
                        "0: one workflow)")
    p.add_argument("--no-saturation", action="store_true", help="simulator: skip the plain-pool measurement")
    p.add_argument("--beside", type=int, default=None, metavar="N",
                   help="fair share: deploy a small event alone and then beside an event of N (and that one "
                        "alone); adds small_alone_s, small_beside_s, large_alone_s, large_beside_s")
    p.add_argument("--small", type=int, default=20, help="participants of the small event of --beside (default 20)")
    p.add_argument("--small-runs", type=_positive, default=3,
                   help="deployments of a small event alone, and beside the large one (default 3; medians compared)")
    p.add_argument("--large-runs", type=_positive, default=1,
                   help="rounds of a large event alone and one beside the small ones (default 1; medians compared)")
    p.add_argument("--beside-delay", type=float, default=3.0,
                   help="seconds between the start of the large event and the small one (default 3)")
    p.add_argument("--beside-calls-every", type=float, default=0.0, metavar="S",
                   help="beside: while the large event runs, an add or a removal on a small event every S seconds, "
                        "each call timed (default 0: none)")
    moodle_load.add_arguments(p)
    term_start.add_arguments(p)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds each phase may take")
    p.add_argument("--profile", default=None, help="directory for py-spy profiles of the workers (raw stacks)")
    p.add_argument("--workdir", default=None, help="keep the logs and the Temporal database here")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.profile:
        args.profile = Path(args.profile).resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.moodle_url and args.template_id is None:
        p.error("--moodle-url needs --template-id")
    if args.participants < 1:
        p.error("--participants must be at least 1")
    if args.beside is not None and (args.beside < 1 or args.small < 1):
        p.error("--beside and --small must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)  # the worker and these settings read the same .env
    # The SDK's native core logs warnings (payload sizes, say) to file descriptor 1: keep stdout for the
    # result alone, and send everything else written to fd 1 to stderr.
    result_out = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)
    signal.signal(signal.SIGTERM, _interrupt)
    keep = args.workdir is not None
    work = Path(args.workdir).resolve() if keep else Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        out = asyncio.run(bench(args, work))
    except BaseException as error:
        stop_all()
        if isinstance(error, KeyboardInterrupt):
            print(f"interrupted; logs in {work}", file=sys.stderr)
            return 130
        if isinstance(error, (ConnectionError, ConfigError)):  # a setting to fix, worded as the CLI words it
            print(f"benchmark failed: {error} (logs in {work})", file=sys.stderr)
            return 2
        print(f"benchmark failed: {error!r}; logs in {work}", file=sys.stderr)
        raise
    finally:
        stop_all()
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    if args.term_start:
        print(json.dumps(out, indent=2) if args.json else term_start.table(out), file=result_out, flush=True)
        return 0 if out["term_ok"] else 1
    print(json.dumps(out, indent=2) if args.json else table(out), file=result_out, flush=True)
    return 0 if out["deploy_ok"] and out["rerun_ok"] else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    exit_process(main())
