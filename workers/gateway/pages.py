"""The console's agents chat, rollout and reports pages (docs/gateway.md#console); the session, CSRF
and rendering are `console`'s.

- **Agents** (`/console/agents`): ask an agent the key may use (the models of `GET /v1/models`);
  the form (CSRF) starts the same `AgentWorkflow` as `POST /v1/chat/completions` (`chat.parse_chat`
  refuses a model the key may not use, `chat.start_run` starts or reattaches) and redirects to the
  run's page, which streams it from `/console/agents/runs/{run}/stream`: server-sent events made
  from `chat.follow_run`, the very loop the SSE endpoint streams, with each progress line (the
  route, tool calls, a pending approval) as it happens, then the answer. Without JavaScript the
  page itself shows the run so far (the same lines; `follow_run`'s answer once it ended) and
  reloads itself while it goes on. A pending approval shows Approve / Deny for an allowed
  approver (`approvals.answer_run`, as `key:<name>`). The page's list of the key's runs and a run's
  page show each run as it really ended (`workers.agent_runs`: a run terminated from outside is
  `failed`, saying how; a cancelled one `cancelled`).
- **Rollouts** (`/console/rollouts`): the newest `RolloutWorkflow` runs; one rollout's waves, their
  phase, checks and gate answers, and the pending gate (its question and plan, from the gate's
  `ApprovalWorkflow`). Approve / Stop only for an approver the gate accepts, through its `decide`
  update with the plan hash that was shown.
- **Reports** (`/console/reports`): the weekly digests `WeeklyDigestWorkflow` stored in the ledger
  (`weekly_digests`: the gateway has its own pod in the chart and cannot see the worker's
  `DATA_DIR/reports`), one digest with its chart (the PNG, and its numbers as tables for those who
  cannot see it).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import asyncpg
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from temporalio.client import WorkflowExecutionStatus, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.ledger.db import LedgerError
from activities.ledger.keys import ApiKey
from agentic_core.agents import AgentProgress, AgentResult, AgentStatus, agent_run_id
from agentic_core.incident import QUERY_APPROVAL, UPDATE_DECIDE, ApprovalState, DecideInput, DecideResult
from agentic_core.reports import WeeklyDigest, parse_week
from agentic_core.rollout import QUERY_ROLLOUT, RolloutState, RolloutStatus
from workers.agent_runs import reconcile_rows, status_after
from workers.gateway import console
from workers.gateway.approvals import _may_see, _progress, answer_run, may_approve
from workers.gateway.chat import (
    RunEvent,
    follow_run,
    models_for,
    parse_chat,
    progress_lines,
    request_id_for_text,
    start_run,
)
from workers.gateway.core import KEEPALIVE_S, Gateway, GatewayError, _audit, _key, _unavailable
from workers.rollout_client import never_ran

PREFIX = console.PREFIX
ROLLOUT_WORKFLOW = "RolloutWorkflow"  # workers.rollout_client.WORKFLOW (not imported: it pulls the CLI's deps)
ROLLOUTS_LISTED = 20
_HASH = re.compile(r"[0-9a-f]{8,128}")
RUNS_LISTED = 20
REFRESH_S = 2  # without JavaScript, a run's page reloads itself this often while the run goes on
REFRESH_WAITING_S = 10  # and this often while it waits for an approval (time to read the question)


def _ok_or_why(gw: Gateway, key: ApiKey) -> str:
    """'' when `key` may answer approvals here, else why not (for the page)."""
    try:
        may_approve(gw, key)
    except GatewayError as exc:
        return exc.message
    return ""


# --------------------------------------------------------------------------- agents


async def agents(gw: Gateway, request: Request) -> Response:
    key = _key(request)
    mine = f"key:{key.name}"
    runs = [r for r in await gw.ledger.list_agent_runs(limit=200) if r.requested_by == mine][:RUNS_LISTED]
    if any(r.open for r in runs):  # each as it really ended (`workers.agent_runs`)
        try:
            client = await gw.client()
        except GatewayError:
            client = None  # Temporal cannot be reached: the rows as the ledger has them
        if client is not None:
            runs, _still = await reconcile_rows(gw.ledger, client, runs)
    return console._page(
        request, gw, "agents.html", title="Agents", models=models_for(key), runs=runs, request_id=uuid.uuid4().hex
    )


async def ask(gw: Gateway, request: Request) -> Response:
    """The chat form: the same checks and the same run as `POST /v1/chat/completions`."""
    key = _key(request)
    _audit(request, "ask agent")
    form = await console.check_csrf(request)
    doc: dict[str, Any] = {
        "model": form.get("model", ""),
        "messages": [{"role": "user", "content": form.get("text", "")}],
    }
    doc["stream"] = True  # the page shows the model's words as they are written
    chat = parse_chat(doc, key)  # 403 for an agent the key may not use, 400 for no text
    request_id = request_id_for_text(key, form.get("request_id") or None)
    await gw.deltas.park(agent_run_id(request_id))  # before the run starts: its page claims it
    handle, again = await start_run(gw, key, chat, request_id)
    _audit(request, "reattach agent run" if again else "start agent run", handle.id, f"model {chat.model} (console)")
    return RedirectResponse(f"{PREFIX}/agents/runs/{quote(handle.id)}", status_code=303)


async def _run(gw: Gateway, request: Request) -> AgentProgress:
    _handle, now = await _progress(gw, request.path_params["run"])
    _may_see(_key(request), now)  # a key for one agent learns nothing of another's runs
    return now


def _text(ev: RunEvent) -> str:
    """An event's text as the page shows it (a progress line without its quote mark)."""
    return ev.text.strip().removeprefix("> ") if ev.kind == "line" else ev.text.strip()


