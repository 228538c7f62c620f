"""Connecting to Temporal the way the worker, the starter and the backend all need: the connection the
settings name (temporal_config: the SDK's environment configuration, as the `temporal` CLI), the same
data converter (pydantic models, optionally encrypted payloads) and the event-id search attribute."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import sys
from collections.abc import Coroutine, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from temporalio.api.enums.v1 import IndexedValueType, TaskQueueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.service import RPCError, RPCStatusCode

from openvle_moodle_sync.codec import payload_codec
from openvle_moodle_sync.settings import Settings
from openvle_moodle_sync.temporal_config import TemporalConnection, resolve
from openvle_moodle_sync.workflows.ids import EVENT_ID_ATTRIBUTE

log = logging.getLogger("temporal")


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic-aware payloads, large ones compressed; encrypted too when PAYLOAD_ENCRYPTION_KEY is set."""
    key = settings.payload_encryption_key
    codec = payload_codec(key.get_secret_value() if key else None)
    if key is None:
        return dataclasses.replace(pydantic_data_converter, payload_codec=codec)
    # Failure messages and stack traces name participants too: encrypt them with the payloads.
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec,
                               failure_converter_class=DefaultFailureConverterWithEncodedAttributes)


NAMESPACE_CHECK_TIMEOUT = timedelta(seconds=10)


class NamespaceNotFoundError(ConnectionError):
    """The server answers but has no namespace of that name (TEMPORAL_NAMESPACE)."""


async def connect(settings: Settings) -> Client:
    """A client for the Temporal the settings name (temporal_config.resolve: envconfig, as the `temporal`
    CLI) with this service's data converter. `ConnectionError` in words when it cannot connect, and
    `NamespaceNotFoundError` (one) when the server has no such namespace: said here, not by the first call."""
    connection = resolve(settings)
    try:
        client = await Client.connect(**connection.connect_config, data_converter=data_converter(settings))
    except (RuntimeError, RPCError) as error:
        raise ConnectionError(connection_failure(connection, error)) from None
    await _check_namespace(client, connection)
    log.info("connected to Temporal at %s", connection.describe())
    return client


async def _check_namespace(client: Client, connection: TemporalConnection) -> None:
    """`NamespaceNotFoundError` when the namespace does not exist. Any other answer (a key that may not
    describe namespaces, a slow server) is left to the calls that follow, which word their own errors."""
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=client.namespace),
                                                         timeout=NAMESPACE_CHECK_TIMEOUT)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise NamespaceNotFoundError(namespace_missing(connection.address, connection.namespace)) from None


def namespace_missing(address: str, namespace: str) -> str:
    """What to do when Temporal at ``address`` has no namespace ``namespace``."""
    return (f"Temporal at {address} has no namespace {namespace!r}. Set TEMPORAL_NAMESPACE to the namespace "
            "the worker uses (list them with: temporal operator namespace list); the dev server has 'default'.")


def connection_failure(connection: TemporalConnection, error: Exception) -> str:
    """Why the connection failed and what to check, without the API key."""
    reason = str(error.message if isinstance(error, RPCError) else error).strip().rstrip(".")
    key = connection.connect_config.get("api_key")  # from TEMPORAL_API_KEY or the profile
    if key:
        reason = reason.replace(key, "***")
    return (f"Failed to connect to Temporal at {connection.address} (namespace {connection.namespace!r}, "
            f"{'TLS' if connection.tls else 'plaintext'}, {connection.credentials()}): {_plain(reason)}. "
            f"{_fix(connection, reason.lower())}.")


def _plain(reason: str) -> str:
    """The innermost message of the SDK's connection error (a Rust debug dump), e.g. "Connection refused"."""
    if certificate := re.search(r"InvalidCertificate\((\w+)\)", reason):
        return f"the server's certificate is not valid ({certificate[1]})"
    if "InvalidContentType" in reason:
        return "the server answered the TLS handshake in plain text (it does not use TLS)"
    quoted = re.findall(r'(?:message|error): "([^"]+)"', reason)
    if not quoted:
        return reason
    inner = re.sub(r": https?://\S+$", "", quoted[-1])
    return f"cannot resolve the host ({inner})" if "dns error" in reason else inner


