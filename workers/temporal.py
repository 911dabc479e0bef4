"""Connecting to Temporal and preparing the namespace."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from agentic_core import search_attributes
from workers.errors import AgenticError


async def connect(target: str, namespace: str = "default") -> Client:
    """A client with the pydantic data converter, or one clear error."""
    try:
        return await Client.connect(target, namespace=namespace, data_converter=pydantic_data_converter)
    except Exception as exc:  # the SDK raises RuntimeError with a long gRPC text
        raise AgenticError(
            f"cannot reach Temporal at {target}: is the platform running? "
            f"Start it with `agentic up`, or set AGENTIC_TEMPORAL_ADDRESS ({str(exc).splitlines()[0][:120]})"
        ) from exc


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the platform's custom search attributes that are missing; returns those added."""
    existing = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    have = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type)
        for key in search_attributes.ALL
        if key.name not in have
    }
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
            )
        except RPCError as exc:
            if "already" not in str(exc).lower():
                raise
    return sorted(missing)
