"""`RunbookPromotionWorkflow`: ask a human before a runbook runs on its own.

Started by an incident (after its record) when a runbook's record supports the next level
that needs a human (`trust.needs_approval`: standard), or by the quarterly review. Its id is
`promotion_workflow_id(runbook, level)`, so one question per runbook and level is open at a
time; the incident starts it through the `trust.ask_promotion` activity (a client start, not
a child), so it outlives the incident.

1. `trust.snapshot`: the runbook must still be at `from_level` with a record that supports
   `to_level`; otherwise it ends "stale" without asking (e.g. a failure demoted it meanwhile).
2. `trust.request` records the question; a QUESTION notification (incident_id None, the
   approval id, an empty plan) carries the record; a child `ApprovalWorkflow` (id `<this id>/approval`, the plan
   empty) waits for the answer with its usual reminders, escalation and expiry.
3. Approved: `trust.set_level` (ledger + history + index) with `expected_from`, so a
   demotion that crossed the question wins. Ignored or expired: the level stays.
   `trust.answer` records the answer and its reason (the approver's comment).
4. A NOTICE announces the result on the platform route.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.incident.activities import IncidentActivities
    from activities.trust.activities import TrustActivities
    from agentic_core import trust
    from agentic_core.autonomy import (
        PromotionAnswerInput,
        PromotionInput,
        PromotionRequestInput,
        PromotionResult,
        SetLevelInput,
        TrustConfig,
        TrustSnapshotInput,
    )
    from agentic_core.incident import ApprovalRequest, ApprovalResult, NotifyInput, NotifyKind, plan_hash
    from workflows.approval import ApprovalWorkflow

_SHORT = timedelta(seconds=30)
_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


async def notify(kind: NotifyKind, route: str, text: str, approval_id: str | None = None) -> str | None:
    """A message that belongs to no incident; a failure is logged, never raised."""
    try:
        res = await workflow.execute_activity_method(
            IncidentActivities.notify,
            NotifyInput(
                incident_id=None,
                kind=kind,
                route=route,
                text=text,
                approval_id=approval_id,
                plan_hash=plan_hash([]) if approval_id else None,
            ),
            start_to_close_timeout=_SHORT,
            retry_policy=_RETRY,
        )
    except ActivityError as exc:
        if is_cancelled_exception(exc):
            raise
        workflow.logger.warning("%s notification failed: %s", kind.value, exc)
        return None
    return res.message_ref


async def trust_config(config: TrustConfig | None) -> TrustConfig:
    if config is not None:
        return config
    return await workflow.execute_activity_method(
        TrustActivities.get_config,
        TrustSnapshotInput(runbook_id=""),
        start_to_close_timeout=_SHORT,
        retry_policy=_RETRY,
    )


async def ask_human(
    approval_id: str, subject: str, question: str, cfg: TrustConfig, message_ref: str | None
) -> ApprovalResult:
    """A yes/no question (an ApprovalWorkflow child with an empty plan); expired on failure."""
    req = ApprovalRequest(
        approval_id=approval_id,
        incident_id=subject,
        question=question,
        plan=[],
        plan_hash=plan_hash([]),
        route=cfg.route,
        approvers=list(cfg.approvers),
        remind_after_s=cfg.remind_after_s,
        escalate_after_s=cfg.escalate_after_s,
        expire_after_s=cfg.expire_after_s,
        message_ref=message_ref,
        kind="level",
    )
    try:
        return await workflow.execute_child_workflow(
            ApprovalWorkflow.run, req, id=approval_id, parent_close_policy=workflow.ParentClosePolicy.TERMINATE
        )
    except ChildWorkflowError as exc:
        workflow.logger.warning("question %s failed: %s", approval_id, exc)
        return ApprovalResult(approval_id=approval_id, choice="expired", decided_at=workflow.now())


@workflow.defn
class RunbookPromotionWorkflow:
    @workflow.run
    async def run(self, inp: PromotionInput) -> PromotionResult:
        rid, to = inp.runbook_id, inp.to_level
        cfg = await trust_config(inp.config)
        snap = await workflow.execute_activity_method(
            TrustActivities.snapshot,
            TrustSnapshotInput(runbook_id=rid),
            start_to_close_timeout=_SHORT,
            retry_policy=_RETRY,
        )
        if not snap.exists or snap.level != inp.from_level or not trust.eligible_for(to, snap.record):
            return PromotionResult(
                runbook_id=rid, outcome="stale", level=snap.level, comment="the record or the level changed"
            )
        info = workflow.info()
        key = info.run_id
        await workflow.execute_activity_method(
            TrustActivities.request,
            PromotionRequestInput(
                request_key=key,
                workflow_id=info.workflow_id,
                runbook_id=rid,
                from_level=snap.level,
                to_level=to,
                executions=snap.record.executions,
            ),
            start_to_close_timeout=_SHORT,
            retry_policy=_RETRY,
        )
        approval_id = f"{info.workflow_id}/approval"
        question = (
            f"Promote runbook {rid} ({snap.title}) from {snap.level.value} to {to.value}?\n"
            f"Record: {trust.record_text(snap.record)}.\n"
            + (f"Why: {inp.reason}\n" if inp.reason else "")
            + f"At {to.value} it runs first and tells after, without asking. Approve or ignore."
        )
        ref = await notify(NotifyKind.QUESTION, cfg.route, question, approval_id)
        answer = await ask_human(approval_id, info.workflow_id, question, cfg, ref)
        outcome: Literal["promoted", "refused", "expired", "stale"]
        status: Literal["approved", "refused", "expired", "stale"]

        if answer.choice in ("approved", "modified"):
            reason = f"approved by {answer.by}: {trust.record_text(snap.record)}"
            if answer.comment:
                reason += f" ({answer.comment})"
            changed = await workflow.execute_activity_method(
                TrustActivities.set_level,
                SetLevelInput(
                    runbook_id=rid, to_level=to, reason=reason, changed_by=answer.by or "", expected_from=snap.level
                ),
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY,
            )
            if changed.level == to:
                outcome, status, level = "promoted", "approved", to
                text = f"Runbook {rid} is now {to.value} (approved by {answer.by}). {trust.record_text(snap.record)}."
            else:
                outcome, status, level = "stale", "stale", changed.level
                text = f"Runbook {rid} was not promoted: {changed.detail}"
        else:
            if answer.choice == "ignored":
                outcome, status = "refused", "refused"
            else:
                outcome, status = "expired", "expired"
            level = snap.level
            why = f": {answer.comment}" if answer.comment else ""
            who = f" by {answer.by}" if answer.by else ""
            text = f"Runbook {rid} stays {snap.level.value} (promotion {outcome}{who}{why})."
        await workflow.execute_activity_method(
            TrustActivities.answer,
            PromotionAnswerInput(
                request_key=key, status=status, decided_by=answer.by, reason=answer.comment or outcome
            ),
            start_to_close_timeout=_SHORT,
            retry_policy=_RETRY,
        )
        await notify(NotifyKind.NOTICE, cfg.route, text)
        return PromotionResult(runbook_id=rid, outcome=outcome, level=level, by=answer.by, comment=answer.comment)
