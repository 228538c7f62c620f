"""Temporal's errors in words: what went wrong talking to the server, and the fix.

The SDK reports a missing namespace as an `RPCError` with status NOT_FOUND (the same status as "no such
workflow"), and a server that went away mid-call as UNAVAILABLE. Operators need none of that: they need the
setting to change. A connection refused at the start is worded in one place, `temporal_client.connect`.
"""

from __future__ import annotations

from temporalio.api.errordetails.v1 import NamespaceNotFoundFailure
from temporalio.service import RPCError, RPCStatusCode

from openvle_moodle_sync.names import CLI, WORKER
from openvle_moodle_sync.temporal_client import namespace_missing

#: The SDK's warning when TEMPORAL_ADDRESS carries a scheme (it strips it today, refuses it later).
SCHEME_WARNING = "Target host as URL with scheme"

START_WORKER = WORKER
"""How an operator starts a worker (with its settings in the environment or .env)."""


def is_namespace_not_found(error: BaseException) -> bool:
    """True for "namespace X is not found", which must never read as "this workflow does not exist"."""
    if not isinstance(error, RPCError) or error.status != RPCStatusCode.NOT_FOUND:
        return False
    names = {detail.type_url.rsplit("/", 1)[-1] for detail in error.grpc_status.details}
    return NamespaceNotFoundFailure.DESCRIPTOR.full_name in names or "namespace" in error.message.lower()


def is_workflow_not_found(error: BaseException) -> bool:
    """True only when the namespace exists and has no such workflow."""
    return (isinstance(error, RPCError) and error.status == RPCStatusCode.NOT_FOUND
            and not is_namespace_not_found(error))


def is_unreachable(error: RPCError) -> bool:
    """True when the server stopped answering (gone, too slow, or the call was cut)."""
    return error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)


def is_busy(error: RPCError) -> bool:
    """True when a busy server did not take the call in time: the same call may go through a moment later.
    The SDK's own ``rpc_timeout`` ends a call as CANCELLED "Timeout expired", the server's deadline as
    DEADLINE_EXCEEDED; RESOURCE_EXHAUSTED is a server shedding load."""
    if error.status == RPCStatusCode.CANCELLED:
        return "timeout" in error.message.lower()
    return error.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED)


def is_signal_limit(error: RPCError) -> bool:
    """True when Temporal refused a signal because the run took its most (10,000 by default): nothing was
    sent, and the event's life takes signals again once it has continued as new (the API raises `EventBusy`)."""
    return error.status == RPCStatusCode.INVALID_ARGUMENT and "limit for signal" in error.message.lower()


def scheme_fix(address: str) -> str:
    """What to write instead of an address with a scheme (``http://host:port``)."""
    bare = address.split("://", 1)[-1].rstrip("/")
    return (f"TEMPORAL_ADDRESS {address!r} has a scheme; Temporal's address is host:port only: "
            f"TEMPORAL_ADDRESS={bare} (set TEMPORAL_TLS=true for TLS instead of https://).")


def explain(error: RPCError, *, address: str, namespace: str) -> str:
    """One paragraph for an operator: what Temporal answered in the middle of a command, and what to change.
    (A connection that fails at the start is worded by `temporal_client.connect`, with its settings.)"""
    where = f"Temporal at {address} (namespace {namespace!r})"
    if is_namespace_not_found(error):
        return namespace_missing(address, namespace)
    status = error.status
    if is_unreachable(error):
        return (f"{where} stopped answering ({error.message or status.name}). Check that the server is "
                "running and reachable at TEMPORAL_ADDRESS, then run the command again. A workflow "
                f"already started keeps running in Temporal; follow it with: {CLI} progress "
                "--event-id ID")
    if status in (RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED):
        return (f"{where} refused the request: {error.message}. Check the credentials of the connection "
                "(API key or client certificate, TEMPORAL_* settings) and the namespace's permissions.")
    if status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in error.message.lower():
        return (f"{where} does not know this service's search attribute yet ({error.message}). Start the "
                f"worker once against this namespace ({START_WORKER} registers it), then run the command "
                "again.")
    return f"{where} answered with an error: {error.message} ({status.name})."
