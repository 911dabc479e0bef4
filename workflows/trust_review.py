"""`TrustReviewWorkflow`: the quarterly trust review.

Input `{"quarter": "YYYY-Qn" | null}` (`TrustReviewInput`; null: the quarter that just ended,
from `workflow.now()`), started by the quarterly Temporal Schedule (`agentic schedules apply`),
by `agentic review run [--quarter]`, or by the `temporal` CLI.

1. `trust.audit`: every automated action of the quarter (decisions the agent took alone, with
   their outcomes), every runbook's record and what it did in the quarter, and the policy's
   proposals (`trust.review_proposal`): demotions of unreliable runbooks, promotions of strong
   ones.
2. Each proposal is put to a human at once (child `ApprovalWorkflow`s, id
   `<review id>/<runbook>/approval`, `kind="level"`), recorded as a promotion request.
3. Approved proposals are applied (`trust.set_level` with `expected_from`, so a change that
   happened meanwhile wins); refused or expired ones are recorded and left.
4. A REPORT notification on the "weekly" route, and the summary as the result.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.trust.activities import TrustActivities
    from agentic_core.autonomy import (
        REPORT_ROUTE,
        AuditInput,
        AuditResult,
        PromotionAnswerInput,
        PromotionRequestInput,
        ProposalOutcome,
        SetLevelInput,
        TrustConfig,
        TrustReviewInput,
        TrustReviewResult,
        previous_quarter,
    )
    from agentic_core.incident import NotifyKind
    from agentic_core.trust import ReviewProposal
    from workflows.promotion import ask_human, notify, trust_config

_SHORT = timedelta(seconds=30)
_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


@workflow.defn
class TrustReviewWorkflow:
    @workflow.run
    async def run(self, inp: TrustReviewInput) -> TrustReviewResult:
        quarter = inp.quarter or previous_quarter(workflow.now())
        cfg = await trust_config(None)
        audit = await workflow.execute_activity_method(
            TrustActivities.audit,
            AuditInput(quarter=quarter),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=_RETRY,
        )
        outcomes = list(await asyncio.gather(*(self._put(p, quarter, audit, cfg) for p in audit.proposals)))
        result = TrustReviewResult(
            quarter=quarter,
            automated_actions=audit.automated_actions,
            automated_failures=audit.automated_failures,
            automated_unknown=audit.automated_unknown,
            runbooks=len(audit.runbooks),
            outcomes=outcomes,
        )
        result.report = report_text(result, audit)
        await notify(NotifyKind.REPORT, REPORT_ROUTE, result.report)
        return result

    async def _put(self, p: ReviewProposal, quarter: str, audit: AuditResult, cfg: TrustConfig) -> ProposalOutcome:
        info = workflow.info()
        key = f"{info.run_id}/{p.runbook_id}"
        executions = next((r.record.executions for r in audit.runbooks if r.runbook_id == p.runbook_id), 0)
        await workflow.execute_activity_method(
            TrustActivities.request,
            PromotionRequestInput(
                request_key=key,
                workflow_id=info.workflow_id,
                runbook_id=p.runbook_id,
                from_level=p.from_level,
                to_level=p.to_level,
                executions=executions,
            ),
            start_to_close_timeout=_SHORT,
            retry_policy=_RETRY,
        )
        verb = "Promote" if p.promotion else "Demote"
        question = (
            f"Trust review {quarter}: {verb.lower()} runbook {p.runbook_id} from {p.from_level.value}"
            f" to {p.to_level.value}?\nWhy: {p.reason}.\nApprove to apply, ignore to leave it."
        )
        approval_id = f"{info.workflow_id}/{p.runbook_id}/approval"
        ref = await notify(NotifyKind.QUESTION, cfg.route, question, approval_id)
        answer = await ask_human(approval_id, info.workflow_id, question, cfg, ref)
        verdict: Literal["applied", "refused", "expired", "stale"]
        status: Literal["approved", "refused", "expired", "stale"]
        if answer.choice in ("approved", "modified"):
            changed = await workflow.execute_activity_method(
                TrustActivities.set_level,
                SetLevelInput(
                    runbook_id=p.runbook_id,
                    to_level=p.to_level,
                    reason=f"trust review {quarter}, approved by {answer.by}: {p.reason}",
                    changed_by=answer.by or "",
                    expected_from=p.from_level,
                ),
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY,
            )
            verdict, status = ("applied", "approved") if changed.level == p.to_level else ("stale", "stale")
        elif answer.choice == "ignored":
            verdict, status = "refused", "refused"
        else:
            verdict, status = "expired", "expired"
        await workflow.execute_activity_method(
            TrustActivities.answer,
            PromotionAnswerInput(
                request_key=key, status=status, decided_by=answer.by, reason=answer.comment or verdict
            ),
            start_to_close_timeout=_SHORT,
            retry_policy=_RETRY,
        )
        return ProposalOutcome(proposal=p, answer=verdict, by=answer.by)


def report_text(result: TrustReviewResult, audit: AuditResult) -> str:
    rate = (
        f"{100 * result.automated_failures / result.automated_actions:.1f}% failed"
        if result.automated_actions
        else "none"
    )
    levels: dict[str, int] = {}
    for r in audit.runbooks:
        levels[r.level.value] = levels.get(r.level.value, 0) + 1
    lines = [
        f"📋 Trust review {result.quarter}",
        f"Automated actions: {result.automated_actions} ({rate}; {result.automated_unknown} unverified)",
        "Runbooks: " + ", ".join(f"{k} {v}" for k, v in sorted(levels.items())) if levels else "Runbooks: none",
    ]
    if not result.outcomes:
        lines.append("No level change proposed.")
    for o in result.outcomes:
        p = o.proposal
        who = f" by {o.by}" if o.by else ""
        lines.append(f"- {p.runbook_id}: {p.from_level.value} → {p.to_level.value}: {o.answer}{who} ({p.reason})")
    return "\n".join(lines)
