"""How `openvle-moodle-sync plan` shows an `EventPlan`: one JSON object, or a short table."""

from __future__ import annotations

import dataclasses
import json

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table

from openvle_moodle_sync.activities.plan_types import EventPlan


def plan_json(plan: EventPlan) -> str:
    return json.dumps(dataclasses.asdict(plan), ensure_ascii=False, indent=2)


def _ids(ids: list[str], limit: int = 8) -> str:
    shown = ", ".join(escape(i) for i in ids[:limit])
    return shown + (f" … (+{len(ids) - limit})" if len(ids) > limit else "")


def plan_table(plan: EventPlan) -> RenderableType:
    """What a deploy would do, one row per kind of change, with the participants concerned."""
    if plan.skipped_reason:
        return f"A deploy of event {escape(plan.event_id)} would do nothing: {escape(plan.skipped_reason)}"
    course = (f"reuse Moodle course {plan.course.id}" if plan.course.id is not None
              else "create it from the template")
    table = Table(title=f"Plan of event {escape(plan.event_id)}: course: {course}", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("participants", overflow="fold")
    action = plan.remove[0].action if plan.remove else ""
    rows = [
        ("create account", plan.create_accounts),
        ("existing account", [f"{m.participant_id} ({m.how})" for m in plan.matched_accounts]),
        ("enrol", [e.participant_id for e in plan.enrol]),
        ("change role", [f"{c.participant_id} → {c.role}" for c in plan.change_role]),
        (f"take away ({action})" if action else "take away", [r.participant_id for r in plan.remove]),
        ("drift (hand edits)", [f"{d.participant_id}: {d.kind}" for d in plan.drift]),
    ]
    for what, ids in rows:
        table.add_row(what, str(len(ids)), _ids(ids))
    table.add_row("already right", str(plan.unchanged), "")
    mails = ", ".join(f"{count} {kind}" for kind, count in plan.expected_mails.items())
    lines: list[RenderableType] = [table, f"Expected mails: {mails or 'none'}"]
    if plan.blocked_by_brake:
        lines.append(f"[bold red]Mass-removal brake:[/] a deploy would take nobody away and fail MassRemovalBlocked "
                     f"({len(plan.remove)} people); add --allow-mass-removal to deploy if they really leave.")
    if plan.drift:
        lines.append("Drift: `deploy` or `rerun` puts these back as the event lists them.")
    lines.append("This plan wrote nothing to Moodle and sent no mail.")
    return Group(*lines)
