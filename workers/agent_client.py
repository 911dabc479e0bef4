"""The client side of `agentic agents …`: start (or reattach to) an agent run, follow its progress,
answer the approval question it waits on, list the runs, and read a stored tool result.

It speaks to the running platform through Temporal (start, the progress query, the approval's
`decide` update) using only the contracts in `agentic_core.agents` and `agentic_core.incident`; the
runs and a stored result are read from the ledger directly. A run shown or listed is shown as it
really ended, and an open ledger row of a run that has ended is closed on the way
(`workers.agent_runs`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from agentic_core.agents import (
    OPEN_STATUSES,
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
from workers.ledger_client import read_ledger
from workers.settings import Settings
from workers.temporal import how_it_ended, platform_client, query_when_served

if TYPE_CHECKING:
    from activities.ledger.models import AgentRunRow
    from workers.agent_runs import RunEnd

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
    """The run's progress, as it really ended: a run that ended without its code running
    (terminated, timed out) still answers its query with its last state (`awaiting_approval`,
    say); that is corrected to how it ended, and its ledger row closed if it is still open
    (`workers.agent_runs`; best effort: what is shown does not depend on the ledger)."""
    client, _ = await platform_client(settings)
    now, ending = await _progress_and_ending(client, run_id_of(run))
    await _close_row_if_open(settings, client, now.run_id, ending)
    return now


async def current_progress(client: Client, run_id: str) -> AgentProgress:
    """The run's progress query, corrected to how the run ended when it ended without its code
    running (`workers.agent_runs.ended_progress`: a terminated run's query still says
    `awaiting_approval`)."""
    now, _ending = await _progress_and_ending(client, run_id)
    return now


async def _progress_and_ending(client: Client, run_id: str) -> tuple[AgentProgress, RunEnd | None]:
    """`current_progress`, and how the run ended when its progress had to be corrected."""
    from workers.agent_runs import ended_progress, ending_of

    now = await progress(client.get_workflow_handle(run_id))
    if now.status not in OPEN_STATUSES:
        return now, None
    try:
        ending = await ending_of(client, now.run_id, now.status.value)
    except RPCError:
        return now, None  # cannot tell now: shown as the run said it
    return (now, None) if ending is None else (ended_progress(now, ending), ending)


async def _close_row_if_open(settings: Settings, client: Client, run_id: str, ending: RunEnd | None) -> None:
    """Close the run's ledger row if it is open and the run has ended (`ending`, when known
    already; best effort)."""
    from workers.agent_runs import close_row, reconcile_rows

    try:
        ledger = await read_ledger(settings)
    except AgenticError:
        return
    try:
        row = await ledger.get_agent_run(run_id)
        if row is not None and row.open:
            if ending is None:  # its progress said it ended (its own end not recorded?), or it goes on
                await reconcile_rows(ledger, client, [row])
            elif not ending.gone:
                await close_row(ledger, row, ending)
    except Exception as exc:  # the progress shown stands, whatever became of the ledger
        logging.getLogger("agentic.agent_runs").info("agent run %s: its row was not reconciled: %s", run_id, exc)
    finally:
        await ledger.close()


async def list_runs(settings: Settings, *, limit: int) -> tuple[list[AgentRunRow], str]:
    """The newest `limit` runs in the ledger, each open one whose run has ended closed first
    (`workers.agent_runs.reconcile_rows`); and a note when that could not be done (Temporal not
    reachable: the open rows are shown as the ledger has them)."""
    from activities.ledger.db import LedgerError
    from workers.agent_runs import reconcile_rows

    ledger = await read_ledger(settings)
    try:
        try:
            rows = await ledger.list_agent_runs(limit=limit)
        except LedgerError as exc:
            raise AgenticError(f"cannot read the ledger: {exc}") from None
        if not any(r.open for r in rows):
            return rows, ""
        try:
            client, _ = await platform_client(settings)
        except AgenticError as exc:
            return rows, f"open runs are shown as the ledger has them: {exc}"
        done, _still = await reconcile_rows(ledger, client, rows)
        return done, ""
    finally:
        await ledger.close()


async def decide(
    settings: Settings, run: str, choice: Literal["approved", "ignored"], by: str
) -> tuple[DecideResult, AgentProgress]:
    """Answer the approval question the run waits on (`approved` runs the call once; `ignored`:
    it never runs)."""
    client, _ = await platform_client(settings)
    now = await current_progress(client, run_id_of(run))
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
    from activities.ledger.db import NotFound

    ledger = await read_ledger(settings)
    try:
        return await ledger.read_blob(ref, offset=offset, limit=limit)
    except NotFound as exc:
        raise AgenticError(f"{exc}: the ref is printed beside each tool call (`agentic agents ask --json`)") from exc
    finally:
        await ledger.close()