@dataclass(frozen=True)
class RunSoFar:
    """What the run's page shows without its script: the progress lines, and once the run has
    ended, its answer (or why it failed) and its last status."""

    lines: list[str]
    status: str
    answer: str | None  # None: the run goes on


def _lines_of(now: AgentProgress) -> list[str]:
    """The lines `follow_run` streams for the run as the progress query says it is now (each tool
    call at its latest status)."""
    return [_text(RunEvent("line", line)) for line in progress_lines(now.run_id, now, {}, [False])]


async def _so_far(gw: Gateway, now: AgentProgress) -> RunSoFar:
    """The run so far: while it goes on, the lines of the progress query `now` came from; once
    Temporal says it has ended, `follow_run` itself (which then ends at once): the same lines and
    answer as the stream."""
    handle = (await gw.client()).get_workflow_handle(now.run_id, result_type=AgentResult)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        raise _unavailable(f"cannot read agent run {now.run_id}: {exc.message}") from None
    if desc.status in (None, WorkflowExecutionStatus.RUNNING):
        return RunSoFar(lines=_lines_of(now), status=now.status.value, answer=None)
    lines, status, answer = [], now.status.value, ""
    run = follow_run(handle)
    try:
        async for ev in run:
            if ev.kind == "line":
                lines.append(_text(ev))
            elif ev.kind == "answer":
                answer = _text(ev)
                status = ev.progress.status.value if ev.progress is not None else status
            elif ev.kind == "failed":  # no result to show: how far the run got, and why it ended
                lines = _lines_of(now)
                answer, status = _text(ev), status_after(ev.ended).value
    finally:
        await run.aclose()
    return RunSoFar(lines=lines, status=status, answer=answer)


async def agent_run(gw: Gateway, request: Request) -> Response:
    """The run's page. Its script streams the run (`…/stream`); without the script the page shows
    the run so far and reloads itself (`<noscript><meta http-equiv="refresh">`) until it ends."""
    now = await _run(gw, request)
    so_far = await _so_far(gw, now)
    waiting = so_far.answer is None and now.status == AgentStatus.AWAITING_APPROVAL
    return console._page(
        request, gw, "agent_run.html", title=f"Agent run {now.run_id}", run=now, so_far=so_far,
        waiting=waiting, why_not=_ok_or_why(gw, _key(request)),
        refresh_s=REFRESH_WAITING_S if waiting else REFRESH_S,
    )  # fmt: skip


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def agent_run_stream(gw: Gateway, request: Request) -> Response:
    """The run as server-sent events for the page's script: `line` (a progress line, the run's
    status), `text` (the model's words as it writes them), `answer` (what is left of it after
    the words, or all of it) and `failed` (then the stream ends); comments as keep-alives."""
    now = await _run(gw, request)
    handle = (await gw.client()).get_workflow_handle(now.run_id, result_type=AgentResult)

    async def events() -> AsyncIterator[str]:
        # the words heard since the chat form started the run (`ask` parked them), or from now on
        async with gw.deltas.claim_or_subscribe(now.run_id) as deltas:
            run = follow_run(handle, deltas)
            try:
                async for ev in run:
                    if ev.kind == "keepalive":
                        yield ": keep-alive\n\n"
                        continue
                    if ev.kind == "text":  # the model's words as written: the script adds them to the answer
                        yield _sse("text", {"text": ev.text})
                        continue
                    p = ev.progress
                    data = {
                        # the answer as is (after streamed words, what is left of it: the script joins
                        # them); a progress line without its quote mark
                        "text": ev.text if ev.kind == "answer" else _text(ev),
                        "status": p.status.value if p is not None else status_after(ev.ended).value,
                        "approval_id": p.approval_id if p is not None else None,
                    }
                    yield _sse(ev.kind, data)
            finally:
                await run.aclose()

    headers = {**console.HEADERS, "X-Accel-Buffering": "no", "X-Keepalive-S": str(int(KEEPALIVE_S))}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


