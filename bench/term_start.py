"""Term start: many events deployed at once, on one worker (`deploy_bench.py --term-start E`).

    python bench/deploy_bench.py --term-start 100 --participants 30 [--term-changes 200] [--json]

E events of --participants people are started at once, as an operator starts a term. A fifth of each
event's places are people it shares with a neighbouring event (each shared person is in two events, and
nobody has an account yet: both deployments try to create it). Half of the other people already have a
Moodle account. While the deployments run, --term-changes participant changes (adds of new people and
removals of listed ones, alternating) are sent over --term-changes-over seconds, each its own call.

Reported: the wall time (the first start call until the last run, deployment or change, is done); when the
first, the median and the last deployment was done and their mean, as shares of the wall; how well the
finish order follows the start order (Spearman's rank correlation); the p50 / p90 / max of the start and
change calls as the caller sees them; the worker's and the dev server's peak RSS. Then every event is
checked in the simulator: one course with the event's idnumber, exactly the final list enrolled (the
deployment's list, less the removed, plus the added) each with their role, one account per person, and
no failed run.

--admit K restarts the task queue's DeployAdmission with a limit of K for the run (it needs DeployAdmission
registered in the worker and the event's life deploying through `workflows.admission.admitted`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from temporalio.client import Client
from temporalio.common import Priority, WorkflowIDConflictPolicy

from openvle_moodle_sync import starter
from openvle_moodle_sync.models import Event, Participant, Role, parse_event, parse_participant
from openvle_moodle_sync.moodle import MoodleClient
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.workflows.admission import AdmissionState, DeployAdmission, admission_id

SHARED_SHARE = 0.2
"""Share of each event's places held by people it shares with a neighbouring event."""
EXISTING_PASSWORD = "Bench-pass-1!"


class Sampled(Protocol):
    """A process whose peak resident set size the benchmark measures (deploy_bench.Proc)."""

    def hwm_bytes(self) -> int: ...


class Simulator(Protocol):
    """The simulator's state endpoint (deploy_bench.MoodleSide)."""

    async def state(self) -> dict[str, Any]: ...

    def client(self, settings: Settings) -> MoodleClient: ...


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--term-start", type=int, default=None, metavar="E",
                   help="term start: E events of --participants people started at once, a fifth of the people "
                        "shared between two events, participant changes sent while they run (bench/term_start.py)")
    p.add_argument("--term-changes", type=int, default=200, metavar="C",
                   help="term start: participant changes sent during the run (default 200, adds and removes)")
    p.add_argument("--admit", type=int, default=None, metavar="K",
                   help="term start: the admission line takes K deployments at a time for this run (DeployAdmission "
                        "restarted with that limit; K >= E: no line, round-robin only)")
    p.add_argument("--term-changes-over", type=float, default=15.0, metavar="S",
                   help="term start: seconds over which the changes are sent (default 15)")



# --- the term's people ------------------------------------------------------------------------------------

@dataclass
class Term:
    events: list[Event]
    existing: list[Participant]
    """People with a Moodle account before the term (created with a password: no mail)."""
    adds: list[tuple[Event, Participant]] = field(default_factory=list)
    removes: list[tuple[Event, Participant]] = field(default_factory=list)

    def changes(self) -> list[tuple[str, Event, Participant]]:
        """Adds and removes, alternating."""
        out: list[tuple[str, Event, Participant]] = []
        for i in range(max(len(self.adds), len(self.removes))):
            out += [("add", *self.adds[i])] if i < len(self.adds) else []
            out += [("remove", *self.removes[i])] if i < len(self.removes) else []
        return out


def _person(prefix: str, key: str, role: Role = Role.STUDENT) -> dict[str, Any]:
    return {"id": f"p-{key}", "username": f"{prefix}-{key}", "email": f"{prefix}-{key}@term.example.com",
            "first_name": "Term", "last_name": key.capitalize(), "role": str(role)}


