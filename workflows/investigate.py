"""The investigate stage of `IncidentWorkflow` (workflows/incident.py): before the diagnosis,
gather the evidence the recalled runbook declares, read-only, within a budget. Deterministic;
no I/O (the calls are activities).

1. The runbook's `evidence:` calls, rendered for the alert at recall (`RecalledRunbook.evidence`;
   the ones that cannot be rendered are `skipped`, with the reason).
2. `tools.list_tools` (the incident agent's tools, each with whether it changes something, from
   its MCP annotations): a call whose tool is not offered is `unavailable` (what configures its
   server is said), one that changes something is `refused`, beyond `investigate_max_calls`
   `skipped` (`agentic_core.evidence.sort_calls`). Nothing that changes anything is ever called.
3. The calls that may run, all at once, each through the tool gateway's `tools.execute` under
   its own ledger key (`evidence_key`: apart from the actions' keys, recorded with the tool's
   output, not counted as actions), which checks the allow-list and the arguments' schema again
   (a refusal comes back `refused` with the gateway's reason). Every call ends within the budget
   (`investigate_budget_s`, from the stage's start: its schedule-to-close timeout); one still
   running then is `timed_out`. A failed tool is `failed` with its error. Nothing is hidden.
4. The seam for a capable model (`investigate_model_calls` > 0; refused by the settings with the
   embedded 135M model): the observability agent (`AgentWorkflow`, a child, by its type name)
   may add read calls with the calls and time left; its calls come back as `source="model"`.

The evidence (each call, its status, an excerpt of at most `MAX_EXCERPT_CHARS`) goes into the
incident's state, the planner's input (quoted data: tool output is untrusted) and the diagnosis.

When `tools.call` (the agent runtime's read-only call, which stores a large result in the ledger
and passes it by reference) is registered, step 3 may use it instead: `_gather_one` is the only
place that calls the gateway.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, is_cancelled_exception
from temporalio.exceptions import TimeoutError as TemporalTimeout

from workflows.stages import close_given_up, error_message, short_stage

with workflow.unsafe.imports_passed_through():
    from activities.tools import ERR_REFUSED, ERR_UNAVAILABLE, EXECUTE, LIST_TOOLS
    from agentic_core.agents import AgentLimits, AgentRequest, AgentResult, agent_run_id
    from agentic_core.evidence import (
        EvidenceItem,
        EvidenceStatus,
        base_of,
        diff_of,
        evidence_key,
        evidence_summary,
        excerpt,
        sort_calls,
    )
    from agentic_core.incident import (
        ActionResult,
        ExecuteInput,
        GiveUpInput,
        IncidentConfig,
        ListToolsInput,
        ListToolsResult,
        RecalledRunbook,
    )
    from agentic_core.models import ToolCall

AGENT = "incident"  # whose allow-list the evidence calls are checked against
AGENT_WORKFLOW = "AgentWorkflow"  # the agent runtime's workflow type (workflows/agent.py)
OBSERVABILITY = "observability"
LIST_TIMEOUT = timedelta(seconds=30)
LIST_RETRY = RetryPolicy(
    maximum_attempts=3, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5)
)
# one evidence call: a second attempt when its server could not be reached, within the budget
CALL_RETRY = RetryPolicy(
    maximum_attempts=2, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=2)
)
CALL_HEARTBEAT = timedelta(seconds=30)  # the gateway heartbeats during a call
# An evidence call that gave up (its server unreachable through the retries, or no answer within
# the budget) after the gateway claimed its key: `tools.give_up` closes its ledger row, which ends
# `failed` with the reason, never `running` forever (#17)
EVIDENCE_GIVE_UP_PATCH = "evidence-give-up"
GIVE_UP_TIMEOUT = timedelta(seconds=30)
GIVE_UP_RETRY = RetryPolicy(
    maximum_attempts=5, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=20)
)


class Investigation:
    """One run's investigate stage. `local`: short stages as local activities (the incident's
    `LOCAL_STAGES_PATCH`); `give_up`: the run took `EVIDENCE_GIVE_UP_PATCH` with its start's
    patches (`PATCHES_V10_PATCH`), so a give-up asks for no patch of its own."""

    def __init__(
        self, incident_id: str, occurrence: int, cfg: IncidentConfig, *, local: bool, give_up: bool = False
    ) -> None:
        self.incident_id = incident_id
        self.occurrence = occurrence
        self.cfg = cfg
        self.local = local
        self.give_up = give_up
        self.started: datetime = workflow.now()

    def _left(self) -> float:
        """Seconds left of the budget."""
        return self.cfg.investigate_budget_s - (workflow.now() - self.started).total_seconds()

    async def run(self, runbook: RecalledRunbook | None, question: str) -> tuple[list[EvidenceItem], str]:
        """The evidence, in index order, and the stage's detail. `question`: what the model seam
        is asked to look into (the alert's title)."""
        self.started = workflow.now()
        calls = list(runbook.evidence) if runbook is not None else []
        skipped = list(runbook.evidence_skipped) if runbook is not None else []
        items = [
            EvidenceItem(
                index=len(calls) + i,
                call=ToolCall(tool=reason.split(":", 1)[0] or "?"),
                status="skipped",
                error=f"not rendered for this alert: {reason.split(': ', 1)[-1]}",
            )
            for i, reason in enumerate(skipped)
        ]
        model = self.cfg.investigate_model_calls
        if not calls and not items and not model:
            return [], f"nothing to gather: runbook {runbook.id} declares no evidence" if runbook else "no runbook"
        offered: dict[str, bool] = {}
        listed_error = ""
        if calls or model:
            try:
                listed = await short_stage(
                    self.local,
                    LIST_TOOLS,
                    ListToolsInput(agent=AGENT),
                    result_type=ListToolsResult,
                    start_to_close_timeout=LIST_TIMEOUT,
                    retry_policy=LIST_RETRY,
                )
                offered = {t.name: t.mutating for t in listed.tools}
            except ActivityError as exc:
                if is_cancelled_exception(exc):
                    raise
                listed_error = f"the tool list could not be had: {error_message(exc)}"
        if listed_error:
            items += [
                EvidenceItem(index=i, call=c, status="unavailable", error=listed_error) for i, c in enumerate(calls)
            ]
            run: list[tuple[int, ToolCall]] = []
        else:
            run, not_run = sort_calls(calls, offered, self.cfg.investigate_max_calls)
            items += not_run
        items += await asyncio.gather(*(self._gather_one(i, call) for i, call in run))
        left_calls = self.cfg.investigate_max_calls - len(run)
        note = ""
        if model and not listed_error:
            extra, note = await self._model_evidence(question, min(model, left_calls), len(calls) + len(skipped))
            items += extra
        items.sort(key=lambda e: e.index)
        took = (workflow.now() - self.started).total_seconds()
        detail = f"{evidence_summary(items)} in {took:.1f}s" + (f"; {note}" if note else "")
        return items, detail

    async def _gather_one(self, index: int, call: ToolCall) -> EvidenceItem:
        """One read-only call through the gateway, within what is left of the budget."""
        left = self._left()
        budget = self.cfg.investigate_budget_s
        late = f"no answer within the investigate budget of {budget}s"
        if left < 0.5:
            return EvidenceItem(index=index, call=call, status="timed_out", error=late)
        window = timedelta(seconds=left)
        key = evidence_key(self.incident_id, index, self.occurrence)
        try:
            res: ActionResult = await workflow.execute_activity(
                EXECUTE,
                ExecuteInput(
                    incident_id=self.incident_id,
                    index=index,
                    call=call,
                    idempotency_key=key,
                    agent=AGENT,
                ),
                result_type=ActionResult,
                task_queue=self.cfg.tools_queue,
                schedule_to_close_timeout=window,
                start_to_close_timeout=window,
                heartbeat_timeout=min(CALL_HEARTBEAT, window),
                retry_policy=CALL_RETRY,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            cause = exc.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            timed_out = isinstance(cause, TemporalTimeout)
            if kind != ERR_REFUSED:  # a refusal claims no row; anything else may have left one
                await self._give_up(index, call, key, late if timed_out else error_message(exc))
            if timed_out:
                return EvidenceItem(index=index, call=call, status="timed_out", error=late)
            status: EvidenceStatus = (
                "refused" if kind == ERR_REFUSED else "unavailable" if kind == ERR_UNAVAILABLE else "failed"
            )
            return EvidenceItem(index=index, call=call, status=status, error=excerpt(error_message(exc)))
        if res.status == "succeeded":
            diff, cut = diff_of(res.output)  # a GitOps change's diff (propose_edit): shown whole
            return EvidenceItem(
                index=index,
                call=call,
                status="ok",
                excerpt=excerpt(res.output),
                diff=diff,
                diff_cut=cut,
                base=base_of(res.output) if diff else "",
            )
        ended: EvidenceStatus = "refused" if res.status == "refused" else "failed"
        return EvidenceItem(index=index, call=call, status=ended, error=excerpt(res.error or res.status))

    async def _give_up(self, index: int, call: ToolCall, key: str, reason: str) -> None:
        """The gateway may have claimed this call's key before it gave up: close its ledger row
        (`tools.give_up`, on the incident's own queue: the tools workers may be what is gone;
        `EVIDENCE_GIVE_UP_PATCH`). Best effort: the evidence item says what happened either way."""
        if not (self.give_up or workflow.patched(EVIDENCE_GIVE_UP_PATCH)):
            return
        await close_given_up(
            GiveUpInput(incident_id=self.incident_id, index=index, call=call, idempotency_key=key, reason=reason),
            what=f"incident {self.incident_id}: evidence {key}",
            start_to_close_timeout=GIVE_UP_TIMEOUT,
            retry_policy=GIVE_UP_RETRY,
        )

    async def _model_evidence(self, question: str, calls: int, start: int) -> tuple[list[EvidenceItem], str]:
        """The seam for a capable model: the observability agent adds at most `calls` read calls
        within what is left of the budget. Its failure is said in the stage's detail."""
        left = self._left()
        if calls <= 0 or left < 1:
            return [], "no calls or time left for the model's evidence"
        request = AgentRequest(
            request_id=f"{self.incident_id}-investigate-{self.occurrence}",
            text=f"Gather read-only evidence for this alert (do not change anything): {question}",
            agent=OBSERVABILITY,
            source="incident",
            incident_id=self.incident_id,
            limits=AgentLimits(max_tool_calls=calls, max_steps=calls + 1, max_wall_s=max(1, int(left))),
            model_queue=self.cfg.model_queue,
            tools_queue=self.cfg.tools_queue,
        )
        try:
            result: AgentResult = await workflow.execute_child_workflow(
                AGENT_WORKFLOW,
                request,
                id=agent_run_id(request.request_id),
                result_type=AgentResult,
                execution_timeout=timedelta(seconds=left),
            )
        except ChildWorkflowError as exc:
            return [], f"the model's evidence could not be had: {error_message(exc)}"
        items = []
        statuses: dict[str, EvidenceStatus] = {
            "ok": "ok",
            "error": "failed",
            "refused": "refused",
            "limited": "skipped",
        }
        for i, rec in enumerate(result.tool_calls[:calls]):
            status: EvidenceStatus = statuses.get(rec.status, "refused")  # a write it asked for never ran
            preview = rec.result.preview if rec.result is not None else ""
            items.append(
                EvidenceItem(
                    index=start + i,
                    call=ToolCall(tool=rec.call.tool, arguments=rec.call.arguments),
                    source="model",
                    status=status,
                    excerpt=excerpt(preview) if status == "ok" else "",
                    error="" if status == "ok" else excerpt(rec.reason or rec.status),
                )
            )
        return items, f"the model added {len(items)} call(s)"