async def agent_run_decide(gw: Gateway, request: Request) -> Response:
    run = request.path_params["run"]
    _audit(request, "answer agent run", run)
    form = await console.check_csrf(request)
    choice = form.get("choice", "")
    if choice not in ("approved", "ignored"):
        raise GatewayError(400, "choice must be approved or ignored")
    result, now = await answer_run(gw, _key(request), run, choice)
    _audit(request, f"answer agent run: {result.choice}", now.run_id, f"approval {now.approval_id} by {result.by}")
    msg = f"{result.choice} by {result.by}"
    return RedirectResponse(f"{PREFIX}/agents/runs/{quote(now.run_id)}?{urlencode({'msg': msg})}", status_code=303)


# --------------------------------------------------------------------------- rollouts


async def rollouts(gw: Gateway, request: Request) -> Response:
    from workers.temporal import newest_first

    client = await gw.client()
    try:
        rows = await newest_first(client, f"WorkflowType = '{ROLLOUT_WORKFLOW}'", ROLLOUTS_LISTED)
    except RPCError as exc:
        raise _unavailable(f"cannot list the rollouts: {exc.message}") from None
    return console._page(request, gw, "rollouts.html", title="Rollouts", rows=rows)


async def _rollout_state(gw: Gateway, rollout_id: str) -> RolloutState:
    handle = (await gw.client()).get_workflow_handle(rollout_id)
    try:
        return await handle.query(QUERY_ROLLOUT, result_type=RolloutState)
    except WorkflowQueryFailedError:  # another kind of workflow: no rollout by that id
        raise GatewayError(404, f"no rollout {rollout_id} (that workflow is not a rollout)", code="not_found") from None
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise GatewayError(404, f"no rollout {rollout_id[:200]}", code="not_found") from None
        why = await never_ran(handle) if exc.status == RPCStatusCode.FAILED_PRECONDITION else None
        if why is not None:  # stopped before any worker took it: a state of its own, not an outage
            raise GatewayError(404, f"no rollout state: {why}", code="not_found") from None
        raise _unavailable(f"cannot read rollout {rollout_id}: {exc.message}") from None


def _may_answer_gate(gw: Gateway, key: ApiKey, gate: ApprovalState) -> str:
    """'' when `key` may answer this gate, else why not."""
    why = _ok_or_why(gw, key)
    if why:
        return why
    if key.agents:
        return f"key {key.name!r} is limited to agents ({', '.join(key.agents)}): gates need a key for every agent"
    if gate.request.approvers and f"key:{key.name}" not in gate.request.approvers:
        return f"key:{key.name} is not on this rollout's approver list (AGENTIC_APPROVERS when it started)"
    return ""


async def _gate(gw: Gateway, gate_id: str) -> ApprovalState | None:
    try:
        return await (await gw.client()).get_workflow_handle(gate_id).query(QUERY_APPROVAL, result_type=ApprovalState)
    except (RPCError, WorkflowQueryFailedError):
        return None  # answered or gone between the two queries: the page says the rollout's state


async def rollout(gw: Gateway, request: Request) -> Response:
    rollout_id = request.path_params["rollout"]
    st = await _rollout_state(gw, rollout_id)
    gate = await _gate(gw, st.gate_id) if st.gate_id else None
    why_not = _may_answer_gate(gw, _key(request), gate) if gate is not None else ""
    return console._page(
        request, gw, "rollout.html", title=f"Rollout {rollout_id}", rollout_id=rollout_id, st=st, gate=gate,
        gate_open=gate is not None and gate.result is None, why_not=why_not,
    )  # fmt: skip


