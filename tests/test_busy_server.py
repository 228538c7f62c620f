"""A busy server's answers: the API's state check is skipped (the event's life checks when it takes the
operation up) instead of failing the call; a full queue or a life that takes no more signals is `EventBusy`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    Client,
    DescribeWorkflowInput,
    Interceptor,
    OutboundInterceptor,
    WorkflowExecutionDescription,
)
from temporalio.service import RPCError, RPCStatusCode

from fake_moodle import FakeMoodle
from openvle_moodle_sync import starter
from openvle_moodle_sync.contracts import OPERATION_SIGNAL
from openvle_moodle_sync.lifecycle import OperationState
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.starter import api, cli
from openvle_moodle_sync.starter.progress import read_life
from openvle_moodle_sync.starter.temporal_errors import is_busy, is_signal_limit
from openvle_moodle_sync.workflows import ids
from openvle_moodle_sync.workflows.types import OperationView
from tests.conftest import eventually, make_event, make_person


@pytest.mark.parametrize(("status", "message", "busy"), [
    # The SDK's own rpc_timeout: seen when 10,000 calls were made at once (bench/life_bench.py scale).
    (RPCStatusCode.CANCELLED, "Timeout expired", True),
    (RPCStatusCode.DEADLINE_EXCEEDED, "context deadline exceeded", True),
    (RPCStatusCode.RESOURCE_EXHAUSTED, "namespace rate limit exceeded", True),
    (RPCStatusCode.CANCELLED, "operation was canceled", False),
    (RPCStatusCode.UNAVAILABLE, "connection refused", False),
    (RPCStatusCode.PERMISSION_DENIED, "Request unauthorized", False),
])
def test_a_busy_server_is_told_from_one_that_refuses_or_is_gone(status: RPCStatusCode, message: str,
                                                                busy: bool) -> None:
    assert is_busy(RPCError(message, status, b"")) is busy


def test_a_life_full_of_signals_is_told_from_other_refusals() -> None:
    """The answer of a server whose run took its most signals (seen with 10,000 adds asked at once, before
    the life counted them) is neither a busy server nor a missing search attribute."""
    full = RPCError("exceeded workflow execution limit for signal events", RPCStatusCode.INVALID_ARGUMENT, b"")
    assert is_signal_limit(full) and not is_busy(full)
    assert not is_signal_limit(RPCError("search attribute OpenVLEEventId is not defined",
                                        RPCStatusCode.INVALID_ARGUMENT, b""))


class _DescribeTimesOut(Interceptor):
    """A server too busy to describe a workflow within the SDK's rpc_timeout."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _TimingOut(next)


class _TimingOut(OutboundInterceptor):
    async def describe_workflow(self, input: DescribeWorkflowInput) -> WorkflowExecutionDescription:
        raise RPCError("Timeout expired", RPCStatusCode.CANCELLED, b"")


async def test_a_busy_server_passes_the_check_to_the_life(client: Client, fake: FakeMoodle, settings: Settings,
                                                          worker: Any) -> None:
    """The call still returns, and the life refuses the operation when it takes it up, writing nothing."""
    busy = Client(**{**client.config(), "interceptors": [_DescribeTimesOut()]})
    never = make_event(fake, participants=3)
    handle = await starter.add_participant(busy, never, never["participants"][0], settings=settings)

    async def refused() -> OperationView:
        while True:
            record = await read_life(client, never["id"])
            found = record.view.find(handle.id) if record and record.view else None
            if found and found.state != OperationState.QUEUED:
                return found
            await asyncio.sleep(0.1)

    ended = await asyncio.wait_for(refused(), timeout=30)
    assert ended.state == OperationState.REFUSED and fake.calls == []


async def operation_signals(client: Client, event_id: str) -> int:
    history = await client.get_workflow_handle(ids.life_id(event_id)).fetch_history()
    return sum(1 for ev in history.events if ev.workflow_execution_signaled_event_attributes.signal_name
               == OPERATION_SIGNAL)


async def test_adds_are_refused_at_the_call_while_the_events_queue_is_full(
        client: Client, fake: FakeMoodle, settings: Settings, worker: Any, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A backend that sends thousands of adds at once is slowed at the door (`EventBusy`, the CLI exits 1),
    before the event's life reaches Temporal's 10,000 signals a run; the refused call sends nothing."""
    monkeypatch.setattr(api, "MAX_QUEUED_CHANGES", 2)
    event = make_event(fake, participants=3)
    await (await starter.deploy_event(client, event, settings=settings)).result()
    fake.faults.latency_ms = 1500  # the first add runs a while: the next two wait in the life's queue
    handles = [await starter.add_participant(client, event, make_person(event, name), settings=settings)
               for name in ("a", "b", "c")]
    await eventually(lambda: read_life(client, event["id"]),
                     lambda r: r is not None and r.view is not None and r.view.queued_total == 2, timeout=10)
    sent = await operation_signals(client, event["id"])
    with pytest.raises(starter.EventBusy, match="2 operations already wait") as refused:
        await starter.add_participant(client, event, make_person(event, "d"), settings=settings)
    assert refused.value.queued == 2 and "progress --event-id" in refused.value.next_step
    (tmp_path / "event.json").write_text(json.dumps(event))
    (tmp_path / "person.json").write_text(json.dumps(make_person(event, "e")))
    assert await cli.run(["add", "--event", str(tmp_path / "event.json"), "--participant",
                          str(tmp_path / "person.json")], settings=settings, client=client) == 1
    assert "2 operations already wait" in capsys.readouterr().err
    assert await operation_signals(client, event["id"]) == sent  # neither refused add reached the life
    fake.faults.latency_ms = 0
    for handle in handles:
        await handle.result()
    assert not {f"{event['id']}-d", f"{event['id']}-e"} & {u.username for u in fake.site.users.values()}


async def test_a_life_full_of_signals_refuses_the_call_as_busy(client: Client, fake: FakeMoodle, settings: Settings,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporal's own refusal (the run took its most signals) is the same `EventBusy`, not a gRPC error: words
    that say nothing was sent and when to send again."""
    async def full(*_: Any) -> None:
        raise RPCError("exceeded workflow execution limit for signal events", RPCStatusCode.INVALID_ARGUMENT, b"")

    async def deployed(*_: Any, **__: Any) -> None:
        return None

    monkeypatch.setattr(api, "_check", deployed)
    monkeypatch.setattr(api, "_send", full)
    event = make_event(fake, participants=3)
    with pytest.raises(starter.EventBusy, match="takes no more now; nothing was sent") as refused:
        await starter.add_participant(client, event, make_person(event, "x"), settings=settings)
    assert "send it again" in refused.value.next_step and "progress --event-id" in refused.value.next_step
