"""The client side of `agentic agents …`: start (or reattach to) an agent run, follow its progress,
answer the approval question it waits on, and read a stored tool result.

It speaks to the running platform through Temporal (start, the progress query, the approval's
`decide` update) using only the contracts in `agentic_core.agents` and `agentic_core.incident`; a
stored result is read from the ledger directly, read-only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from agentic_core.agents import (
    QUERY_AGENT_PROGRESS,
    AgentName,
    AgentProgress,
    AgentRequest,
    AgentResult,
    AgentStatus,
    agent_run_id,
)
from agentic_core.incident import QUERY_APPROVAL, UPDATE_DECIDE, ApprovalState, DecideInput, DecideResult
from workers.errors import AgenticError
from workers.settings import Settings
from workers.temporal import how_it_ended, platform_client, query_when_served

WORKFLOW = "AgentWorkflow"
AGENTS = tuple(a.value for a in AgentName)
POLL_S = 0.3


def run_id_of(run: str) -> str:
    """A run id (`agent-…`) from a run id or the request id it was started with."""
    return run if run.startswith("agent-") else agent_run_id(run)


async def start(
    settings: Settings,
    text: str,
    *,
    agent: str | None,
    request_id: str | None,
    requested_by: str,
) -> tuple[WorkflowHandle[Any, AgentResult], bool]:
    """Start the run for the request (a new request id unless one is given), or reattach to the run
    of that request id; returns the handle and whether it was already there."""
    if agent is not None and agent not in AGENTS:
        raise AgenticError(f"no agent named {agent!r}: choose one of {', '.join(AGENTS)}")
    text = text.strip()
    if not text:
        raise AgenticError("the request is empty: say what you want to know")
    req = AgentRequest(
        request_id=request_id or uuid.uuid4().hex,
        text=text[:32_000],
        agent=agent,
        requested_by=requested_by,
        source="cli",
        approvers=settings.approver_list,
        model_queue=settings.run_model_queue,
        tools_queue=settings.run_tools_queue,
    )
    client, task_queue = await platform_client(settings)
    run_id = agent_run_id(req.request_id)
    try:
        handle = await client.start_workflow(
            WORKFLOW,
            req,
            id=run_id,
            task_queue=task_queue,
            result_type=AgentResult,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        return handle, False
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(run_id, result_type=AgentResult), True
    except RPCError as exc:
        raise AgenticError(f"cannot start the agent run: {exc.message}") from exc


def run_ended(run_id: str, exc: WorkflowFailureError | RPCError) -> str:
    """What to tell the person who asked (the gateway's answer, `agentic agents ask`'s one line) when
    waiting for the run's result raised instead: how the run ended (never the SDK's bare "Workflow
    execution failed"), or that it cannot be followed."""
    if isinstance(exc, RPCError):
        return f"cannot follow the agent run {run_id}: {exc.message}"
    return f"the agent run {run_id} {how_it_ended(exc.cause)}"


async def _query(handle: WorkflowHandle[Any, Any], name: str, result_type: type[Any], what: str) -> Any:
    """A query that waits for a restarting worker (`workers.temporal.query_when_served`); a run
    that does not exist is said at once."""
    try:
        return await query_when_served(handle, name, result_type)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise AgenticError(f"no {what} {handle.id}") from exc
        raise AgenticError(f"cannot read {what} {handle.id}: {exc.message}") from exc


async def progress(handle: WorkflowHandle[Any, Any]) -> AgentProgress:
    result: AgentProgress = await _query(handle, QUERY_AGENT_PROGRESS, AgentProgress, "agent run")
    return result


