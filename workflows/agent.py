"""`AgentWorkflow`: one request to an agent, from routing to the answer (docs/agents.md).

1. **route**: the request's agent (`RouteMethod.EXPLICIT`), else the `agents.route` activity.
   Search attributes `AgentName`, `RouteMethod`, `RouteScore`; `AgentStatus` follows the run.
2. **start** (`agents.start_run`): the run in the ledger; the agent's configured limits (a caller's
   limits may only tighten them), or, for an agent this platform does not run (coding without
   AGENTIC_REPOS, web without its server), the answer saying which settings enable it
   (`NOT_CONFIGURED`). A request deeper than `max_delegation_depth` ends at once.
3. **tools**: the agent's allow-list as the servers offer it, listed by `agents.start_run` in the
   same local activity (`START_LISTS_TOOLS_PATCH`), else (it could not, or a run from before the
   patch) by `tools.list_tools`.
4. **the loop**: a model turn (`agents.model_turn`: the context is built from the ledger's
   transcript within `max_context_tokens`, one result shown up to `max_result_chars`), then each
   tool call it asked for, in order:
   - the limits: wall clock (`workflow.now()`, time waiting for a human not counted), the
     tool-call budget, a call the model wrote badly (`problem`), an identical call repeated more
     than `max_identical_calls` times: each refused with a reason the model sees next turn;
   - `tools.guard` (allow-list and schema; fail closed when it cannot be reached);
   - a read-only tool runs through `tools.call` (the whole result stored in the ledger, a
     `ResultRef` back); a tool that changes anything becomes a child `ApprovalWorkflow` question
     about that exact call (approvers from the request, `AWAITING_APPROVAL`, `approval_id` in the
     progress) and, approved, runs once through `tools.execute` (idempotency key per run and
     call); not approved (ignored, expired) is a result saying so.
   A turn without tool calls is the answer. The last turn a limit allows (`max_steps`, or the
   tool-call budget spent) is asked without tools: answer with what you have.
5. **finish** (`agents.finish_run`): answer, status and limit in the ledger.

Every refusal and limit hit is a guardrail event (`guardrails.record`, best effort: recording
never fails the run). A limit that ends the run makes it `LIMITED`; one that only trims it
(context, result size, a refused call) leaves it `DONE`; either way `limit_hit` names it and the
answer says so. Large things never travel through history: results and turns live in the ledger.
A run that meets an error the code did not expect ends `FAILED` with the error as its answer.
A cancelled run (from outside: a client, `temporal workflow cancel`, the Web UI) ends cancelled,
also while it waits for an approval, after closing its ledger row `CANCELLED` with an answer saying
so (`RUN_CANCEL_PATCH`). A run that ends without its code closing the row (terminated, timed out)
is closed by the reconciler (`workers/agent_runs.py`, docs/agents.md).
The run is bounded (steps, tool calls, wall clock, approval timeout), so it never continues-as-new.

Long because one agent run is one workflow class: its loop, the path of one tool call (limits,
guard, read, question, write) and its endings share the run's state (progress, counters, the
limits hit), and the order of the commands they issue is the history every running agent
replays; splitting the class would scatter that order across files. Shared helpers are
`workflows.stages`; the contracts and names are `agentic_core.agents`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    TimeoutError,
    is_cancelled_exception,
)
from temporalio.workflow import ReadOnlyContextError

from workflows.stages import close_given_up, error_message, short_stage

with workflow.unsafe.imports_passed_through():
    from activities.incident.activities import IncidentActivities
    from activities.tools import ERR_REFUSED, EXECUTE, GUARD, LIST_TOOLS
    from agentic_core import search_attributes as sa
    from agentic_core.agents import (
        ACTIVITY_FINISH_RUN,
        ACTIVITY_MODEL_TURN,
        ACTIVITY_ROUTE,
        ACTIVITY_START_RUN,
        ACTIVITY_TOOL_CALL,
        AGENT_APPROVAL_CHOICES,
        AGENT_APPROVAL_ROUTE,
        GUARDRAIL_RECORD,
        LIMIT_NAMES,
        QUERY_AGENT_PROGRESS,
        AgentLimits,
        AgentProgress,
        AgentRequest,
        AgentResult,
        AgentStatus,
        AgentToolCall,
        FinishRunInput,
        GuardrailEvent,
        GuardrailKind,
        ModelTurnInput,
        ModelTurnResult,
        Route,
        RouteInput,
        RouteMethod,
        StartRunInput,
        StartRunResult,
        ToolCallInput,
        ToolCallRecord,
        ToolCallResult,
        agent_action_key,
        agent_approval_id,
        call_signature,
    )
    from agentic_core.incident import (
        ActionResult,
        ApprovalRequest,
        ApprovalResult,
        ExecuteInput,
        GiveUpInput,
        GuardInput,
        GuardResult,
        ListToolsInput,
        ListToolsResult,
        NotifyInput,
        NotifyKind,
        ToolSpec,
        plan_hash,
    )
    from agentic_core.models import ToolCall
    from workflows.approval import ApprovalWorkflow

_SHORT = timedelta(seconds=30)
_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=20))
ROUTE_TIMEOUT = timedelta(seconds=60)
MODEL_TURN_TIMEOUT = timedelta(seconds=180)  # one model call (at most 120 s) and the ledger around it
MODEL_TURN_RETRY = RetryPolicy(
    maximum_attempts=3, initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=10)
)
TOOL_TIMEOUT = timedelta(seconds=150)  # one MCP call (at most 120 s) and storing its result
TOOL_HEARTBEAT = timedelta(seconds=30)  # a killed worker's call is retried within this
TOOL_RETRY = RetryPolicy(
    maximum_attempts=3, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)
)
EXECUTE_TIMEOUT = timedelta(minutes=5)
EXECUTE_RETRY = RetryPolicy(
    maximum_attempts=3, initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30)
)
GUARDRAIL_TIMEOUT = timedelta(seconds=10)
GUARDRAIL_RETRY = RetryPolicy(
    maximum_attempts=3, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5)
)
MIN_ACTIVITY_WINDOW = timedelta(seconds=5)  # an activity's schedule-to-close window, at least
MAX_ERROR_CHARS = 500
# An approved write whose `tools.execute` gave up (its retries ran out) closes its ledger row with
# `tools.give_up`: the row ends `failed` with the reason, never `running` forever (#17)
WRITE_GIVE_UP_PATCH = "agent-write-give-up"
# A cancellation of the run (a client's `cancel`, `temporal workflow cancel`, the Web UI) ends it
# cancelled also while it waits for an approval (the child cancelled with it is no "expired"
# answer), and the ledger's row is closed first: `cancelled` (before migration 0014 the ledger had
# no such status and the row said `failed`; the status is only the finish activity's input, which
# replay does not compare), the answer saying it was cancelled, never `running` or
# `awaiting_approval` forever. Decided where the cancellation is met (only cancelled runs reach it).
RUN_CANCEL_PATCH = "agent-run-cancel"
# `agents.start_run` lists the agent's tools too (`StartRunInput.list_tools`), so the first
# workflow task runs one local activity, not two (each hop back through the SDK's core to a new
# activation cost ~4 ms of the gateway's time to first token); when it could not list them
# (`StartRunResult.tools` None: no catalogue, a failure, too slow), `tools.list_tools` as before,
# with its retries and its note. Decided once, first thing in the run (its first workflow task).
START_LISTS_TOOLS_PATCH = "agent-start-lists-tools"
# Limits that end the run (LIMITED); the others only trim it (it may still be DONE).
ENDING_LIMITS = frozenset({"max_steps", "max_wall_s", "max_tool_calls", "max_delegation_depth"})


class _WallClock(Exception):
    """The wall-clock limit passed while waiting for an activity."""


@workflow.defn
class AgentWorkflow:
    @workflow.init
    def __init__(self, req: AgentRequest) -> None:
        self._req = req
        self._p = AgentProgress(run_id=workflow.info().workflow_id, request_id=req.request_id, agent=req.agent)
        self._limits = AgentLimits()
        self._paused = timedelta(0)  # time spent waiting for a human (not counted in the wall clock)
        self._signatures: dict[str, int] = {}  # identical calls: how often each was asked for
        self._counted = 0  # tool calls that counted against the budget
        self._writes = 0  # approved writes run (the action index of the next one)
        self._notes: list[str] = []  # what each limit hit did, for the answer
        self._ended_by: str | None = None  # the limit that ended the run
        self._guardrails: list[Any] = []  # guardrail events in flight (best effort)
        self._failing = False

    @workflow.query(name=QUERY_AGENT_PROGRESS)
    def progress(self) -> AgentProgress:
        return self._p

    # -- the run ---------------------------------------------------------------------------------

    @workflow.run
    async def run(self, req: AgentRequest) -> AgentResult:
        self._p.started_at = workflow.now()
        try:
            return await self._run(req)
        except (workflow.NondeterminismError, ReadOnlyContextError):
            raise  # replay problems are the worker's to report, not the run's
        except asyncio.CancelledError:
            await self._close_cancelled()
            raise
        except Exception as exc:
            if is_cancelled_exception(exc):
                await self._close_cancelled()
                raise
            if self._failing:
                raise
            self._failing = True
            detail = f"the run could not go on: {error_message(exc)}"[:MAX_ERROR_CHARS]
            workflow.logger.error("agent run %s: %s", self._p.run_id, detail)
            return await self._finish(AgentStatus.FAILED, detail, [])

    async def _run(self, req: AgentRequest) -> AgentResult:
        p = self._p
        # in the run's first workflow task, before any activity (docs/upgrades.md)
        lists_tools = workflow.patched(START_LISTS_TOOLS_PATCH)
        self._set_status(AgentStatus.ROUTING if req.agent is None else AgentStatus.RUNNING)
        route = await self._route(req)
        if route is None:
            return await self._finish(
                AgentStatus.FAILED,
                "The request could not be routed to an agent (the router is not available); name the agent "
                "(`agentic agents ask --agent observability TEXT`).",
                [],
            )
        start: StartRunResult = await short_stage(
            True,
            ACTIVITY_START_RUN,
            StartRunInput(run_id=p.run_id, request=req, route=route, agent=route.agent, list_tools=lists_tools),
            start_to_close_timeout=_SHORT,
            retry_policy=_RETRY,
            result_type=StartRunResult,
        )
        if not start.configured:
            return await self._finish(AgentStatus.NOT_CONFIGURED, start.answer, [])
        self._limits = limits = start.limits.tightened(req.limits)
        if req.depth > limits.max_delegation_depth:
            self._limit(
                "max_delegation_depth",
                f"this request is {req.depth} agents deep and the limit is {limits.max_delegation_depth}; not run",
            )
            return await self._finish(AgentStatus.LIMITED, "", [])
        self._set_status(AgentStatus.RUNNING)
        if lists_tools and start.tools is not None:
            tools = start.tools
        else:
            tools = await self._tools(route.agent)
        return await self._loop(route.agent, tools, limits)

    async def _loop(self, agent: str, tools: list[ToolSpec], limits: AgentLimits) -> AgentResult:
        p = self._p
        specs = {t.name: t for t in tools}
        # named only: the model turn takes the schemas from the gateway (they stay out of history)
        offered: list[dict[str, Any]] = [{"name": t.name} for t in tools]
        results: list[ToolCallRecord] = []
        final_reason = ""
        for step in range(1, limits.max_steps + 1):
            if self._wall_passed():
                return await self._wall_clock_end(results)
            if step == limits.max_steps and not final_reason:
                final_reason = f"the steps limit: {limits.max_steps} model turns"
                if step > 1:
                    self._limit("max_steps", f"the run was stopped at {limits.max_steps} model turns")
            try:
                turn = await self._model_turn(
                    ModelTurnInput(
                        run_id=p.run_id,
                        agent=agent,
                        step=step,
                        tools=offered,
                        limits=limits,
                        final=bool(final_reason),
                        final_reason=final_reason,
                        results=results,
                        stream=self._req.stream,
                    )
                )
            except _WallClock:
                return await self._wall_clock_end(results)
            except ActivityError as exc:
                if is_cancelled_exception(exc):
                    raise
                return await self._finish(
                    AgentStatus.FAILED, f"The model could not answer: {error_message(exc)}"[:MAX_ERROR_CHARS], results
                )
            results = []
            p.steps = step
            p.answer = turn.text
            p.model = turn.model
            if turn.trimmed:
                self._limit(
                    "max_context_tokens",
                    f"older tool results were dropped to fit {limits.max_context_tokens} tokens",
                    key="max_context_tokens",
                )
            if turn.truncated:
                self._limit(
                    "max_result_chars",
                    f"results longer than {limits.max_result_chars} characters were shown cut, said so",
                    key="max_result_chars",
                )
            if final_reason or not turn.tool_calls:
                status = AgentStatus.LIMITED if self._ended_by else AgentStatus.DONE
                return await self._finish(status, turn.text, [])
            for index, call in enumerate(turn.tool_calls):
                rec = await self._tool_call(agent, step, index, call, specs, limits)
                results.append(rec)
            if self._wall_passed():
                return await self._wall_clock_end(results)
            if self._counted >= limits.max_tool_calls and not final_reason:
                final_reason = f"the tool-call budget: {limits.max_tool_calls} calls"
                self._limit("max_tool_calls", f"the run was stopped after {limits.max_tool_calls} tool calls")
        # not reached: the last step is always final
        return await self._finish(AgentStatus.LIMITED, p.answer, results)

    # -- routing and tools -----------------------------------------------------------------------

    async def _route(self, req: AgentRequest) -> Route | None:
        p = self._p
        if req.agent is not None:
            route = Route(agent=req.agent, score=1.0, method=RouteMethod.EXPLICIT)
        else:
            try:
                route = await workflow.execute_activity(
                    ACTIVITY_ROUTE,
                    RouteInput(text=req.text),
                    result_type=Route,
                    task_queue=req.model_queue,  # its LLM fallback is a model call
                    start_to_close_timeout=ROUTE_TIMEOUT,
                    retry_policy=_RETRY,
                )
            except ActivityError as exc:
                if is_cancelled_exception(exc):
                    raise
                workflow.logger.warning("agent run %s: routing failed: %s", p.run_id, error_message(exc))
                return None
        p.route, p.agent = route, route.agent
        workflow.upsert_search_attributes(
            [
                sa.AGENT_NAME.value_set(sa.keyword(route.agent)),
                sa.ROUTE_METHOD.value_set(route.method.value),
                sa.ROUTE_SCORE.value_set(float(route.score)),
            ]
        )
        return route

    async def _tools(self, agent: str) -> list[ToolSpec]:
        """The tools the agent may call, as the servers offer them; none when they cannot be listed
        (the model then answers from the request alone, and the answer says so)."""
        try:
            listed: ListToolsResult = await short_stage(
                True,
                LIST_TOOLS,
                ListToolsInput(agent=agent),
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY,
                result_type=ListToolsResult,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            self._notes.append(f"no tools could be listed ({error_message(exc)[:200]})")
            return []
        return listed.tools

    # -- one tool call ---------------------------------------------------------------------------

    async def _tool_call(
        self, agent: str, step: int, index: int, call: AgentToolCall, specs: dict[str, ToolSpec], limits: AgentLimits
    ) -> ToolCallRecord:
        p = self._p
        spec = specs.get(call.tool)
        rec = ToolCallRecord(step=step, call=call, status="limited", mutating=bool(spec and spec.mutating))
        p.tool_calls.append(rec)
        if self._wall_passed():
            rec.reason = f"not run: the wall-clock limit ({limits.max_wall_s} s) was reached"
            return rec
        if self._counted >= limits.max_tool_calls:
            rec.reason = f"not run: the tool-call budget ({limits.max_tool_calls} calls) is spent"
            self._limit("max_tool_calls", f"calls beyond {limits.max_tool_calls} were not run", tool=call.tool)
            return rec
        self._counted += 1
        if call.problem:
            return self._refuse(rec, call.problem, "tool_refused")
        signature = call_signature(call.tool, call.arguments)
        seen = self._signatures.get(signature, 0)
        if seen >= limits.max_identical_calls:
            rec.reason = (
                f"not run: the same call ({call.tool} with the same arguments) was already made {seen} time(s); "
                "its result is above. Use it, or call with other arguments."
            )
            self._limit(
                "max_identical_calls",
                f"a repeated identical call to {call.tool} was refused",
                tool=call.tool,
                key=f"max_identical_calls/{step}/{index}",
            )
            return rec
        self._signatures[signature] = seen + 1
        refusal = await self._guard(agent, call)
        if refusal is not None:
            return self._refuse(rec, refusal, "tool_refused")
        if spec is not None and spec.mutating:
            return await self._ask_and_execute(agent, step, index, rec)
        return await self._read(agent, step, rec, limits)

    def _refuse(self, rec: ToolCallRecord, reason: str, kind: GuardrailKind) -> ToolCallRecord:
        rec.status = "refused"
        rec.reason = reason
        self._guardrail(kind, f"{rec.step}/{rec.call.call_id}", reason, tool=rec.call.tool)
        return rec

    async def _guard(self, agent: str, call: AgentToolCall) -> str | None:
        """None when the guard allows the call, else why not (fail closed)."""
        try:
            res: GuardResult = await short_stage(
                True,
                GUARD,
                GuardInput(
                    incident_id=self._p.run_id,
                    actions=[ToolCall(tool=call.tool, arguments=call.arguments)],
                    agent=agent,
                    agent_run=True,
                ),
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY,
                result_type=GuardResult,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            return f"the tool guard could not be reached ({error_message(exc)[:200]}); not run (fail closed)"
        if not res.actions or not res.actions[0].allowed:
            return res.actions[0].reason if res.actions else "the guard gave no verdict; not run"
        return None

    async def _read(self, agent: str, step: int, rec: ToolCallRecord, limits: AgentLimits) -> ToolCallRecord:
        rec.status = "running"
        try:
            res: ToolCallResult = await workflow.execute_activity(
                ACTIVITY_TOOL_CALL,
                ToolCallInput(
                    run_id=self._p.run_id,
                    agent=agent,
                    step=step,
                    call=rec.call,
                    max_result_chars=limits.max_result_chars,
                ),
                result_type=ToolCallResult,
                task_queue=self._req.tools_queue,
                start_to_close_timeout=TOOL_TIMEOUT,
                schedule_to_close_timeout=self._window(TOOL_TIMEOUT * 3),
                heartbeat_timeout=TOOL_HEARTBEAT,
                retry_policy=TOOL_RETRY,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            if self._wall_passed():
                rec.status, rec.reason = "limited", f"stopped: the wall-clock limit ({limits.max_wall_s} s) was reached"
            else:
                rec.status, rec.reason = "error", f"the call failed: {error_message(exc)}"[:MAX_ERROR_CHARS]
            return rec
        rec.result = res.result
        rec.reason = res.reason
        if res.status == "refused":
            return self._refuse(rec, res.reason, "tool_refused")
        rec.status = res.status
        if res.result is not None and res.result.truncated:
            self._limit(
                "max_result_chars",
                f"results longer than {limits.max_result_chars} characters were shown cut, said so",
                tool=rec.call.tool,
                key="max_result_chars",
            )
        return rec

    async def _ask_and_execute(self, agent: str, step: int, index: int, rec: ToolCallRecord) -> ToolCallRecord:
        """A write: a human is asked about this exact call; approved, it runs once."""
        p, req, limits = self._p, self._req, self._limits
        call = rec.call
        aid = agent_approval_id(p.run_id, step, index)
        plan = [ToolCall(tool=call.tool, arguments=call.arguments)]
        digest = plan_hash(plan)
        question = (
            f"The {agent} agent asks to run {call.tool} {json.dumps(call.arguments, sort_keys=True)} "
            f"(request by {req.requested_by}: {req.text[:300]!r})."
        )
        rec.status, rec.approval_id, rec.reason = "awaiting_approval", aid, "waiting for a human"
        p.approval_id = aid
        self._set_status(AgentStatus.AWAITING_APPROVAL)
        asked_at = workflow.now()
        await self._notify_question(aid, question, plan, digest)
        try:
            handle = await workflow.start_child_workflow(
                ApprovalWorkflow.run,
                ApprovalRequest(
                    approval_id=aid,
                    incident_id=p.run_id,
                    question=question,
                    plan=plan,
                    plan_hash=digest,
                    route=AGENT_APPROVAL_ROUTE,
                    approvers=list(req.approvers),
                    remind_after_s=0,
                    escalate_after_s=0,
                    expire_after_s=limits.approval_timeout_s,
                    choices=list(AGENT_APPROVAL_CHOICES),
                    kind="agent",
                ),
                id=aid,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
            )
            answer: ApprovalResult = await handle
        except ChildWorkflowError as exc:
            if self._cancelled(exc):
                rec.status, rec.reason = "denied", "not run: the run was cancelled while it waited for an answer"
                raise  # the run's own cancellation cancelled the question: the run ends cancelled
            answer = ApprovalResult(approval_id=aid, choice="expired", decided_at=workflow.now())
            workflow.logger.warning("agent run %s: approval %s failed: %s", p.run_id, aid, error_message(exc))
        self._paused += workflow.now() - asked_at
        p.approval_id = None
        self._set_status(AgentStatus.RUNNING)
        if answer.choice != "approved":
            rec.status = "denied"
            rec.reason = (
                f"not run: nobody approved it within {limits.approval_timeout_s} s"
                if answer.choice == "expired"
                else f"not run: {answer.by or 'a human'} did not approve it ({answer.choice})"
            )
            self._guardrail("write_denied", f"{step}/{call.call_id}", rec.reason, tool=call.tool)
            return rec
        rec.status, rec.reason = "approved", f"approved by {answer.by}; running"
        key = agent_action_key(p.run_id, step, index)
        try:
            res: ActionResult = await workflow.execute_activity(
                EXECUTE,
                ExecuteInput(
                    incident_id=p.run_id,
                    index=self._writes,
                    call=plan[0],
                    idempotency_key=key,
                    agent=agent,
                    agent_run=True,
                ),
                result_type=ActionResult,
                task_queue=self._req.tools_queue,
                start_to_close_timeout=EXECUTE_TIMEOUT,
                heartbeat_timeout=TOOL_HEARTBEAT,
                retry_policy=EXECUTE_RETRY,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            refused = isinstance(exc.cause, ApplicationError) and exc.cause.type == ERR_REFUSED
            res = ActionResult(
                index=self._writes,
                tool=call.tool,
                status="refused" if refused else "failed",
                error=error_message(exc),
            )
            if not refused:
                res = await self._give_up_write(self._writes, plan[0], key, res)
        self._writes += 1
        if res.status == "succeeded":
            rec.reason = f"approved by {answer.by} and run: {res.output}"[: MAX_ERROR_CHARS * 4]
        else:
            rec.status = "error"
            rec.reason = f"approved by {answer.by}; {res.status}: {res.error or res.output}"[: MAX_ERROR_CHARS * 4]
        return rec

    async def _give_up_write(self, index: int, call: ToolCall, key: str, res: ActionResult) -> ActionResult:
        """`tools.execute` gave up on an approved write: close its ledger row (`tools.give_up`, on
        the run's own queue: the tools workers may be what is gone; `WRITE_GIVE_UP_PATCH`). The
        recorded result comes back (another attempt may have finished it); if the ledger cannot
        be reached, `res`."""
        if not workflow.patched(WRITE_GIVE_UP_PATCH):
            return res
        closed = await close_given_up(
            GiveUpInput(
                incident_id=self._p.run_id,
                index=index,
                call=call,
                idempotency_key=key,
                reason=res.error,
                agent_run=True,
            ),
            what=f"agent run {self._p.run_id}: write {key}",
            start_to_close_timeout=_SHORT,
            retry_policy=_RETRY,
        )
        return res if closed is None else closed

    async def _notify_question(self, aid: str, question: str, plan: list[ToolCall], digest: str) -> None:
        """The question on the channels (Telegram buttons, the ledger); best effort."""
        try:
            await short_stage(
                True,
                IncidentActivities.notify,
                NotifyInput(
                    incident_id=None,
                    kind=NotifyKind.QUESTION,
                    route=AGENT_APPROVAL_ROUTE,
                    text=question,
                    approval_id=aid,
                    plan=plan,
                    plan_hash=digest,
                    choices=list(AGENT_APPROVAL_CHOICES),
                ),
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            workflow.logger.warning("agent run %s: the question was not posted: %s", self._p.run_id, exc)

    # -- the model -------------------------------------------------------------------------------

    async def _model_turn(self, inp: ModelTurnInput) -> ModelTurnResult:
        try:
            result: ModelTurnResult = await workflow.execute_activity(
                ACTIVITY_MODEL_TURN,
                inp,
                result_type=ModelTurnResult,
                task_queue=self._req.model_queue,
                start_to_close_timeout=MODEL_TURN_TIMEOUT,
                schedule_to_close_timeout=self._window(MODEL_TURN_TIMEOUT * 2),
                heartbeat_timeout=TOOL_HEARTBEAT,
                retry_policy=MODEL_TURN_RETRY,
            )
        except ActivityError as exc:
            if isinstance(exc.cause, TimeoutError) and self._wall_passed():
                raise _WallClock from exc
            raise
        return result

    # -- cancellation ----------------------------------------------------------------------------

    def _cancelled(self, exc: BaseException) -> bool:
        """Whether `exc` is this run's own cancellation (requested from outside: a client's
        `cancel`, `temporal workflow cancel`, the Web UI) on a run that ends on it
        (`RUN_CANCEL_PATCH`; a run from before the patch went on as it did)."""
        return (
            is_cancelled_exception(exc)
            and workflow.cancellation_reason() is not None
            and workflow.patched(RUN_CANCEL_PATCH)
        )

    async def _close_cancelled(self) -> None:
        """The run was cancelled: close its ledger row (`cancelled`, the answer saying so) before
        the cancellation ends the run. Best effort, as `_finish`: a ledger that cannot be reached
        leaves the row open, logged (the reconciler closes it later, `workers/agent_runs.py`)."""
        if self._failing or workflow.cancellation_reason() is None or not workflow.patched(RUN_CANCEL_PATCH):
            return
        self._failing = True  # once, and never the unexpected-error ending after it
        p = self._p
        reason = (workflow.cancellation_reason() or "").strip()
        where = (
            f"while it waited for an answer to {p.approval_id}" if p.approval_id else f"after {p.steps} model turn(s)"
        )
        detail = (
            f"Cancelled {where}" + (f": {reason}" if reason else " (from outside the run)") + "; it did not finish."
        )
        pending = [r for r in p.tool_calls if r.step == p.steps and p.steps > 0]
        try:
            await self._finish(AgentStatus.CANCELLED, detail[:MAX_ERROR_CHARS], pending)
        except Exception as exc:  # the cancellation stands, whatever became of the ledger
            workflow.logger.warning("agent run %s: the cancellation was not recorded: %s", p.run_id, error_message(exc))

    # -- limits, guardrail events, the end -------------------------------------------------------

    def _elapsed(self) -> timedelta:
        assert self._p.started_at is not None
        return workflow.now() - self._p.started_at - self._paused

    def _wall_passed(self) -> bool:
        return self._elapsed() >= timedelta(seconds=self._limits.max_wall_s)

    def _window(self, most: timedelta) -> timedelta:
        """An activity's schedule-to-close window: what is left of the wall clock (at least a few
        seconds, so the activity can start), at most `most`."""
        left = timedelta(seconds=self._limits.max_wall_s) - self._elapsed()
        return max(MIN_ACTIVITY_WINDOW, min(most, left))

    async def _wall_clock_end(self, results: list[ToolCallRecord]) -> AgentResult:
        self._limit("max_wall_s", f"the run was stopped after {self._limits.max_wall_s} s")
        return await self._finish(AgentStatus.LIMITED, self._p.answer, results)

    def _limit(self, name: str, detail: str, *, tool: str | None = None, key: str | None = None) -> None:
        """A limit was hit: named in the progress (`limit_hit`: the one that ended the run, else the
        first that trimmed it), said in the answer, and recorded as a guardrail event."""
        p = self._p
        first_time = name not in p.limits_hit
        if first_time:
            p.limits_hit.append(name)
            self._notes.append(f"{LIMIT_NAMES.get(name, name)} ({detail})")
        if name in ENDING_LIMITS and self._ended_by is None:
            self._ended_by = name
        p.limit_hit = self._ended_by or p.limits_hit[0]
        if first_time or (key is not None and key != name):
            self._guardrail("limit", key or name, f"{name}: {detail}", tool=tool)

    def _guardrail(self, kind: GuardrailKind, key: str, detail: str, *, tool: str | None = None) -> None:
        """Record a refusal or limit hit (`guardrails.record`), without waiting and without ever
        failing the run: `_finish` waits for the ones in flight, whatever becomes of them."""
        p = self._p
        event = GuardrailEvent(
            key=f"{p.run_id}/{kind}/{key}",
            kind=kind,
            agent=p.agent or "",
            subject=p.run_id,
            tool=tool,
            detail=detail[: MAX_ERROR_CHARS * 2],
            at=workflow.now(),
        )
        self._guardrails.append(
            workflow.start_activity(
                GUARDRAIL_RECORD,
                event,
                start_to_close_timeout=GUARDRAIL_TIMEOUT,
                schedule_to_close_timeout=GUARDRAIL_TIMEOUT * 6,
                retry_policy=GUARDRAIL_RETRY,
            )
        )

    def _set_status(self, status: AgentStatus) -> None:
        self._p.status = status
        workflow.upsert_search_attributes([sa.AGENT_STATUS.value_set(status.value)])

    def _answer(self, status: AgentStatus, text: str) -> str:
        text = text.strip()
        if status in (AgentStatus.DONE, AgentStatus.LIMITED) and not text:
            text = "(the model gave no answer)"
        if not self._notes:
            return text
        if self._ended_by is not None:
            head = f"Stopped by a limit: {LIMIT_NAMES.get(self._ended_by, self._ended_by)}."
        else:
            head = "Trimmed by a limit."
        lines = "\n".join(f"- {n}" for n in self._notes)
        return f"{text}\n\n{head}\n{lines}" if text else f"{head}\n{lines}"

    async def _finish(self, status: AgentStatus, text: str, results: list[ToolCallRecord]) -> AgentResult:
        p = self._p
        p.answer = self._answer(status, text)
        p.finished_at = workflow.now()
        p.approval_id = None
        self._set_status(status)
        try:
            await short_stage(
                True,
                ACTIVITY_FINISH_RUN,
                FinishRunInput(
                    run_id=p.run_id,
                    status=status,
                    answer=p.answer,
                    limit_hit=p.limit_hit,
                    steps=p.steps,
                    tool_calls=len(p.tool_calls),
                    results=results,
                ),
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            workflow.logger.warning("agent run %s: the end was not recorded: %s", p.run_id, error_message(exc))
        if self._guardrails:
            done = await asyncio.gather(*self._guardrails, return_exceptions=True)
            for outcome in done:
                if isinstance(outcome, BaseException):
                    if is_cancelled_exception(outcome):
                        raise outcome
                    workflow.logger.warning(
                        "agent run %s: a guardrail event was not recorded: %s", p.run_id, error_message(outcome)
                    )
        return AgentResult(**p.model_dump())
