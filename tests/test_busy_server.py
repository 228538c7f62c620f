"""A busy server's answers: the API's state check is skipped (the event's life checks when it takes the
operation up) instead of failing the call; any other answer is the caller's to hear."""

from __future__ import annotations

import asyncio
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
from openvle_moodle_sync.lifecycle import OperationState
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.starter.progress import read_life
from openvle_moodle_sync.starter.temporal_errors import explain, is_busy, is_signal_limit
from openvle_moodle_sync.workflows.types import OperationView
from tests.conftest import make_event


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


def test_a_life_full_of_signals_is_told_in_words() -> None:
    """The answer of a server whose run took its most signals (seen with 10,000 adds asked at once, before
    the life counted them): words that say nothing was sent and when to send again, not the gRPC status."""
    full = RPCError("exceeded workflow execution limit for signal events", RPCStatusCode.INVALID_ARGUMENT, b"")
    assert is_signal_limit(full) and not is_busy(full)
    words = explain(full, address="temporal:7233", namespace="default")
    assert "Nothing was sent" in words and "send this one again" in words and "progress --event-id" in words
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
