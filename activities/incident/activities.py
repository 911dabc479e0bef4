"""Incident activities: the I/O of `IncidentWorkflow` and `ApprovalWorkflow` that is not a tool.

The worker builds one `IncidentActivities(kb, ledger, router, notifier, planner=PlannerConfig(...))`
and registers its bound methods (the planner's prompt is `prompt.py`, its model calls and
bounds `planner.py`; the proposal rules are `agentic_core.proposals`):

| name                    | input          | output         | what it does                                      |
|-------------------------|----------------|----------------|---------------------------------------------------|
| `incident.triage`       | IncidentInput  | TriageResult   | policy.triage; opens the ledger row; alerts        |
| `incident.stage`        | StageInput     | StageResult    | the incident's status in the ledger; new alerts    |
| `incident.recall`       | RecallInput    | RecallResult   | runbooks (levels from the ledger, rendered) + decisions |
| `incident.propose`      | ProposeInput   | ProposeResult  | the planner model, or the best runbook (fallback)  |
| `incident.notify`       | NotifyInput    | NotifyResult   | the notifier (ledger + log by default)             |
| `incident.record`       | RecordInput    | RecordResult   | proposal, decision, outcome, runbook stats, Qdrant |

Every write is safe to retry: the ledger's natural keys (alerts, decisions by approval id,
notifications by the activity's key, runbook counters by event key) or a look-up first
(proposals, outcomes), and the decision's Qdrant point has the incident's id.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from temporalio import activity

from activities.incident.notifier import Notifier
from activities.ledger.errors import ledger_errors
from activities.telemetry import incident as telemetry
from agentic_core import policy
from agentic_core.agents import GuardrailEvent
from agentic_core.alerts import Alert, AlertGroup
from agentic_core.incident import (
    IncidentInput,
    IncidentState,
    IncidentStatus,
    NotifyInput,
    NotifyResult,
    PolicyVerdict,
    ProposeInput,
    ProposeResult,
    RecalledRunbook,
    RecallInput,
    RecallResult,
    RecordInput,
    RecordResult,
    TriageResult,
    plan_hash,
)
from agentic_core.models import (
    DecisionRecord,
    Runbook,
    SearchHit,
    ToolCall,
)

if TYPE_CHECKING:
    from activities.knowledge.kb import KnowledgeBase
    from activities.ledger.repository import Ledger

from activities.incident.planner import Planner, PlannerConfig
from activities.incident.prompt import MAX_DECISION_SUMMARY_CHARS, _short
from agentic_core.evidence import unbound
from agentic_core.incident import StageInput, StageResult, group_annotations, state_occurrence
from agentic_core.learning import learned_runbook

log = logging.getLogger("agentic.incident")

_LEDGER_STATUS: dict[IncidentStatus, str] = {
    IncidentStatus.OPEN: "open",
    IncidentStatus.AWAITING_APPROVAL: "awaiting_approval",
    IncidentStatus.EXECUTING: "executing",
    IncidentStatus.VERIFYING: "verifying",
    IncidentStatus.RESOLVED: "resolved",
    IncidentStatus.FAILED: "failed",
    IncidentStatus.IGNORED: "ignored",
    IncidentStatus.EXPIRED: "expired",
    IncidentStatus.UNKNOWN: "closed",  # actions ran, the outcome is unknown: closed all the same
}


def ledger_status(status: IncidentStatus) -> str:
    return _LEDGER_STATUS[status]


def _activity_key() -> str | None:
    """Stable across retries of one activity: the notifier's deduplication key."""
    try:
        info = activity.info()
    except RuntimeError:
        return None
    return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"