def make_term(prefix: str, events: int, size: int, changes: int, template_id: int) -> Term:
    """``events`` events of ``size`` people on a ring: each shares a tenth of its places with the event
    before it and a tenth with the one after (students, no account yet); every tenth place an instructor."""
    half = max(1, round(size * SHARED_SHARE / 2)) if events > 1 else 0
    raw: list[list[dict[str, Any]]] = []
    for e in range(events):
        before = [_person(prefix, f"s{(e - 1) % events}-{j}") for j in range(half)]  # shared with e - 1
        after = [_person(prefix, f"s{e}-{j}") for j in range(half)]  # shared with e + 1
        own = [_person(prefix, f"e{e}-{j}", Role.INSTRUCTOR if j % 10 == 0 else Role.STUDENT)
               for j in range(size - len(before) - len(after))]
        raw.append(own + before + after)
    parsed = [parse_event({"id": f"{prefix}-{e}", "name": f"Term event {e}", "slug": f"term-{prefix}-{e}",
                           "moodle_course_id": template_id, "participants": people})
              for e, people in enumerate(raw)]
    existing = [p for ev in parsed for p in ev.participants
                if p.id.startswith("p-e") and int(p.id.rsplit("-", 1)[1]) % 2 == 0]
    term = Term(parsed, existing)
    for c in range(changes):
        ev = parsed[c // 2 % events]
        if c % 2 == 0:
            term.adds.append((ev, parse_participant(_person(prefix, f"a{c}"))))
        else:  # a student of its own (not shared), not removed yet
            taken = {(e.id, q.id) for e, q in term.removes}
            students = [p for p in ev.participants if p.id.startswith("p-e") and p.role == Role.STUDENT
                        and (ev.id, p.id) not in taken]
            term.removes.append((ev, students[-1]))
    return term


async def precreate(moodle: MoodleClient, people: Sequence[Participant]) -> None:
    unique = {p.username: p for p in people}
    users: list[Any] = [{"username": p.username, "firstname": p.first_name, "lastname": p.last_name,
                         "email": p.email, "auth": "manual", "password": EXISTING_PASSWORD} for p in unique.values()]
    for start in range(0, len(users), 100):
        await moodle.create_users(users[start:start + 100])


# --- the run ----------------------------------------------------------------------------------------------

def pct(values: Sequence[float], digits: int = 3) -> dict[str, float] | None:
    """p50, p90 and the largest of ``values`` (None for none), to ``digits`` decimals."""
    if not values:
        return None
    ordered = sorted(values)
    at = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], digits)  # noqa: E731
    return {"p50": at(0.5), "p90": at(0.9), "max": round(ordered[-1], digits), "n": len(ordered)}


