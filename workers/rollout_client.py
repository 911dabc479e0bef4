"""The client side of `agentic rollout`: start the RolloutWorkflow, read its state."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from agentic_core.rollout import QUERY_ROLLOUT, RolloutInput, RolloutState
from workers.errors import AgenticError
from workers.settings import Settings
from workers.temporal import newest_first, platform_client

WORKFLOW = "RolloutWorkflow"


FIRST_STATE_S = 15.0  # how long `agentic rollout start` waits for a worker to take the rollout
NO_WORKER = "no worker runs rollouts"


NOT_REGISTERED = "is not registered on this worker"  # the SDK's words for a workflow type it lacks


async def _refused(handle: WorkflowHandle) -> bool:
    """Whether a worker took the rollout's first workflow task and failed it because it does not
    run rollouts (no cluster: `build_rollout` leaves the workflow out): it says so in the history
    at once, where waiting for a state would take `FIRST_STATE_S`."""
    with contextlib.suppress(RPCError):
        async for event in handle.fetch_history_events():
            if event.HasField("workflow_task_failed_event_attributes"):
                failure = event.workflow_task_failed_event_attributes.failure
                if NOT_REGISTERED in failure.message:
                    return True
    return False


async def _first_state(handle: WorkflowHandle, within: float) -> RolloutState | None:
    """The rollout's state once a worker answers, or None after `within` seconds, or at once when
    the worker that took it does not run rollouts. Each query is bounded too: with no worker on
    the queue, Temporal holds a query until its own deadline (about 30 s here, twice what
    `agentic rollout start` means to wait)."""
    deadline = asyncio.get_running_loop().time() + within
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            return await handle.query(
                QUERY_ROLLOUT, result_type=RolloutState, rpc_timeout=timedelta(seconds=max(min(left, 1.0), 0.5))
            )
        except RPCError:
            if await _refused(handle):
                return None
            await asyncio.sleep(0.5)
    return None


async def start_rollout(settings: Settings, from_wave: int, to_wave: int, dry_run: bool) -> str:
    client, queue = await platform_client(settings)
    rid = f"rollout-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    handle = await client.start_workflow(
        WORKFLOW,
        RolloutInput(from_wave=from_wave, to_wave=to_wave, dry_run=dry_run, approvers=settings.approver_list),
        id=rid,
        task_queue=queue,
    )
    if await _first_state(handle, FIRST_STATE_S) is None:
        # No worker took it: the worker has no cluster (rollouts are off there) or none runs.
        await handle.terminate(reason=NO_WORKER)
        raise AgenticError(
            f"{NO_WORKER}: the worker needs a Kubernetes cluster (set AGENTIC_KUBECONFIG); see the worker's log"
        )
    return rid


async def never_ran(handle: WorkflowHandle) -> str | None:
    """Why a rollout whose state cannot be read has none: it was closed before any worker took
    it (`agentic rollout start` stops one no worker takes, with the reason), or None when that is
    not the case (running, unknown, not reachable)."""
    try:
        desc = await handle.describe()
    except RPCError:
        return None
    if desc.status is None or desc.status == WorkflowExecutionStatus.RUNNING:
        return None
    why = ""
    if desc.status == WorkflowExecutionStatus.TERMINATED:
        with contextlib.suppress(RPCError):
            async for event in handle.fetch_history_events():
                if event.HasField("workflow_execution_terminated_event_attributes"):
                    why = event.workflow_execution_terminated_event_attributes.reason
    how = desc.status.name.lower().replace("_", " ")
    return f"rollout {handle.id} never ran: it was {how} before a worker took it" + (f" ({why})" if why else "")


async def rollout_state(settings: Settings, rollout_id: str | None) -> tuple[str, RolloutState]:
    client, _ = await platform_client(settings)
    if rollout_id is None:
        latest = await newest_first(client, f"WorkflowType = '{WORKFLOW}'", 1)
        rollout_id = latest[0].id if latest else None
        if rollout_id is None:
            raise AgenticError("no rollout yet: start one with `agentic rollout start`")
    handle = client.get_workflow_handle(rollout_id)
    try:
        return rollout_id, await handle.query(QUERY_ROLLOUT, result_type=RolloutState)
    except RPCError as exc:
        why = await never_ran(handle) if exc.status == RPCStatusCode.FAILED_PRECONDITION else None
        raise AgenticError(why or f"cannot read rollout {rollout_id}: {exc.message}") from None
