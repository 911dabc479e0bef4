"""Connecting to Temporal (`connect`; `platform_client`: the running platform's, for the commands
and the edges), preparing the namespace, and saying how a run that gave no result ended
(`how_it_ended`: the gateway and the `agentic` command say it alike; `ended_as`: the same in one
word, the gateway's error code)."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import Any, Literal

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import CancelledError as RunCancelledError
from temporalio.exceptions import FailureError, TerminatedError
from temporalio.exceptions import TimeoutError as RunTimeoutError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from agentic_core import search_attributes
from workers.errors import AgenticError
from workers.settings import Settings
from workers.stack.env import platform_settings


async def connect(target: str, namespace: str = "default", *, runtime: Runtime | None = None) -> Client:
    """A client with the pydantic data converter (and the tracing interceptor when this process
    traces, `workers.telemetry`; `runtime`: the worker's, with the SDK's metrics), or one clear error."""
    from workers.telemetry import client_interceptors

    try:
        return await Client.connect(
            target,
            namespace=namespace,
            data_converter=pydantic_data_converter,
            interceptors=client_interceptors(),
            runtime=runtime,
        )
    except Exception as exc:  # the SDK raises RuntimeError with a long gRPC text
        raise AgenticError(
            f"cannot reach Temporal at {target}: is the platform running? "
            f"Start it with `agentic up`, or set AGENTIC_TEMPORAL_ADDRESS ({connect_cause(exc)})"
        ) from exc


def connect_cause(exc: BaseException) -> str:
    """The reason in the SDK's long connect error: the OS's message where it carries one
    (`Failed client connect: … Os { code: 111, …, message: "Connection refused" } …` ->
    "Connection refused"), else its first line, cut at a word."""
    text = str(exc)
    said = re.search(r'message: "([^"]+)"', text)
    if said:
        return said.group(1)
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= 120 else first[:120].rsplit(" ", 1)[0] + " …"


async def platform_client(settings: Settings) -> tuple[Client, str]:
    """A client for the running platform and its task queue: the stack in the data dir if one runs,
    else the settings (`workers.stack.env.platform_settings`)."""
    eff = platform_settings(settings)
    return await connect(eff.temporal_target, eff.temporal_namespace), eff.task_queue


async def newest_first(client: Client, query: str, limit: int) -> list[WorkflowExecution]:
    """The workflows matching `query`, newest start first, at most `limit`.

    Temporal's SQL visibility lists running workflows first and closed ones by close time, so
    one listing's first row is not the newest: a run that started last and already finished (a
    dry-run rollout, a short incident) comes after every running one. This lists the newest
    running and the most recently closed ones and orders them by start time."""
    found: list[WorkflowExecution] = []
    for status in ("ExecutionStatus = 'Running'", "ExecutionStatus != 'Running'"):
        found += [wf async for wf in client.list_workflows(f"{query} AND {status}", limit=limit)]
    found.sort(key=lambda wf: (wf.start_time, wf.id), reverse=True)
    return found[:limit]


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


WORKER_WAIT_S = 90.0  # a query waits this long for a worker to poll (one just restarted is starting)


async def query_when_served(
    handle: WorkflowHandle[Any, Any], name: str, result_type: type[Any], *, wait_s: float = WORKER_WAIT_S
) -> Any:
    """A workflow query, waited on for up to `wait_s` while no worker answers it (one killed or
    being upgraded is still starting: Temporal answers "no poller seen" or times the query out),
    saying so once on stderr. A workflow that does not exist raises its RPCError at once; any
    other RPCError after the wait."""
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        try:
            return await handle.query(name, result_type=result_type)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND or time.monotonic() >= deadline:
                raise
            if not said:
                print(f"no worker answers (restarting?): waiting up to {wait_s:.0f} s", file=sys.stderr, flush=True)
                said = True
            await asyncio.sleep(1.0)


_NO_REASON = "Workflow terminated"  # what the SDK says of a termination that gave no reason


def _said(details: Any) -> str:
    """The details a termination or cancellation carried, as words ('' for none)."""
    words = [str(d) for d in details or () if d is not None and str(d).strip()]
    return f" ({'; '.join(words)})" if words else ""


def how_it_ended(cause: BaseException | None) -> str:
    """How a run that gave no result ended, in plain words, from the cause of the
    `WorkflowFailureError` its result raised: terminated (with the reason, and details if any:
    the server says "terminated by user via frontend" when no reason was given, the CLI
    "Requested from CLI by root"), cancelled, timed out, or failed with the innermost cause's
    own message (an `ActivityError`'s "Activity task failed" says nothing)."""
    if isinstance(cause, TerminatedError):
        reason = "" if cause.message in ("", _NO_REASON) else f": {cause.message}"
        return f"was terminated{reason}{_said(cause.details)}"
    if isinstance(cause, RunCancelledError):
        return f"was cancelled{_said(cause.details)}"
    if isinstance(cause, RunTimeoutError):
        return "timed out"
    if cause is None:
        return "failed"
    while isinstance(cause, FailureError) and cause.cause is not None:
        cause = cause.cause
    message = cause.message if isinstance(cause, FailureError) else str(cause)
    return f"failed: {message or type(cause).__name__}"


RunEnding = Literal["terminated", "cancelled", "timed_out", "failed"]

# A run that is over without a result (its result raises `WorkflowFailureError`), and every closed
# run (one that completed has its result).
ENDED_WITHOUT_RESULT = frozenset(
    {
        WorkflowExecutionStatus.TERMINATED,
        WorkflowExecutionStatus.CANCELED,
        WorkflowExecutionStatus.TIMED_OUT,
        WorkflowExecutionStatus.FAILED,
    }
)
CLOSED = ENDED_WITHOUT_RESULT | {WorkflowExecutionStatus.COMPLETED}


def ended_as(cause: BaseException | None) -> RunEnding:
    """`how_it_ended` in one word, from the same cause (the gateway's error code is `run_<word>`)."""
    if isinstance(cause, TerminatedError):
        return "terminated"
    if isinstance(cause, RunCancelledError):
        return "cancelled"
    if isinstance(cause, RunTimeoutError):
        return "timed_out"
    return "failed"
