"""Connecting to Temporal the way the worker and the starter both need: the same data converter
(pydantic models, optionally encrypted payloads) and the event-id search attribute."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import NoReturn

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.service import RPCError

from openvle_moodle_sync.codec import payload_codec
from openvle_moodle_sync.settings import Settings
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


async def connect(settings: Settings) -> Client:
    """A client for TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE with this service's data converter."""
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=data_converter(settings),
            tls=settings.temporal_tls,
        )
    except RuntimeError as error:
        raise ConnectionError(
            f"Failed to connect to Temporal at {settings.temporal_address} (namespace "
            f"{settings.temporal_namespace!r}): {error}. Check TEMPORAL_ADDRESS and that the server is running."
        ) from None


async def ensure_search_attributes(client: Client) -> None:
    """Register the OpenVLEEventId search attribute when the server does not know it yet."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    name = EVENT_ID_ATTRIBUTE.name
    if name in existing.custom_attributes:
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


def exit_process(code: int) -> NoReturn:
    """End a process that used a Temporal client, skipping the interpreter's teardown.

    The SDK's Rust runtime keeps threads that can outlive Python's finalisation and then abort the
    process ("Fatal Python error: PyGILState_Release", exit 134) after all work is done
    (temporalio/sdk-python#300). Everything is flushed first, so nothing is lost."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
