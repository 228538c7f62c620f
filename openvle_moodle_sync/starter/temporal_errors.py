"""Temporal's errors in words: what went wrong talking to the server, and the fix.

The SDK reports a refused connection as a `RuntimeError` carrying a Rust transport error, a missing
namespace as an `RPCError` with status NOT_FOUND (the same status as "no such workflow"), and a server
that went away mid-call as UNAVAILABLE. Operators need none of that: they need the setting to change.
"""

from __future__ import annotations

import re

from temporalio.api.errordetails.v1 import NamespaceNotFoundFailure
from temporalio.service import RPCError, RPCStatusCode

#: The SDK's warning when TEMPORAL_ADDRESS carries a scheme (it strips it today, refuses it later).
SCHEME_WARNING = "Target host as URL with scheme"

START_WORKER = "python worker.py"


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


def scheme_fix(address: str) -> str:
    """What to write instead of an address with a scheme (``http://host:port``)."""
    bare = address.split("://", 1)[-1].rstrip("/")
    return (f"TEMPORAL_ADDRESS {address!r} has a scheme; Temporal's address is host:port only: "
            f"TEMPORAL_ADDRESS={bare} (set TEMPORAL_TLS=true for TLS instead of https://).")


def explain(error: BaseException, *, address: str, namespace: str) -> str:
    """One paragraph for an operator: what failed talking to Temporal, and what to change."""
    where = f"Temporal at {address} (namespace {namespace!r})"
    if is_namespace_not_found(error):
        return (f"Temporal at {address} has no namespace {namespace!r}. Set TEMPORAL_NAMESPACE to the namespace "
                "the worker uses (list them with: temporal operator namespace list); the dev server has "
                "'default'.")
    if isinstance(error, RPCError):
        status = error.status
        if status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            return (f"{where} stopped answering ({error.message or status.name}). Check that the server is "
                    "running and reachable at TEMPORAL_ADDRESS, then run the command again. A workflow "
                    "already started keeps running in Temporal; follow it with: python -m starter progress "
                    "--event-id ID")
        if status in (RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED):
            return (f"{where} refused the request: {error.message}. Check the credentials of the connection "
                    "(API key or client certificate, TEMPORAL_* settings) and the namespace's permissions.")
        if status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in error.message.lower():
            return (f"{where} does not know this service's search attribute yet ({error.message}). Start the "
                    f"worker once against this namespace ({START_WORKER} registers it), then run the command "
                    "again.")
        return f"{where} answered with an error: {error.message} ({status.name})."
    text = str(error)
    lowered = text.lower()
    if "invalidcontenttype" in lowered or "invalid peer certificate" in lowered or "certificate" in lowered \
            or "tls" in lowered or "handshake" in lowered:
        return (f"Could not connect to {where}: the TLS handshake failed ({_short(text)}). If the server "
                "speaks plain gRPC (the dev server does), set TEMPORAL_TLS=false; if it needs TLS, set "
                "TEMPORAL_TLS=true and check its certificate.")
    if "connection refused" in lowered or "dns error" in lowered or "tcp connect" in lowered \
            or "failed to lookup" in lowered:
        return (f"Could not connect to {where}: {_short(text)}. Check TEMPORAL_ADDRESS (host:port) and that "
                "the server is running (for the dev server: temporal server start-dev).")
    if "broken pipe" in lowered or "connection reset" in lowered or "h2 protocol" in lowered \
            or "frame" in lowered:
        return (f"Could not talk to {where}: the connection was dropped ({_short(text)}). If the server needs "
                "TLS, set TEMPORAL_TLS=true; otherwise check TEMPORAL_ADDRESS and that the server is running.")
    return (f"Could not talk to {where}: {_short(text)}. Check TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and "
            "TEMPORAL_TLS, and that the server is running.")


def _short(text: str) -> str:
    """The readable part of a Rust transport error, without the Debug formatting around it."""
    certificate = re.search(r"InvalidCertificate\((\w+)\)", text)
    if certificate:
        return f"the server's certificate was refused: {certificate.group(1)}"
    for marker in ('message: "', 'error: "', "ConnectError(\""):
        if marker in text:
            return text.split(marker, 1)[1].split('"', 1)[0]
    if "InvalidContentType" in text:
        return "the server did not answer with TLS"
    return text.removeprefix("Failed client connect: ").strip()
