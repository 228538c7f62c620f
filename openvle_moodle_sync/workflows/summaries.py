"""What each per-participant activity shows in the Temporal UI's timeline and event history.

Without a summary the UI lists rows of `enrol_user` / `ensure_user`; with one it names the participant
and the step ("enrol p-7 bob as student"). Summaries are payloads of the workflow's commands, so with
PAYLOAD_ENCRYPTION_KEY set they are encrypted like the inputs. They change no command, so histories
recorded without them replay unchanged."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from openvle_moodle_sync.models import Participant


def who(p: Participant) -> str:
    return f"{p.id} {p.username}"


def create_account(p: Participant) -> str:
    return f"create account {who(p)}"


def find_or_create_account(p: Participant) -> str:
    return f"find or create account {who(p)}"


def find_account(p: Participant) -> str:
    return f"find account {who(p)}"


def enrol(p: Participant) -> str:
    return f"enrol {who(p)} as {p.role}"


def withdraw(participant: str, action: str) -> str:
    """``participant``: "<id> <username>" where known, else the participant id."""
    return f"take away {participant} ({action})"
