"""Answers through the gateway: `GET /v1/runs/{run}` (an agent run's progress, as it really ended),
`POST /v1/runs/{run}/approve|deny` and `POST /v1/incidents/{incident}/decision`, through the same
`decide` update of the `ApprovalWorkflow` as Telegram and the CLI, answered as `key:<name>`: only by
keys that are not read-only and are in AGENTIC_GATEWAY_APPROVERS."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from activities.ledger.db import LedgerError
from activities.ledger.keys import ApiKey
from agentic_core.agents import OPEN_STATUSES, QUERY_AGENT_PROGRESS, AgentProgress, agent_run_id
from agentic_core.incident import DecideResult
from workers.errors import AgenticError
from workers.gateway.core import Gateway, GatewayError, _audit, _bad, _json_body, _key, _unavailable


async def _progress(gw: Gateway, run: str) -> tuple[WorkflowHandle[Any, Any], AgentProgress]:
    """The run's progress as it really is: a run that ended without its code running (terminated,
    timed out) still answers its query with its last state; that is corrected to how it ended, and
    its ledger row closed if it is still open (`workers.agent_runs`)."""
    client = await gw.client()
    run_id = run if run.startswith("agent-") else agent_run_id(run)
    handle = client.get_workflow_handle(run_id)
    try:
        now = await handle.query(QUERY_AGENT_PROGRESS, result_type=AgentProgress)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise GatewayError(404, f"no agent run {run_id}", code="not_found") from None
        raise _unavailable(f"cannot read agent run {run_id}: {exc.message}") from None
    if now.status in OPEN_STATUSES:
        now = await _as_it_ended(gw, client, now)
    return handle, now


async def _as_it_ended(gw: Gateway, client: Client, now: AgentProgress) -> AgentProgress:
    """`now` (an open status) corrected to how the run ended, if it has; its row closed too."""
    from workers.agent_runs import close_row, ended_progress, ending_of

    try:
        ending = await ending_of(client, now.run_id, now.status.value)
    except RPCError:
        return now  # cannot tell now: shown as the run said it
    if ending is None or ending.gone:
        return now
    try:
        row = await gw.ledger.get_agent_run(now.run_id)
    except LedgerError:
        row = None  # the answer stands; the worker's reconciler closes the row
    if row is not None and row.open:
        await close_row(gw.ledger, row, ending)
    return ended_progress(now, ending)


def _may_see(key: ApiKey, progress: AgentProgress) -> None:
    if key.agents and progress.agent not in key.agents:
        # said as if the run did not exist: a key for one agent learns nothing of another's runs
        raise GatewayError(404, f"no agent run {progress.run_id}", code="not_found")


async def run_progress(gw: Gateway, request: Request) -> Response:
    _handle, now = await _progress(gw, request.path_params["run"])
    _may_see(_key(request), now)
    return JSONResponse(now.model_dump(mode="json"))


def may_approve(gw: Gateway, key: ApiKey) -> str:
    """The approver name of `key` (`key:<name>`), or a 403 that says why it may not approve."""
    if key.read_only:
        raise GatewayError(403, f"key {key.name!r} is read-only: it may not answer approvals", kind="permission_error")
    if key.name not in gw.settings.gateway_approver_list:
        raise GatewayError(
            403,
            f"key {key.name!r} is not an approver: add it to AGENTIC_GATEWAY_APPROVERS",
            kind="permission_error",
        )
    return f"key:{key.name}"


def _refused(exc: AgenticError) -> GatewayError:
    text = str(exc)
    if text.startswith("no "):
        return GatewayError(404, text, code="not_found")
    if "may not answer" in text:
        return GatewayError(403, text, kind="permission_error")
    if text.startswith("cannot "):
        return _unavailable(text)
    return GatewayError(409, text, code="conflict")


async def answer_run(gw: Gateway, key: ApiKey, run: str, choice: str) -> tuple[DecideResult, AgentProgress]:
    """Answer the approval agent run `run` waits on as `key:<name>` (the API's and the console's way)."""
    by = may_approve(gw, key)
    _handle, now = await _progress(gw, run)
    _may_see(key, now)
    from workers.agent_client import decide

    try:
        result, _ = await decide(gw.settings, now.run_id, choice, by)  # type: ignore[arg-type]
    except AgenticError as exc:
        raise _refused(exc) from None
    return result, now


async def _decide_run(gw: Gateway, request: Request, choice: str) -> Response:
    run = request.path_params["run"]
    _audit(request, f"answer agent run: {choice}", run)
    result, now = await answer_run(gw, _key(request), run, choice)
    _audit(request, f"answer agent run: {result.choice}", now.run_id, f"approval {now.approval_id} by {result.by}")
    return JSONResponse(
        {"run_id": now.run_id, "approval_id": now.approval_id, "choice": result.choice, "by": result.by}
    )


async def approve_run(gw: Gateway, request: Request) -> Response:
    return await _decide_run(gw, request, "approved")


async def deny_run(gw: Gateway, request: Request) -> Response:
    return await _decide_run(gw, request, "ignored")


INCIDENT_CHOICES = ("approved", "acknowledged", "ignored", "modified")


async def answer_incident(gw: Gateway, key: ApiKey, incident: str, choice: str, args_json: str | None) -> DecideResult:
    """Answer the question `incident` waits on as `key:<name>` (the API's and the console's way)."""
    by = may_approve(gw, key)
    if key.agents:
        only = ", ".join(key.agents)
        raise GatewayError(
            403,
            f"key {key.name!r} is limited to agents ({only}): incidents need a key for every agent",
            kind="permission_error",
        )
    if choice not in INCIDENT_CHOICES:
        raise _bad(f"`choice` must be one of {', '.join(INCIDENT_CHOICES)}", "choice")
    from workers.incident_client import decide

    try:
        result, _ = await decide(gw.settings, incident, choice, by, args_json)  # type: ignore[arg-type]
    except AgenticError as exc:
        raise _refused(exc) from None
    return result


async def decide_incident(gw: Gateway, request: Request) -> Response:
    key = _key(request)
    incident = request.path_params["incident"]
    _audit(request, "answer incident", incident)
    may_approve(gw, key)
    doc = await _json_body(request)
    if not isinstance(doc, dict):
        raise _bad('expected a JSON object: {"choice": …, "args": … (modified only)}')
    args = doc.get("args")
    if args is not None and not isinstance(args, dict | list):
        raise _bad("`args` must be a JSON object of changed arguments or a list of tool calls", "args")
    choice = doc.get("choice")
    result = await answer_incident(gw, key, incident, str(choice), json.dumps(args) if args is not None else None)
    _audit(request, f"answer incident: {result.choice}", incident, f"plan {result.plan_hash[:12]} by {result.by}")
    return JSONResponse(
        {"incident_id": incident, "choice": result.choice, "by": result.by, "plan_hash": result.plan_hash}
    )