class IncidentActivities:
    """The incident loop's I/O. `router` needs `structured(group, messages, schema)` (the
    `InferenceRouter`); `notifier` defaults to `LedgerNotifier(ledger)`; `planner` bounds the
    model calls and says whether and when to escalate to the cloud (`PlannerConfig`)."""

    def __init__(
        self,
        kb: KnowledgeBase,
        ledger: Ledger,
        router: Any,
        notifier: Notifier | None = None,
        *,
        planner: PlannerConfig | None = None,
    ) -> None:
        from activities.incident.notifier import LedgerNotifier

        self.kb = kb
        self.ledger = ledger
        self.router = router
        self.notifier: Notifier = notifier if notifier is not None else LedgerNotifier(ledger)
        self.planner = Planner(router, planner)

    # -- open, stages ------------------------------------------------------------------------

    async def _record_alerts(self, incident_id: str, alerts: list[Alert]) -> int:
        return await self.ledger.record_alerts(incident_id, alerts)

    @activity.defn(name="incident.triage")
    async def triage(self, inp: IncidentInput) -> TriageResult:
        """Severity, category, route and title (`policy.triage`); opens the incident in the
        ledger with its alerts. The result is in history, so a later change of the triage
        policy never changes a running incident."""
        group = inp.group
        result = policy.triage(group.labels, group_annotations(group))
        async with ledger_errors("incident.triage"):
            await self.ledger.upsert_incident(
                inp.incident_id,
                group_key=group.group_key,
                status="open",
                severity=result.severity.value,
                category=result.category.value,
                title=result.title,
            )
            await self._record_alerts(inp.incident_id, group.alerts)
        telemetry.triaged(inp.incident_id, result)
        return result

    @activity.defn(name="incident.stage")
    async def stage(self, inp: StageInput) -> StageResult:
        """The incident's status in the ledger, and the alerts that arrived or changed since."""
        async with ledger_errors("incident.stage"):
            await self.ledger.upsert_incident(inp.incident_id, status=ledger_status(inp.status))  # type: ignore[arg-type]
            n = await self._record_alerts(inp.incident_id, inp.alerts)
        return StageResult(alerts_recorded=n)

    # -- recall ------------------------------------------------------------------------------

    @activity.defn(name="incident.recall")
    async def recall(self, inp: RecallInput) -> RecallResult:
        """Runbooks for the alert, best first (label matches first), with their level from the
        ledger (the trust record; the index may lag) and their actions rendered for the alert's
        labels; plus past decisions on similar alerts.

        A runbook whose templates name a label the alert lacks keeps its place with no actions
        (it cannot be run as written); the reason is logged. Its evidence calls are rendered one
        by one: one that cannot be rendered is left out with the reason (`evidence_skipped`).
        """
        hits = await self.kb.search_runbooks(inp.text, limit=inp.limit, labels=inp.labels or None)
        found: list[tuple[SearchHit, Runbook]] = []
        for hit in hits:
            try:
                found.append((hit, Runbook.model_validate(hit.payload["runbook"])))
            except (KeyError, ValidationError) as exc:
                log.warning("recall %s: hit %s has no usable runbook payload: %s", inp.incident_id, hit.id, exc)
        async with ledger_errors("incident.recall"):
            levels = await self.ledger.runbook_levels([rb.id for _, rb in found])
        runbooks: list[RecalledRunbook] = []
        for hit, rb in found:
            level = levels.get(rb.id, rb.automation_level)
            try:
                actions = policy.render_actions(rb.actions, inp.labels)
            except ValueError as exc:
                log.warning("recall %s: runbook %s cannot be rendered: %s", inp.incident_id, rb.id, exc)
                actions = []
            evidence, evidence_skipped = policy.render_evidence(rb.evidence, inp.labels)
            runbooks.append(
                RecalledRunbook(
                    id=rb.id,
                    title=rb.title,
                    score=hit.score,
                    automation_level=level,
                    actions=actions,
                    matched_labels=bool(hit.payload.get("matched_labels", False)),
                    allow_namespaces=list(rb.allow_namespaces),
                    evidence=evidence,
                    evidence_skipped=evidence_skipped,
                )
            )
        decisions = await self.kb.search_decisions(inp.text, limit=inp.limit) if inp.text.strip() else []
        recalled = RecallResult(runbooks=runbooks, decisions=decisions)
        telemetry.recalled(inp.incident_id, recalled)
        return recalled

    # -- propose -----------------------------------------------------------------------------

    @activity.defn(name="incident.propose")
    async def propose(self, inp: ProposeInput) -> ProposeResult:
        """The planner's proposal (`Planner.propose`: the local model, the cloud when configured,
        or the best runbook's plan). Each action a model proposed that could not be used (a tool
        not on the incident agent's list, bad arguments) is a `tool_refused` guardrail event: the
        model asked for it (perhaps told to by the alert's text) and it never reached the guard."""
        rejected: list[tuple[int, ToolCall, str]] = []
        result = await self.planner.propose(inp, rejected)
        if rejected and self.ledger is not None:
            await self._record_rejected(inp, rejected, result)
        telemetry.proposed(inp.incident_id, result.proposal.runbook_id, result)
        return result

    async def _record_rejected(
        self, inp: ProposeInput, rejected: list[tuple[int, ToolCall, str]], result: ProposeResult
    ) -> None:
        """The rejected actions as guardrail events, once per run and call. Best effort: an
        unreachable ledger is logged, not retried (a retry would ask the model again)."""
        from activities.ledger.db import LedgerError

        try:
            run = activity.info().workflow_run_id  # the incident's run: stable across attempts
        except RuntimeError:
            run = "-"
        then = f"the plan is runbook {result.proposal.runbook_id}'s" if result.proposal.runbook_id else "nothing runs"
        for _index, call, reason in rejected:
            try:
                await self.ledger.record_guardrail_event(
                    GuardrailEvent(
                        key=f"{inp.incident_id}/{run}/propose/{plan_hash([call])[:16]}",
                        kind="tool_refused",
                        agent="incident",
                        subject=inp.incident_id,
                        tool=call.tool,
                        detail=f"the model proposed it, not used: {reason} ({then})",
                    )
                )
            except LedgerError as exc:
                log.warning("propose %s: guardrail event not recorded: %s", inp.incident_id, exc)

    # -- notify ------------------------------------------------------------------------------

    @activity.defn(name="incident.notify")
    async def notify(self, inp: NotifyInput) -> NotifyResult:
        try:
            async with ledger_errors("incident.notify"):
                result = await self.notifier.notify(inp, key=_activity_key())
        except BaseException:
            telemetry.notified(inp, "error")
            raise
        telemetry.notified(inp, "ok")
        return result

    # -- record ------------------------------------------------------------------------------

    @activity.defn(name="incident.record")
    async def record(self, inp: RecordInput) -> RecordResult:
        """Everything the incident learned: final status, alerts, proposal, decision, outcome and
        the runbook's counters in the ledger, and the decision in Qdrant for the next recall.

        Keys carry the run's occurrence (`<incident>/<occurrence>/decision` and `/execution` for
        the runbook counters, the Qdrant point, `<incident>-automatic-<occurrence>` for an
        automatic decision), so a retried activity counts once and a recurrence of the alert
        group counts again. Proposals and outcomes have no natural key: a retry finds the rows
        this run wrote (since its start) and does not write them twice. An execution counts
        for the runbook only when the plan that ran is the runbook's own plan, rendered for
        this alert.
        """
        state, group = inp.state, inp.group
        iid = state.incident_id
        scope = f"{iid}/{state_occurrence(state)}"
        since = state.stages[0].started_at if state.stages else None
        learned = learned_runbook(state, group)
        if learned is not None:
            # A novel approved plan: a new manual runbook, indexed for the next similar alert,
            # and counted below as this incident's runbook (its first execution).
            async with ledger_errors("incident.record"):
                await self.ledger.upsert_runbook(
                    learned, changed_by=(state.decision.by if state.decision else None) or "approval"
                )
            await self.kb.upsert_runbooks([learned])
            state = state.model_copy(update={"runbook_id": learned.id})
        async with ledger_errors("incident.record"):
            await self.ledger.upsert_incident(
                iid,
                group_key=group.group_key,
                status=ledger_status(state.status),  # type: ignore[arg-type]
                severity=state.severity.value if state.severity else None,
                category=state.category.value if state.category else None,
                title=state.title or None,
            )
            await self._record_alerts(iid, group.alerts)  # the merged group: every alert's last state
            proposal_id = await self._record_proposal(state, since)
            choice, decided_by = _choice(state)
            if choice is not None:
                dec = state.decision
                await self.ledger.record_decision(
                    iid,
                    choice,  # type: ignore[arg-type]
                    proposal_id=proposal_id,
                    approval_id=dec.approval_id if dec is not None else f"{iid}-automatic-{state_occurrence(state)}",
                    runbook_id=state.runbook_id,
                    decided_by=decided_by,
                    plan_hash=(dec.plan_hash or None) if dec is not None else state.plan_hash,
                    arguments=[a.model_dump(mode="json") for a in (dec.plan if dec is not None else state.plan)],
                    decided_at=dec.decided_at if dec is not None else None,
                )
            if state.outcome is not None:
                existing = [o for o in await self.ledger.list_outcomes(iid) if since is None or o.verified_at >= since]
                if not any(o.result == state.outcome.outcome and o.detail == state.outcome.detail for o in existing):
                    await self.ledger.record_outcome(iid, state.outcome.outcome, state.outcome.detail)
            if state.runbook_id:
                await self._record_stats(state, group, choice, scope, learned=learned is not None)
        indexed = False
        if choice is not None:
            await self.kb.upsert_decision(
                DecisionRecord(
                    id=f"{scope}/decision",
                    incident_id=iid,
                    # the alert's summary: outside text, recalled into later prompts (as quoted
                    # data) and shown in lists, so bounded
                    summary=_short(
                        state.title or (state.proposal.summary if state.proposal else iid), MAX_DECISION_SUMMARY_CHARS
                    ),
                    runbook_id=state.runbook_id,
                    actions=list(state.plan),
                    decision=choice,  # type: ignore[arg-type]
                    decided_by=decided_by,
                    outcome=state.outcome.outcome if state.outcome is not None else "pending",
                    labels=dict(group.labels),
                )
            )
            indexed = True
        telemetry.recorded(state, choice)
        return RecordResult(decision_indexed=indexed, learned_runbook_id=learned.id if learned is not None else None)

    async def _record_proposal(self, state: IncidentState, since: datetime | None) -> int | None:
        if state.proposal is None:
            return None
        p = state.proposal
        source = state.proposal_source or "llm"
        for row in await self.ledger.list_proposals(state.incident_id):
            if (since is None or row.created_at >= since) and row.source == source and row.to_proposal() == p:
                return row.id  # recorded by an earlier attempt
        row = await self.ledger.record_proposal(
            state.incident_id, p, source=source, fallback=source == "fallback", redactions=state.proposal_redactions
        )
        return row.id

    async def _record_stats(
        self, state: IncidentState, group: AlertGroup, choice: str | None, scope: str, *, learned: bool = False
    ) -> None:
        from activities.ledger.db import NotFound

        assert state.runbook_id is not None
        rid, iid = state.runbook_id, state.incident_id
        try:
            if choice is not None and choice != "acknowledged":  # a human saw it: says nothing of the runbook
                await self.ledger.record_decision_stat(rid, choice, event_key=f"{scope}/decision")  # type: ignore[arg-type]
            ran = [a for a in state.actions if a.status in ("succeeded", "failed")]
            # A modified plan is not its runbook's plan, unless the runbook was learned from it.
            if not ran or choice not in (
                ("approved", "automatic", "modified") if learned else ("approved", "automatic")
            ):
                return
            failures = [a for a in state.actions if a.status == "failed"]
            failed = bool(failures)
            # The platform could not run an action (its tool server unreachable or timed out):
            # counted apart, never as a failure of the runbook's remedy.
            infra = failed and all(a.infrastructure for a in failures)
            outcome = state.outcome.outcome if state.outcome is not None else "unknown"
            if not failed and outcome == "unknown":
                return  # ran, but nobody knows whether it helped: no evidence either way
            row = await self.ledger.get_runbook(rid)
            if row is None:
                return
            try:
                own_plan = policy.render_actions(row.actions, group.labels)
            except ValueError:
                return
            if plan_hash(own_plan) != plan_hash(unbound(state.plan)):  # a GitOps action's `base` aside
                return  # another plan ran under this runbook's name: not its record
            if infra:
                await self.ledger.record_infra_error(rid, event_key=f"{scope}/execution")
                return
            await self.ledger.record_execution(
                rid, success=not failed and outcome == "success", event_key=f"{scope}/execution"
            )
        except NotFound:
            log.info("record %s: runbook %s is not in the ledger: no stats", iid, rid)


def _choice(state: IncidentState) -> tuple[str | None, str | None]:
    """The decision to record: the human's answer, "automatic" for a run-then-notify plan, or
    None when nothing was decided (nothing to do, or the alert resolved before an answer)."""
    if state.decision is not None:
        return state.decision.choice, state.decision.by
    if state.verdict == PolicyVerdict.RUN_THEN_NOTIFY and state.actions:
        return "automatic", None
    return None, None


__all__ = ["IncidentActivities", "ledger_status"]