async def _timed_call(make: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """(seconds, the call's answer), or (seconds, the exception) for a call that failed."""
    started = time.perf_counter()
    try:
        result = await make()
    except Exception as error:  # a refused or timed-out call is a finding of the run, not its end
        result = error
    return time.perf_counter() - started, result


@dataclass
class Outcome:
    start_call_s: list[float] = field(default_factory=list)
    change_call_s: list[float] = field(default_factory=list)
    done_at: dict[str, float] = field(default_factory=dict)
    """Event id -> seconds from the first start call to its deployment's result."""
    failures: list[str] = field(default_factory=list)


async def run_term(client: Client, settings: Settings, term: Term, args: argparse.Namespace,
                   say: Callable[..., None]) -> tuple[float, Outcome]:
    out = Outcome()
    t0 = time.perf_counter()

    async def run(label: str, make: Callable[[], Awaitable[Any]], calls: list[float]) -> Any:
        """Make the call (timed), then wait for its operation's result; None when either failed."""
        call_s, handle = await _timed_call(make)
        calls.append(call_s)
        if isinstance(handle, Exception):
            out.failures.append(f"{label}: the call failed after {call_s:.1f} s: {handle!r}")
            return None
        try:
            return await handle.result()
        except Exception as error:  # a failed run is a finding, not the benchmark's end
            out.failures.append(f"{label}: {error}")
            return None

    async def deploy(ev: Event) -> None:
        result = await run(f"deploy {ev.id}", lambda: starter.deploy_event(client, ev, settings=settings),
                           out.start_call_s)
        if result is not None and (result.failed or result.done != len(ev.participants)):
            out.failures.append(f"deploy {ev.id}: {result.done} done, {result.failed} failed")
        out.done_at[ev.id] = time.perf_counter() - t0

    async def change(kind: str, ev: Event, p: Participant, at: float) -> None:
        await asyncio.sleep(max(0.0, at - (time.perf_counter() - t0)))
        send = starter.add_participant if kind == "add" else starter.remove_participant
        result = await run(f"{kind} {p.id} of {ev.id}", lambda: send(client, ev, p, settings=settings),
                           out.change_call_s)
        if result is not None and result.skipped_reason:
            out.failures.append(f"{kind} {p.id} of {ev.id}: skipped, {result.skipped_reason}")

    changes = term.changes()
    gap = args.term_changes_over / max(1, len(changes))
    say(f"term start: {len(term.events)} events of {args.participants}, {len(changes)} changes over "
        f"{args.term_changes_over:g} s ...")
    t0 = time.perf_counter()
    await asyncio.gather(*(change(kind, ev, p, 1.0 + i * gap) for i, (kind, ev, p) in enumerate(changes)),
                         *(deploy(ev) for ev in term.events))
    return time.perf_counter() - t0, out


async def check(side: Simulator, settings: Settings, term: Term, out: Outcome) -> dict[str, Any]:
    """Every event right in the simulator: its course, its enrolments and roles, one account per person."""
    state = await side.state()
    users = {u["id"]: u for u in state["users"]}
    accounts = Counter(u["username"] for u in state["users"])
    courses: dict[str, list[int]] = {}
    for c in state["courses"]:
        courses.setdefault(c["idnumber"] or "", []).append(c["id"])
    enrolled: dict[int, dict[str, list[int]]] = {}
    for e in state["enrolments"]:
        if not e["suspended"]:
            enrolled.setdefault(e["courseid"], {})[users[e["userid"]]["username"]] = e["roles"]
    role = {Role.STUDENT: settings.moodle_student_role_id, Role.INSTRUCTOR: settings.moodle_instructor_role_id}
    added = {ev.id: [p for e, p in term.adds if e.id == ev.id] for ev in term.events}
    removed = {ev.id: {p.id for e, p in term.removes if e.id == ev.id} for ev in term.events}
    wrong: list[str] = []
    people: dict[str, Participant] = {}
    for ev in term.events:
        found = courses.get(ev.course_idnumber, [])
        if len(found) != 1:
            wrong.append(f"{ev.id}: {len(found)} courses")
            continue
        expected = {p.username: [role[p.role]] for p in [*ev.participants, *added[ev.id]] if p.id not in removed[ev.id]}
        got = enrolled.get(found[0], {})
        if got != expected:
            missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
            roles = sorted(u for u in set(got) & set(expected) if got[u] != expected[u])
            wrong.append(f"{ev.id}: missing {missing[:3]}, extra {extra[:3]}, wrong role {roles[:3]}")
        people.update({p.username: p for p in [*ev.participants, *added[ev.id]]})
    twice = sorted(u for u in people if accounts[u] != 1)
    return {"events_right": len(term.events) - len(wrong), "events_wrong": wrong[:5],
            "people": len(people), "people_without_one_account": twice[:5], "failed_runs": out.failures[:5],
            "failed_runs_count": len(out.failures),
            "term_ok": not wrong and not twice and not out.failures}


def spearman(start_order: Sequence[str], done_at: dict[str, float]) -> float | None:
    finished = sorted(done_at, key=lambda e: done_at[e])
    if len(finished) < 3:
        return None
    rank = {e: i for i, e in enumerate(finished)}
    return round(statistics.correlation(list(range(len(start_order))), [rank[e] for e in start_order]), 3)


async def measure(client: Client, side: Simulator, settings: Settings, args: argparse.Namespace,
                  template_id: int, run_id: str, say: Callable[..., None]) -> dict[str, Any]:
    term = make_term(f"t{run_id}", args.term_start, args.participants, args.term_changes, template_id)
    async with side.client(settings) as moodle:
        say(f"term start: pre-creating {len(term.existing)} existing accounts ...")
        await precreate(moodle, term.existing)
    if args.admit:
        queue = settings.temporal_task_queue
        await client.start_workflow(DeployAdmission.run, AdmissionState(limit=args.admit), id=admission_id(queue),
                                    task_queue=queue, priority=Priority(priority_key=1),
                                    id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING)
    wall, out = await run_term(client, settings, term, args, say)
    done = sorted(out.done_at.values()) or [wall]
    result: dict[str, Any] = {
        "term_events": len(term.events), "term_participants": args.participants,
        "term_changes": len(term.changes()), "admit": args.admit,
        "wall_s": round(wall, 2), "last_deployment_s": round(done[-1], 2),
        "first_share": round(done[0] / wall, 3), "median_share": round(statistics.median(done) / wall, 3),
        "mean_share": round(statistics.fmean(done) / wall, 3), "last_share": round(done[-1] / wall, 3),
        "finish_vs_start_order": spearman([ev.id for ev in term.events], out.done_at),
        "start_call_s": pct(out.start_call_s), "change_call_s": pct(out.change_call_s),
        "done_s_by_decile": [round(done[min(len(done) - 1, len(done) * q // 10)], 1) for q in range(11)],
    }
    say("term start: checking every event in the simulator ...")
    result.update(await check(side, settings, term, out))
    return result


def table(out: dict[str, Any]) -> str:
    calls = lambda d: "-" if d is None else f"p50 {d['p50']:.3f} s, p90 {d['p90']:.3f} s, max {d['max']:.3f} s"  # noqa: E731
    rows = [
        ("term start", f"{out['term_events']} events of {out['term_participants']}, {out['term_changes']} changes"),
        ("temporal", out["temporal"]), ("latency per call", f"{out['latency_ms']} ms"),
        ("wall", f"{out['wall_s']:.1f} s (last deployment {out['last_deployment_s']:.1f} s)"),
        ("done (share of wall)", f"first {out['first_share']}, median {out['median_share']}, "
                                 f"mean {out['mean_share']}, last {out['last_share']}"),
        ("finish vs start order", out["finish_vs_start_order"]),
        ("start calls", calls(out["start_call_s"])), ("change calls", calls(out["change_call_s"])),
        ("worker peak RSS", f"{out['worker_peak_rss_mb']} MB"),
        ("server peak RSS", f"{out.get('temporal_server_peak_rss_mb', '-')} MB"),
        ("checks", f"{out['events_right']} of {out['term_events']} events right, {out['people']} people, "
                   f"accounts twice or missing: {out['people_without_one_account'] or 'none'}, "
                   f"failed runs: {out['failed_runs'] or 'none'}" + (f"; wrong: {out['events_wrong']}"
                                                                     if out["events_wrong"] else "")),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)