def _fix(connection: TemporalConnection, reason: str) -> str:
    if any(word in reason for word in _AUTH_WORDS):
        return ("The server refused the credentials: check TEMPORAL_API_KEY (or the client certificate) and that "
                "it grants access to the namespace (TEMPORAL_NAMESPACE)")
    if connection.tls and "invalidcontenttype" in reason:
        return ('The server speaks plain gRPC (as the dev server does): set TEMPORAL_TLS="False", or point '
                "TEMPORAL_ADDRESS at the server's TLS port")
    if connection.tls and any(word in reason for word in _CERTIFICATE_WORDS):
        return ("The server's certificate is not trusted: if it is signed by a private CA, set "
                "TEMPORAL_TLS_SERVER_CA_CERT_PATH to that CA; if it names another host than TEMPORAL_ADDRESS, set "
                "TEMPORAL_TLS_SERVER_NAME to that name")
    if not connection.tls:
        return ("Check TEMPORAL_ADDRESS and that the server is running. If the server uses TLS, set "
                'TEMPORAL_TLS="True" (with TEMPORAL_TLS_* for a private CA or a client certificate) or '
                "TEMPORAL_API_KEY, or choose a profile with TEMPORAL_PROFILE")
    if connection.client_cert is None and not connection.api_key:
        # With TLS 1.3 a server that requires a client certificate accepts the handshake and then drops the
        # connection: the SDK reports a broken pipe or a transport error, not a certificate problem.
        return ("Check TEMPORAL_ADDRESS and that the server is running. If the server requires a client "
                "certificate (mTLS), set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH; for "
                'Temporal Cloud with an API key, set TEMPORAL_API_KEY; if it has no TLS, set TEMPORAL_TLS="False"')
    return ("Check TEMPORAL_ADDRESS and that the server is running, that the server accepts this client "
            "certificate or API key, and TEMPORAL_TLS_SERVER_CA_CERT_PATH / TEMPORAL_TLS_SERVER_NAME if its "
            "certificate is private")


#: Words of the SDK's errors when the server's certificate is not trusted, and when it refuses who we are.
_CERTIFICATE_WORDS = ("invalidcertificate", "unknownissuer", "notvalidforname", "handshake")
_AUTH_WORDS = ("unauthenticated", "unauthorized", "permission denied", "permissiondenied", "api key")


async def search_attribute_registered(client: Client, *, rpc_timeout: timedelta | None = None) -> bool:
    """Whether the namespace knows the OpenVLEEventId search attribute (the worker registers it)."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace), timeout=rpc_timeout)
    return EVENT_ID_ATTRIBUTE.name in existing.custom_attributes


async def ensure_search_attributes(client: Client) -> None:
    """Register the OpenVLEEventId search attribute when the server does not know it yet."""
    name = EVENT_ID_ATTRIBUTE.name
    if await search_attribute_registered(client):
        return
    try:
        await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
        ))
        log.info("registered search attribute %s on namespace %s", name, client.namespace)
    except RPCError as error:
        if "already" not in str(error).lower():
            raise


LIVE_POLLER_WINDOW = timedelta(minutes=1)
"""A worker counts as polling when the server saw it poll within this time. The server lists a worker
that has exited for minutes after; a live idle worker polls again whenever its long poll ends (every
50 s on the dev server), so a minute tells the two apart."""


async def task_queue_pollers(client: Client, queue: str, *, rpc_timeout: timedelta | None = None) -> list[str]:
    """The identities of the workers polling ``queue`` for workflow tasks now (seen within
    `LIVE_POLLER_WINDOW`)."""
    response = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    ), timeout=rpc_timeout)
    return live_pollers(response.pollers, now=datetime.now(UTC))


def live_pollers(pollers: Iterable[PollerInfo], *, now: datetime) -> list[str]:
    """The identities of ``pollers`` seen within `LIVE_POLLER_WINDOW` of ``now``."""
    return [p.identity for p in pollers if p.HasField("last_access_time")
            and now - p.last_access_time.ToDatetime(tzinfo=UTC) <= LIVE_POLLER_WINDOW]


def exit_process(code: int) -> NoReturn:
    """End a process that used a Temporal client, skipping the interpreter's teardown.

    The SDK's Rust runtime keeps threads that can outlive Python's finalisation and then abort the
    process ("Fatal Python error: PyGILState_Release", exit 134) after all work is done
    (temporalio/sdk-python#300). Everything is flushed first, so nothing is lost."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_script(main: Coroutine[Any, Any, int | None]) -> NoReturn:
    """Run a short-lived script's coroutine, then end the process with `exit_process`: the exit code is what
    ``main`` returns (None: 0); an exception is printed as Python prints it and exits 1 (Ctrl-C: 130)."""
    try:
        code = asyncio.run(main) or 0
    except KeyboardInterrupt:
        code = 130
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    exit_process(code)