async def rollout_gate(gw: Gateway, request: Request) -> Response:
    """Approve (go on to the next wave) or stop at the pending gate, through its `decide` update,
    bound to the plan hash the page showed."""
    rollout_id = request.path_params["rollout"]
    _audit(request, "answer rollout gate", rollout_id)
    form = await console.check_csrf(request)
    choice = form.get("choice", "")
    if choice not in ("approved", "ignored"):
        raise GatewayError(400, "choice must be approved (go on) or ignored (stop)")
    shown_hash = form.get("plan_hash", "")
    if not _HASH.fullmatch(shown_hash):
        raise GatewayError(400, "plan_hash must be the plan hash the page showed (hex): reload the page")
    key = _key(request)
    by = may_approve(gw, key)
    st = await _rollout_state(gw, rollout_id)
    shown = form.get("gate", "")
    if st.status != RolloutStatus.AWAITING_GATE or not st.gate_id or st.gate_id != shown:
        raise GatewayError(
            409,
            f"rollout {rollout_id} does not wait at gate {shown or '?'} (status: {st.status.value})",
            code="conflict",
        )
    gate = await _gate(gw, st.gate_id)
    if gate is None:
        raise GatewayError(409, f"gate {st.gate_id} cannot be read: reload the page", code="conflict")
    why = _may_answer_gate(gw, key, gate)
    if why:
        raise GatewayError(403, why, kind="permission_error")
    handle = (await gw.client()).get_workflow_handle(st.gate_id)
    try:
        result = await handle.execute_update(
            UPDATE_DECIDE,
            DecideInput(choice=choice, by=by, plan_hash=shown_hash),  # type: ignore[arg-type]
            result_type=DecideResult,
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise GatewayError(409, f"refused: {getattr(cause, 'message', None) or cause}", code="conflict") from None
    except RPCError as exc:
        raise _unavailable(f"cannot answer gate {st.gate_id}: {exc.message}") from None
    _audit(request, f"answer rollout gate: {result.choice}", st.gate_id, f"plan {result.plan_hash[:12]} by {by}")
    msg = f"gate {st.gate_id}: {result.choice} by {result.by}"
    return RedirectResponse(f"{PREFIX}/rollouts/{quote(rollout_id)}?{urlencode({'msg': msg})}", status_code=303)


# --------------------------------------------------------------------------- reports

_WEEK = re.compile(r"^\d{4}-W\d{2}$")
T = TypeVar("T")


def _week(request: Request) -> str:
    week = request.path_params["week"]
    try:
        if not _WEEK.match(week):
            raise ValueError(f"bad week {week!r}: expected an ISO week like 2026-W47")
        parse_week(week)
    except ValueError as exc:
        raise GatewayError(400, str(exc)) from None
    return week


def _digest(stored: Any) -> WeeklyDigest | None:
    """The stored JSON as a digest, or None when it is not one (this agentic cannot read it)."""
    try:
        return WeeklyDigest.model_validate(stored)
    except ValidationError:
        return None


def _no_digest(week: str) -> GatewayError:
    return GatewayError(
        404,
        f"no digest of {week} in the ledger: `agentic report weekly --week {week}` writes it",
        code="not_found",
    )


async def _read(read: Awaitable[T]) -> T:
    """A read of the digests; a ledger that cannot answer it is a 503 that says why."""
    try:
        return await read
    except asyncpg.UndefinedTableError:  # the gateway does not migrate: a worker not yet upgraded
        raise _unavailable(
            "the ledger has no weekly digests yet (migration 0013): the worker applies it when it starts"
        ) from None
    except LedgerError as exc:
        raise _unavailable(f"cannot read the weekly digests: {exc}") from None


async def reports(gw: Gateway, request: Request) -> Response:
    rows = [(r.week, _digest(r.digest), r.has_chart) for r in await _read(gw.ledger.list_weekly_digests())]
    return console._page(request, gw, "reports.html", title="Reports", rows=rows)


async def report(gw: Gateway, request: Request) -> Response:
    week = _week(request)
    row = await _read(gw.ledger.weekly_digest(week))
    if row is None:
        raise _no_digest(week)
    d = _digest(row.digest)
    if d is None:
        raise GatewayError(
            409, f"the digest of {week} in the ledger cannot be read (not a digest this agentic knows)", code="conflict"
        )
    return console._page(
        request, gw, "report.html", title=f"Weekly digest {week}", d=d, chart=row.has_chart, kinds=list(d.decisions),
    )  # fmt: skip


async def report_chart(gw: Gateway, request: Request) -> Response:
    week = _week(request)
    png = await _read(gw.ledger.weekly_digest_chart(week))
    if png is None:
        raise GatewayError(404, f"no chart of {week} in the ledger", code="not_found")
    return Response(png, media_type="image/png", headers={**console.HEADERS, "Cache-Control": "private, max-age=60"})
