"""Moodle's own load during a deployment, and the same event by a plain script with batched calls.

Used by deploy_bench.py against the Moodle lab (``--moodle-url``):

- `LabCpu`: the CPU time (user + system) of the lab's PHP server and PostgreSQL, read from ``/proc``: every
  process of each tree (the server, its workers, the database's backends and helpers) plus what their
  reaped children used (``cutime``/``cstime``: PostgreSQL starts a backend for each web-service call and
  reaps it when the call ends). The lab's pid files are in ``$MOODLE_LAB_DIR/run`` (``--moodle-lab-dir``).
- `batched_anchor` (``--batched-anchor``): what a school's own script would cost Moodle for the same event:
  the copy of the template and its rename, one look-up per field, one ``core_user_create_users`` for the
  missing accounts and one ``enrol_manual_enrol_users`` per role, students first. It reports
  ``anchor_s``, ``anchor_moodle_cpu_s`` and ``anchor_moodle_calls`` beside the deploy's figures, and the
  ratios ``moodle_cpu_vs_anchor`` and ``deploy_vs_anchor`` (targets: at most 1.5 and 1).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openvle_moodle_sync.models import Role, course_idnumber
from openvle_moodle_sync.moodle import MoodleClient

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
LAB_TREES = ("php-server", "postgres")
"""The lab's pid files (in ``run/``) whose process trees are Moodle's load."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--moodle-lab-dir", default=os.environ.get("MOODLE_LAB_DIR", "/tmp/moodle-lab"),
                        help="with --moodle-url on this machine's Moodle lab: its state dir, whose pid files "
                             "give Moodle's processes (moodle_cpu_s); default $MOODLE_LAB_DIR or /tmp/moodle-lab")
    parser.add_argument("--batched-anchor", action="store_true",
                        help="with --moodle-url: also deploy the same event by a script of batched calls and "
                             "report its wall time, Moodle CPU and calls beside the deploy's")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of its reaped children)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "; fields[0] is the state
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return int(fields[1]), (utime + stime + cutime + cstime) / TICKS


@dataclass(frozen=True)
class LabCpu:
    """CPU seconds used so far by the process trees under ``roots`` (a difference of two readings is the load
    of what ran between them)."""

    roots: tuple[int, ...]

    @classmethod
    def find(cls, lab_dir: str | Path) -> LabCpu | None:
        """The lab's trees, or None when its pid files are not on this machine (a remote Moodle)."""
        roots = []
        for name in LAB_TREES:
            try:
                roots.append(int((Path(lab_dir) / "run" / f"{name}.pid").read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                return None
        return cls(tuple(roots)) if all(_stat(pid) for pid in roots) else None

    def seconds(self) -> float:
        stats = {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := _stat(int(p.name)))}
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        total, todo = 0.0, [pid for pid in self.roots if pid in stats]
        while todo:
            pid = todo.pop()
            total += stats[pid][1]
            todo += children.get(pid, [])
        return total


async def measured(cpu: LabCpu | None, work: Callable[[], Awaitable[Any]]) -> tuple[Any, float, float | None]:
    """``work()``'s result, its wall seconds and Moodle's CPU seconds meanwhile (None without the lab)."""
    before = cpu.seconds() if cpu else 0.0
    started = time.perf_counter()
    result = await work()
    wall = time.perf_counter() - started
    return result, wall, round(cpu.seconds() - before, 3) if cpu else None


async def batched_script(moodle: MoodleClient, event: Any, *, instructor_role: int, student_role: int) -> int:
    """The event deployed as a plain script with batched calls would; returns the course id."""
    template = (await moodle.get_courses_by_field("id", event.moodle_course_id))[0]
    copy = await moodle.duplicate_course(event.moodle_course_id, event.name, f"anchor-{event.id}",
                                         template["categoryid"], timeout=600)
    await moodle.update_courses([{"id": copy["id"], "shortname": event.slug, "idnumber": course_idnumber(event.id)}])
    people = event.participants
    found = await moodle.get_users_by_field("email", [p.email for p in people])
    ids = {str(u["email"]).lower(): int(u["id"]) for u in found}
    missing = [p for p in people if p.email.lower() not in ids]
    if missing:
        created = await moodle.create_users([
            {"username": p.username, "firstname": p.first_name, "lastname": p.last_name, "email": p.email,
             "auth": "manual", "createpassword": 1} for p in missing])
        ids.update({p.email.lower(): int(c["id"]) for p, c in zip(missing, created, strict=True)})
    for role, role_id in ((Role.STUDENT, student_role), (Role.INSTRUCTOR, instructor_role)):
        enrolments = [{"roleid": role_id, "userid": ids[p.email.lower()], "courseid": int(copy["id"])}
                      for p in people if p.role == role]
        if enrolments:
            await moodle.enrol_users(enrolments)  # type: ignore[arg-type]
    return int(copy["id"])


async def batched_anchor(moodle: MoodleClient, event: Any, cpu: LabCpu | None, *, instructor_role: int,
                         student_role: int, calls: Callable[[], Awaitable[int]]) -> tuple[dict[str, Any], int]:
    """The anchor's figures (``calls`` counts Moodle's calls so far) and the course it made."""
    calls_before = await calls()
    course_id, wall, moodle_cpu = await measured(cpu, lambda: batched_script(
        moodle, event, instructor_role=instructor_role, student_role=student_role))
    figures = {"anchor_s": round(wall, 3), "anchor_moodle_cpu_s": moodle_cpu,
               "anchor_moodle_calls": await calls() - calls_before}
    return figures, course_id


def anchor_ratios(out: dict[str, Any]) -> dict[str, float | None]:
    """The deploy against the anchor: Moodle CPU (target <= 1.5) and wall time (target <= 1)."""
    def ratio(a: str, b: str) -> float | None:
        return round(out[a] / out[b], 2) if out.get(a) is not None and out.get(b) else None
    return {"moodle_cpu_vs_anchor": ratio("moodle_cpu_s", "anchor_moodle_cpu_s"),
            "deploy_vs_anchor": ratio("deploy_s", "anchor_s")}
