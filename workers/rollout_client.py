"""The client side of `agentic rollout`: start the RolloutWorkflow, read its state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from agentic_core.rollout import QUERY_ROLLOUT, RolloutInput, RolloutState
from workers.errors import AgenticError
from workers.settings import Settings
from workers.temporal import newest_first, platform_client

WORKFLOW = "RolloutWorkflow"


async def _first_state(handle: WorkflowHandle, within: float) -> RolloutState | None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        try:
            return await handle.query(QUERY_ROLLOUT, result_type=RolloutState)
        except RPCError:
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
    if await _first_state(handle, 15) is None:
        # No worker took it: the worker has no cluster (rollouts are off there) or none runs.
        await handle.terminate("no worker runs rollouts")
        raise AgenticError(
            "no worker runs rollouts: the worker needs a Kubernetes cluster (set AGENTIC_KUBECONFIG); "
            "see the worker's log"
        )
    return rid


async def rollout_state(settings: Settings, rollout_id: str | None) -> tuple[str, RolloutState]:
    client, _ = await platform_client(settings)
    if rollout_id is None:
        latest = await newest_first(client, f"WorkflowType = '{WORKFLOW}'", 1)
        rollout_id = latest[0].id if latest else None
        if rollout_id is None:
            raise AgenticError("no rollout yet: start one with `agentic rollout start`")
    try:
        return rollout_id, await client.get_workflow_handle(rollout_id).query(QUERY_ROLLOUT, result_type=RolloutState)
    except RPCError as exc:
        raise AgenticError(f"cannot read rollout {rollout_id}: {exc.message}") from exc
