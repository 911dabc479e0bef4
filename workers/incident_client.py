"""The client side of the incident commands: `alert send`, `incidents`, `approve|ignore|modify`.

It speaks to the running platform through Temporal (queries and the `decide` update) and
to the intake over HTTP, using only the contracts in `agentic_core.incident`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from agentic_core import search_attributes as sa
from agentic_core.incident import (
    QUERY_STATE,
    UPDATE_DECIDE,
    DecideInput,
    DecideResult,
    IncidentState,
    IncidentStatus,
)
from agentic_core.models import ToolCall
from workers.errors import AgenticError
from workers.settings import Settings
from workers.stack.env import platform_settings
from workers.temporal import WORKER_WAIT_S, newest_first, platform_client, query_when_served


class IncidentSummary(BaseModel):
    id: str
    status: str
    severity: str = ""
    category: str = ""
    alertname: str = ""
    runbook: str = ""
    started_at: datetime | None = None
    closed_at: datetime | None = None
    workflow_status: str = ""


def intake_target(settings: Settings) -> tuple[str, str]:
    """The intake URL and its token: the running stack's (`platform_settings`), else the settings'."""
    eff = platform_settings(settings)
    if eff.intake_token is None:
        raise AgenticError("no intake token: set AGENTIC_INTAKE_TOKEN (or run against the embedded stack's data dir)")
    return eff.intake_base_url, eff.intake_token.get_secret_value()


async def send_alert(settings: Settings, payload: bytes, kind: Literal["alerts", "events"]) -> dict[str, Any]:
    url, token = intake_target(settings)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(
                f"{url}/{kind}",
                content=payload,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
    except httpx.HTTPError as exc:
        raise AgenticError(
            f"cannot reach the intake at {url}: {type(exc).__name__} (is `agentic up` running?)"
        ) from exc
    try:
        body: dict[str, Any] = r.json()
    except ValueError:
        body = {"error": r.text[:300]}
    if r.status_code != 202:
        raise AgenticError(f"the intake refused the payload ({r.status_code}): {body.get('error') or body}")
    return body


async def list_incidents(settings: Settings, limit: int = 50) -> list[IncidentSummary]:
    client, _ = await platform_client(settings)
    out: list[IncidentSummary] = []
    for wf in await newest_first(client, "WorkflowType = 'IncidentWorkflow'", limit):
        attrs = wf.typed_search_attributes
        status = attrs.get(sa.INCIDENT_STATUS) or ""
        if not status and wf.status is not None and wf.status != WorkflowExecutionStatus.RUNNING:
            status = wf.status.name.lower()
        out.append(
            IncidentSummary(
                id=wf.id,
                status=status or "open",
                severity=attrs.get(sa.INCIDENT_SEVERITY) or "",
                category=attrs.get(sa.INCIDENT_CATEGORY) or "",
                alertname=attrs.get(sa.ALERT_NAME) or "",
                runbook=attrs.get(sa.RUNBOOK_ID) or "",
                started_at=wf.start_time,
                closed_at=wf.close_time,
                workflow_status=wf.status.name.lower() if wf.status is not None else "",
            )
        )
    return out


async def incident_state(
    settings: Settings, incident_id: str, *, wait_for_worker_s: float = WORKER_WAIT_S
) -> IncidentState:
    """The incident's state (its workflow's query), waiting for a restarting worker
    (`workers.temporal.query_when_served`) instead of failing a command typed a second too early."""
    client, _ = await platform_client(settings)
    handle = client.get_workflow_handle(incident_id)
    try:
        state: IncidentState = await query_when_served(handle, QUERY_STATE, IncidentState, wait_s=wait_for_worker_s)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise AgenticError(f"no incident {incident_id}: see `agentic incidents list`") from exc
        raise AgenticError(f"cannot read incident {incident_id}: {exc.message}") from exc
    return state


def modify_plan(plan: list[ToolCall], args: Any) -> list[ToolCall]:
    """`--args`: a JSON list replaces the plan; a JSON object overrides arguments the plan already has."""
    if isinstance(args, list):
        try:
            return [ToolCall.model_validate(a) for a in args]
        except ValueError as exc:
            raise AgenticError(f"--args list must hold {{tool, arguments}} objects: {exc}") from exc
    if not plan and isinstance(args, dict):
        raise AgenticError(
            "the plan is empty (nothing to run): give the whole plan as a JSON list, e.g. "
            '[{"tool": "rollout_restart", "arguments": {"namespace": "media", "deployment": "sonarr"}}]'
        )
    if not isinstance(args, dict) or not args:
        raise AgenticError('--args must be a JSON object of arguments (e.g. {"value": "2Gi"}) or a list of tool calls')
    unknown = [k for k in args if not any(k in call.arguments for call in plan)]
    if unknown:
        have = sorted({k for call in plan for k in call.arguments})
        raise AgenticError(f"no action of the plan takes {', '.join(unknown)} (arguments: {', '.join(have) or 'none'})")
    return [
        ToolCall(tool=c.tool, arguments={**c.arguments, **{k: v for k, v in args.items() if k in c.arguments}})
        for c in plan
    ]


async def decide(
    settings: Settings,
    incident_id: str,
    choice: Literal["approved", "acknowledged", "ignored", "modified"],
    by: str,
    args_json: str | None,
) -> tuple[DecideResult, IncidentState]:
    state = await incident_state(settings, incident_id)
    if state.status != IncidentStatus.AWAITING_APPROVAL or not state.approval_id or not state.plan_hash:
        raise AgenticError(f"incident {incident_id} is not waiting for an answer (status: {state.status})")
    modified: list[ToolCall] | None = None
    if choice == "modified":
        if not args_json:
            raise AgenticError("modify needs --args JSON (the changed arguments, or the whole plan as a list)")
        try:
            parsed = json.loads(args_json)
        except json.JSONDecodeError as exc:
            raise AgenticError(f"--args is not valid JSON: {exc}") from exc
        modified = modify_plan(state.plan, parsed)
    elif args_json:
        raise AgenticError("--args is only for `agentic modify`")
    client, _ = await platform_client(settings)
    handle = client.get_workflow_handle(state.approval_id)
    try:
        result = await handle.execute_update(
            UPDATE_DECIDE,
            DecideInput(choice=choice, by=by, plan_hash=state.plan_hash, modified_plan=modified),
            result_type=DecideResult,
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise AgenticError(f"refused: {getattr(cause, 'message', None) or cause}") from exc
    except RPCError as exc:
        raise AgenticError(f"cannot answer {incident_id}: {exc.message}") from exc
    return result, state