async def follow(
    handle: WorkflowHandle[Any, AgentResult],
    on_change: Callable[[AgentProgress, AgentProgress | None], None],
    *,
    timeout_s: float | None = None,
) -> AgentResult:
    """Poll the run's progress until it ends, calling `on_change(now, before)` whenever it changed;
    returns the run's result. `timeout_s`: give up waiting (the run goes on)."""
    before: AgentProgress | None = None
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    result_task = asyncio.ensure_future(handle.result())
    try:
        while not result_task.done():
            try:
                now = await handle.query(QUERY_AGENT_PROGRESS, result_type=AgentProgress)
            except RPCError:
                now = None  # the first workflow task has not run yet, or the run just ended
            if now is not None and (before is None or now.model_dump() != before.model_dump()):
                on_change(now, before)
                before = now
            if deadline is not None and time.monotonic() > deadline:
                raise AgenticError(
                    f"gave up waiting after {timeout_s:.0f}s; the run goes on: "
                    f"`agentic agents show {handle.id}`, or ask again with the same --request-id"
                )
            await asyncio.wait({result_task}, timeout=POLL_S)
        try:
            result = result_task.result()
        except (WorkflowFailureError, RPCError) as exc:  # ended from outside (terminated, cancelled, ...)
            raise AgenticError(run_ended(handle.id, exc)) from None
    finally:
        if not result_task.done():
            result_task.cancel()
    if before is None or result.model_dump() != before.model_dump():
        on_change(result, before)
    return result


async def show(settings: Settings, run: str) -> AgentProgress:
    client, _ = await platform_client(settings)
    return await progress(client.get_workflow_handle(run_id_of(run)))


async def decide(
    settings: Settings, run: str, choice: Literal["approved", "ignored"], by: str
) -> tuple[DecideResult, AgentProgress]:
    """Answer the approval question the run waits on (`approved` runs the call once; `ignored`:
    it never runs)."""
    client, _ = await platform_client(settings)
    now = await progress(client.get_workflow_handle(run_id_of(run)))
    if now.status != AgentStatus.AWAITING_APPROVAL or not now.approval_id:
        raise AgenticError(f"agent run {now.run_id} is not waiting for an answer (status: {now.status.value})")
    handle = client.get_workflow_handle(now.approval_id)
    st = await approval_state(handle)
    try:
        result = await handle.execute_update(
            UPDATE_DECIDE,
            DecideInput(choice=choice, by=by, plan_hash=st.request.plan_hash),
            result_type=DecideResult,
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise AgenticError(f"refused: {getattr(cause, 'message', None) or cause}") from exc
    except RPCError as exc:
        raise AgenticError(f"cannot answer {now.approval_id}: {exc.message}") from exc
    return result, now


APPROVAL_STARTS_S = 10.0  # how long an answer waits for the question the run has just named


async def approval_state(handle: WorkflowHandle[Any, Any]) -> ApprovalState:
    """The approval's state. A run names its approval in its progress as it asks, and starts the
    `ApprovalWorkflow` once the question has gone out: an answer that comes in between (a client
    that answers as soon as it sees the run waiting) waits for it instead of "no approval"."""
    deadline = asyncio.get_running_loop().time() + APPROVAL_STARTS_S
    while True:
        try:
            st: ApprovalState = await _query(handle, QUERY_APPROVAL, ApprovalState, "approval")
            return st
        except AgenticError as exc:
            missing = isinstance(exc.__cause__, RPCError) and exc.__cause__.status == RPCStatusCode.NOT_FOUND
            if not missing or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def stored_result(settings: Settings, ref: str, offset: int, limit: int) -> tuple[str, int]:
    """Part of a tool result stored in the ledger (`ResultRef.ref`): `limit` characters from
    `offset`, and its whole size."""
    from activities.ledger.db import LedgerError, NotFound
    from activities.ledger.repository import Ledger
    from workers.stack.env import platform_settings

    try:
        ledger = await Ledger.connect(
            platform_settings(settings).postgres_target(), min_size=1, max_size=1, apply_migrations=False
        )
    except LedgerError as exc:
        raise AgenticError(f"cannot read the ledger: {exc} (is `agentic up` running?)") from exc
    try:
        return await ledger.read_blob(ref, offset=offset, limit=limit)
    except NotFound as exc:
        raise AgenticError(f"{exc}: the ref is printed beside each tool call (`agentic agents ask --json`)") from exc
    finally:
        await ledger.close()
